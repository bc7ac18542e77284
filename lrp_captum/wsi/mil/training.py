"""Training a MIL head on a cohort with slide-level labels only (``lrp-captum slide train-mil``).

Every slide of the cohort is embedded once (:func:`~lrp_captum.wsi.mil.embeddings.embed_slide`,
cached), then the head is trained on the ``train`` split one bag per step with Adam and
cross-entropy. Each step sees a random subset of a bag's tiles (between ``subsample`` and all of
them), a common MIL augmentation that keeps the head from relying on any single tile. The
``test`` split is only scored after training.

The head reads standardised embeddings: each dimension minus its mean over the training tiles,
divided by its standard deviation. This lets the head find a rare lesion direction among dominant
ones, and it makes "zero" the average training tile -- the reference that gradient × input,
IntegratedGradients and LRP measure evidence against. The statistics are saved with the head
(:meth:`~lrp_captum.wsi.mil.head_files.MILHead.bag_input` applies them).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lrp_captum.wsi.mil.embeddings import embed_slide
from lrp_captum.wsi.mil.encoders import TileEncoder, build_encoder
from lrp_captum.wsi.mil.head_files import save_head
from lrp_captum.wsi.mil.heads import make_head
from lrp_captum.wsi.mil.labelled_cohort import cohort_classes, read_cohort

DEFAULTS = dict(epochs=100, lr=2e-3, weight_decay=1e-4, subsample=0.5, seed=0)
#: what differs per head from DEFAULTS (the transformer wants a smaller step)
HEAD_DEFAULTS = {"abmil": {}, "transmil": dict(epochs=80, lr=5e-4)}


def default_embeddings_dir(cohort_dir) -> Path:
    """``<cohort>/embeddings``: where a cohort's embeddings are cached unless told otherwise."""
    return Path(cohort_dir) / "embeddings"


def cohort_bags(cohort, encoder: TileEncoder, cache_dir=None, *, splits=("train", "test"), batch_size: int = 64,
                quiet: bool = True):
    """(entries, bags) of the cohort slides in ``splits``, embedded by ``encoder`` (cached).

    ``cohort`` is the cohort folder or its ``cohort.csv``; ``cache_dir`` defaults to
    :func:`default_embeddings_dir`.
    """
    entries = [e for e in read_cohort(cohort) if e.split in splits]
    cache = cohort_embeddings_dir(cohort, cache_dir)
    bags = [embed_slide(e.slide, encoder, cache, batch_size=batch_size, quiet=quiet) for e in entries]
    return entries, bags


def cohort_embeddings_dir(cohort, cache_dir=None) -> Path:
    """The embedding cache of a cohort (folder or its ``cohort.csv``): ``cache_dir`` when given,
    else :func:`default_embeddings_dir` of the cohort's folder."""
    if cache_dir is not None:
        return Path(cache_dir)
    return default_embeddings_dir(Path(cohort).parent if Path(cohort).is_file() else Path(cohort))


def _balanced_accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    pred = probs.argmax(1)
    return float(np.mean([(pred[labels == c] == c).mean() for c in np.unique(labels)]))


def slide_probabilities(model: nn.Module, bags) -> np.ndarray:
    """(S, C) softmax probabilities of the head for each (N, D) bag tensor."""
    model.eval()
    with torch.no_grad():
        return np.stack([torch.softmax(model(b.unsqueeze(0)), 1)[0].numpy() for b in bags])


