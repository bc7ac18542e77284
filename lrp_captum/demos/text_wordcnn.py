"""Train the demo word-CNN on the VADER-derived sentiment sentences.

Saving and loading a word-CNN folder is the library's (:mod:`lrp_captum.text.model_folders`);
this module only trains the demo.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from lrp_captum.demos.text_sentences import CLASS_NAMES, make_sentiment_dataset, split_examples
from lrp_captum.devices import resolve_device
from lrp_captum.text.embeddings import load_tokenizer, load_word_embeddings
from lrp_captum.text.encoding import encode_texts, length_batches, pad_batch
from lrp_captum.text.model_folders import save_word_cnn
from lrp_captum.text.models import WordCNN

def encode_for_training(tokenizer, texts: list[str], min_length: int, pad_id: int = 0,
                        max_length: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of ``texts`` for :func:`train_classifier`.

    Returns
    -------
    ids : torch.Tensor
        ``(N, L_max)`` int64, right-padded with ``pad_id`` (texts shorter than
        ``min_length`` are padded to it, and that padding counts as part of the text).
    lengths : torch.Tensor
        ``(N,)`` tokens per text, at least ``min_length``.
    """
    encoded = encode_texts(tokenizer, texts, max_length=max_length)
    lengths = torch.tensor([max(len(e.ids), min_length) for e in encoded])
    return pad_batch(encoded, pad_id, min_length), lengths