def embedding_standardisation(bags) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std), each (D,), over all tiles of ``bags`` ((N, D) tensors); std 1 where constant."""
    every = torch.cat(list(bags))
    mean, std = every.mean(0), every.std(0)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def fit_head(model: nn.Module, bags, labels, *, epochs: int = DEFAULTS["epochs"], lr: float = DEFAULTS["lr"],
             weight_decay: float = DEFAULTS["weight_decay"], subsample: float = DEFAULTS["subsample"],
             seed: int = DEFAULTS["seed"], quiet: bool = True) -> list[float]:
    """Train ``model`` in place on ``bags`` (SlideBag or (N, D) tensors) with ``labels``; returns the loss per epoch.

    One bag per step, shuffled each epoch; each step keeps a random ``uniform(subsample, 1)``
    share of the bag's tiles (at least one). Runs on one CPU thread; deterministic for a seed.
    """
    threads = torch.get_num_threads()
    # one thread: a bag step is a few small matrix products; on a busy machine extra threads
    # waiting on each other made training of a small head many times slower (measured here)
    torch.set_num_threads(1)
    try:
        return _fit(model, bags, labels, epochs, lr, weight_decay, subsample, seed, quiet)
    finally:
        torch.set_num_threads(threads)


def _fit(model, bags, labels, epochs, lr, weight_decay, subsample, seed, quiet) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tensors = [b if torch.is_tensor(b) else b.tensor() for b in bags]
    y = torch.as_tensor(labels, dtype=torch.long)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for i in torch.randperm(len(tensors), generator=gen).tolist():
            bag = tensors[i]
            keep = float(subsample + (1 - subsample) * torch.rand(1, generator=gen))
            idx = torch.randperm(len(bag), generator=gen)[:max(1, round(keep * len(bag)))]
            opt.zero_grad()
            loss = loss_fn(model(bag[idx].unsqueeze(0)), y[i:i + 1])
            loss.backward()
            opt.step()
            total += float(loss.detach())
        history.append(total / len(tensors))
        if not quiet:
            print(f"epoch {epoch + 1}/{epochs}  loss {history[-1]:.4f}", file=sys.stderr, flush=True)
    model.eval()
    return history


def train_mil(cohort, out, *, encoder: TileEncoder | dict | str, head: str = "abmil", cache_dir=None,
              head_kwargs: dict | None = None, epochs: int | None = None, lr: float | None = None,
              weight_decay: float = DEFAULTS["weight_decay"], subsample: float = DEFAULTS["subsample"],
              seed: int = DEFAULTS["seed"], threads: int | None = None, quiet: bool = True) -> dict:
    """Embed a cohort, train a MIL head on its ``train`` split and save it.

    Parameters
    ----------
    cohort : cohort folder (or its ``cohort.csv``): slide, label, split columns
        (:mod:`~lrp_captum.wsi.mil.labelled_cohort`); the head's classes are the cohort's.
    out : head path without suffix (or ``.json``): writes ``.pt`` + ``.json``.
    encoder : a :class:`TileEncoder` or an encoder spec (the demo CNN trunk:
        ``lrp_captum.demos.slide_model.demo_encoder_spec()``).
    head : ``"abmil"`` or ``"transmil"``; head_kwargs : passed to its constructor.
    cache_dir : embedding cache (default ``<cohort>/embeddings``); the head records it, so that
        ``explain_mil_slide`` reads a cohort slide's embeddings from there.
    epochs, lr, weight_decay, subsample, seed : training (see :func:`fit_head`); ``epochs`` and
        ``lr`` default to :data:`HEAD_DEFAULTS` / :data:`DEFAULTS` for the head.
    threads : torch CPU threads while training (default: leave torch's setting).

    Returns
    -------
    dict of metrics (also stored in the head's JSON under ``training``): slide counts, train and
    test balanced accuracy, seconds for embedding and for training, the head's path.
    """
    per_head = dict(DEFAULTS, **HEAD_DEFAULTS.get(head, {}))
    epochs = int(epochs or per_head["epochs"])
    lr = float(lr or per_head["lr"])
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        t0 = time.perf_counter()
        enc = encoder if isinstance(encoder, TileEncoder) else build_encoder(encoder)
        entries, bags = cohort_bags(cohort, enc, cache_dir, quiet=quiet)
        classes = cohort_classes(read_cohort(cohort))
        t_embed = time.perf_counter() - t0
        train = [i for i, e in enumerate(entries) if e.split == "train"]
        test = [i for i, e in enumerate(entries) if e.split == "test"]
        labels = np.array([e.label for e in entries])
        if len(set(labels[train])) < 2:
            raise ValueError(f"the train split of {cohort} needs slides of both classes to train a head")
        torch.manual_seed(seed)
        model = make_head(head, enc.dim, len(classes), **(head_kwargs or {}))
        t1 = time.perf_counter()
        mean, std = embedding_standardisation([bags[i].tensor() for i in train])
        inputs = [(b.tensor() - mean) / std for b in bags]
        history = fit_head(model, [inputs[i] for i in train], labels[train], epochs=epochs, lr=lr,
                           weight_decay=weight_decay, subsample=subsample, seed=seed, quiet=quiet)
        t_train = time.perf_counter() - t1
        probs = slide_probabilities(model, inputs)
        metrics = dict(cohort=str(Path(cohort).resolve()), n_train=len(train), n_test=len(test),
                       tiles_per_slide=float(np.mean([len(b) for b in bags])),
                       train_balanced_accuracy=_balanced_accuracy(probs[train], labels[train]),
                       test_balanced_accuracy=(_balanced_accuracy(probs[test], labels[test]) if test else None),
                       final_loss=history[-1], embed_seconds=t_embed, train_seconds=t_train,
                       tiles_embedded_now=int(sum(b.embedded_now for b in bags)), torch_threads=torch.get_num_threads(),
                       load_average=list(os.getloadavg()),
                       params=dict(epochs=epochs, lr=lr, weight_decay=weight_decay, subsample=subsample, seed=seed))
        path = save_head(model, out, name=head, classes=classes, encoder=enc, kwargs=head_kwargs, training=metrics,
                         standardisation=(mean, std), embeddings=cohort_embeddings_dir(cohort, cache_dir))
        metrics["head"] = str(path)
        return metrics
    finally:
        torch.set_num_threads(before)