@torch.no_grad()
def predict_logits(model: nn.Module, ids: torch.Tensor, lengths: torch.Tensor,
                   batch_size: int = 512) -> torch.Tensor:
    """Logits ``(N, C)`` in eval mode, batched by equal length; returned on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    out = [None] * len(ids)
    for idx in length_batches(lengths.tolist(), batch_size):
        logits = model(ids[idx, : int(lengths[idx[0]])].to(device)).cpu()
        for i, row in zip(idx, logits):
            out[i] = row
    return torch.stack(out)


def accuracy(model: nn.Module, ids: torch.Tensor, lengths: torch.Tensor,
             labels: torch.Tensor) -> float:
    """Fraction of ``labels`` (N,) predicted by the arg-max logit."""
    return float((predict_logits(model, ids, lengths).argmax(1) == labels.cpu()).float().mean())


def vocabulary_logits(model: WordCNN, vocab: torch.Tensor, ids: torch.Tensor,
                      lengths: torch.Tensor) -> torch.Tensor:
    """``model(ids)`` computed through the (small) vocabulary instead of the sequence.

    The embedding table is frozen, so each filter tap applied to each vocabulary entry,
    ``P_j = E[vocab] W_j^T`` (V, F), can be computed once per step and looked up per position:
    ``conv(x)[t] = b + sum_j P_j[ids[t + j]]``. With a few hundred distinct tokens this is
    many times cheaper than the convolution over all positions, and texts of different
    length can share a batch because windows past each text's end are masked.

    Parameters
    ----------
    vocab : torch.Tensor
        ``(V,)`` token ids, sorted, containing every id in ``ids``.
    ids : torch.Tensor
        ``(N, L)`` indices *into* ``vocab`` (see :func:`torch.searchsorted`).
    lengths : torch.Tensor
        ``(N,)`` tokens per text, at least ``model.min_length``.

    Returns
    -------
    torch.Tensor
        ``(N, C)`` logits, equal to ``model(original ids)`` text by text.
    """
    table = model.embedding.weight[vocab]  # (V, E)
    positions = torch.arange(ids.shape[1], device=ids.device)
    pooled = []
    for width, conv, act in zip(model.widths, model.convs, model.activations):
        taps = torch.einsum("ve,fek->kvf", table, conv.weight)  # (k, V, F)
        n_windows = ids.shape[1] - width + 1
        h = conv.bias + sum(taps[j][ids[:, j:j + n_windows]] for j in range(width))
        h = act(h)  # (N, windows, F), >= 0
        valid = positions[:n_windows][None, :] + width <= lengths[:, None]
        pooled.append((h * valid[:, :, None]).amax(dim=1))  # masked windows are 0 <= max
    return model.classifier(model.dropout(torch.cat(pooled, dim=1)))


def train_classifier(model: WordCNN, ids: torch.Tensor, lengths: torch.Tensor,
                     labels: torch.Tensor, epochs: int = 20, lr: float = 1e-2,
                     batch_size: int = 128, weight_decay: float = 0.0, seed: int = 0,
                     device="auto", log=None) -> list[dict]:
    """Adam with cross-entropy on token ids ``(N, L)``, ``lengths`` (N,) and labels ``(N,)``.

    The frozen embedding makes :func:`vocabulary_logits` an exact, much cheaper way to
    evaluate the model during training; the trained weights are the model's own.

    Returns one ``{"epoch", "loss", "train_accuracy", "seconds"}`` dict per epoch.
    """
    if model.embedding.weight.requires_grad:
        raise ValueError("train_classifier needs a frozen embedding (freeze_embedding=True)")
    device = resolve_device(device)
    model.to(device)
    generator = torch.Generator().manual_seed(seed)
    vocab = torch.unique(ids).to(device)
    compact = torch.searchsorted(vocab, ids.to(device))
    lengths, labels = lengths.to(device), labels.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    history = []
    for epoch in range(epochs):
        model.train()
        start = time.perf_counter()
        total, correct, loss_sum = 0, 0, 0.0
        order = torch.randperm(len(ids), generator=generator).to(device)
        for i in range(0, len(ids), batch_size):
            idx = order[i:i + batch_size]
            width = int(lengths[idx].max())
            logits = vocabulary_logits(model, vocab, compact[idx, :width], lengths[idx])
            loss = loss_fn(logits, labels[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == labels[idx]).sum())
            total += len(idx)
        record = {"epoch": epoch + 1, "loss": loss_sum / total, "train_accuracy": correct / total,
                  "seconds": time.perf_counter() - start}
        history.append(record)
        if log:
            log(f"epoch {record['epoch']}: loss {record['loss']:.4f}, "
                f"train accuracy {record['train_accuracy']:.3f} ({record['seconds']:.2f} s)")
    model.eval()
    return history


def train_demo_model(out_dir: str | Path | None = None, n_examples: int = 4000,
                     test_fraction: float = 0.2, epochs: int = 20, n_filters: int = 32,
                     widths: tuple[int, ...] = (1, 2, 3), lr: float = 1e-2,
                     batch_size: int = 128, seed: int = 0, device="auto",
                     max_length: int = 128, log=None):
    """Build the data set, train a :class:`WordCNN` on frozen MiniLM embeddings, evaluate.

    Parameters
    ----------
    out_dir : path, optional
        Where to save ``model_state.pt`` (trainable weights only, the embedding table is
        reloaded from its package) and ``config.json``; nothing is saved when ``None``.
    n_examples, test_fraction, seed : data set size, held-out share and seed.
    epochs, n_filters, widths, lr, batch_size : training length, architecture, Adam settings.

    Returns
    -------
    model : WordCNN
        Trained, in eval mode, on ``device``.
    tokenizer : tokenizers.Tokenizer
    report : dict
        Data and training settings, per-epoch history and held-out ``test_accuracy``.
    """
    torch.manual_seed(seed)
    tokenizer = load_tokenizer(max_length=max_length)
    table = load_word_embeddings()
    examples = make_sentiment_dataset(n_examples, seed=seed, vocab=tokenizer.get_vocab())
    train, test = split_examples(examples, test_fraction=test_fraction, seed=seed)
    model = WordCNN(vocab_size=table.shape[0], embed_dim=table.shape[1], widths=widths,
                    n_filters=n_filters, n_classes=len(CLASS_NAMES), pad_id=0,
                    embedding_weights=table)
    model.class_names = CLASS_NAMES
    enc = lambda exs: encode_for_training(tokenizer, [e.text for e in exs], model.min_length,  # noqa: E731
                                          model.pad_id, max_length)
    (x_train, n_train), y_train = enc(train), torch.tensor([e.label for e in train])
    (x_test, n_test), y_test = enc(test), torch.tensor([e.label for e in test])
    history = train_classifier(model, x_train, n_train, y_train, epochs=epochs, lr=lr,
                               batch_size=batch_size, seed=seed, device=device, log=log)
    report = {
        "class_names": list(CLASS_NAMES),
        "data": {"source": "vaderSentiment vader_lexicon.txt + neutral templates "
                           "(lrp_captum.demos.text_sentences)", "n_examples": n_examples,
                 "n_train": len(train), "n_test": len(test), "seed": seed},
        "training": {"epochs": epochs, "optimizer": "Adam", "lr": lr, "batch_size": batch_size,
                     "history": history},
        "train_accuracy": accuracy(model, x_train, n_train, y_train),
        "test_accuracy": accuracy(model, x_test, n_test, y_test),
    }
    if out_dir is not None:
        save_word_cnn(model, out_dir, report, max_length=max_length)
    return model, tokenizer, report


def __getattr__(name: str):
    # saving and loading moved to lrp_captum.text.model_folders
    from lrp_captum.deprecated_paths import moved_name

    return moved_name(__name__, name)
