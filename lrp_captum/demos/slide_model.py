"""Train the demo tile classifiers: DAB-stain-positive vs negative tiles (an IHC-scoring proxy).

Two architectures learn the same task: ``demo_cnn`` (:class:`~lrp_captum.wsi.model.DemoTileCNN`)
and ``demo_vit``, a small Vision Transformer (:func:`~lrp_captum.wsi.model.demo_tile_vit`).

Training tiles are crops of ``skimage.data.immunohistochemistry`` (the same image the sample
slides are built from) under the 8 flips/rotations, a quarter of them with part of the tile
replaced by glass, as at tissue edges. A tile is "positive" when more than ``POSITIVE_FRACTION``
of its pixels have DAB optical density above ``DAB_THRESHOLD`` (``skimage.color.rgb2hed``).
Training crops (64 px for the CNN, 128 px for the ViT, whose position embeddings fix its
input size) come from image rows 0-383 and validation tiles (128 px, the inference size) from
rows 384-511, so the two sets share no pixels.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lrp_captum.wsi.cache_folder import cache_dir as package_cache_dir
from lrp_captum.wsi.model import DEMO_MEAN, DEMO_STD, DemoTileCNN, demo_tile_vit, load_model, save_model
from lrp_captum.demos.sample_slide import BACKGROUND_RGB, dab_mask, ihc_image

DAB_THRESHOLD = 0.10
POSITIVE_FRACTION = 0.15
TILE_SIZE = 128
MODEL_MPP = 0.5  # the sample slides put the IHC image at its native scale on level 0 (0.5 µm/px)
CLASSES = ["negative", "positive"]
DEFAULTS = dict(n_train=1024, n_val=384, epochs=5, batch_size=64, lr=5e-3, seed=0, width=8, train_crop=64)
VIT_DEFAULTS = dict(n_train=2048, n_val=384, epochs=10, batch_size=32, lr=1e-3, weight_decay=0.05,
                    seed=0, patch_size=16, num_layers=4, num_heads=4, hidden_dim=64, mlp_dim=128)
#: training parameters per demo architecture
DEMO_DEFAULTS = {"demo_cnn": DEFAULTS, "demo_vit": VIT_DEFAULTS}


def make_tiles(n: int, rows: tuple[int, int], seed: int, tile: int = TILE_SIZE):
    """``n`` crops (N, tile, tile, 3) uint8 whose top-left row lies in ``rows``, with labels (N,).

    Returns (tiles, labels, dab_fractions).
    """
    rng = np.random.default_rng(seed)
    img = ihc_image()
    mask = dab_mask(img, DAB_THRESHOLD)
    tiles = np.empty((n, tile, tile, 3), np.uint8)
    fracs = np.empty(n, np.float32)
    yy, xx = np.mgrid[0:tile, 0:tile]
    for i in range(n):
        y = int(rng.integers(rows[0], rows[1] - tile + 1))
        x = int(rng.integers(0, img.shape[1] - tile + 1))
        t, m = img[y:y + tile, x:x + tile], mask[y:y + tile, x:x + tile]
        k = int(rng.integers(0, 4))
        t, m = np.rot90(t, k), np.rot90(m, k)
        if rng.random() < 0.5:
            t, m = t[:, ::-1], m[:, ::-1]
        t, m = t.copy(), m.copy()
        if rng.random() < 0.25:  # tissue edge: glass on one side of a random line
            a = rng.uniform(0, 2 * np.pi)
            c = rng.uniform(-0.3, 0.3) * tile
            glass = (xx - tile / 2) * np.cos(a) + (yy - tile / 2) * np.sin(a) > c
            t[glass] = BACKGROUND_RGB
            m[glass] = False
        tiles[i] = t
        fracs[i] = m.mean()
    labels = (fracs > POSITIVE_FRACTION).astype(np.int64)
    return tiles, labels, fracs


def _to_input(tiles: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(DEMO_MEAN).view(1, 3, 1, 1)) / torch.tensor(DEMO_STD).view(1, 3, 1, 1)


def train_demo_model(out_dir: str | Path, *, arch: str = "demo_cnn", quiet: bool = False,
                     **overrides) -> dict:
    """Train a demo tile classifier and save ``<arch>.pt`` + ``<arch>.json`` + ``metrics.json``.

    Parameters
    ----------
    out_dir : folder for the files (created).
    arch : ``"demo_cnn"`` or ``"demo_vit"`` (:data:`DEMO_DEFAULTS`).
    quiet : no per-epoch messages.
    **overrides : training parameters replacing those of :data:`DEMO_DEFAULTS` ``[arch]``.

    Returns the metrics dict (train/val accuracy, class balance, seconds). Deterministic for a seed.
    """
    p = _parameters(arch, overrides)
    threads = torch.get_num_threads()
    # one thread: this model is too small to gain from more, and on a busy machine extra
    # threads waiting on each other made training 7x slower (measured on a shared 2-core box)
    torch.set_num_threads(1)
    try:
        return _train(out_dir, quiet, arch, p)
    finally:
        torch.set_num_threads(threads)


def _parameters(arch: str, overrides: dict) -> dict:
    if arch not in DEMO_DEFAULTS:
        raise ValueError(f"unknown demo architecture {arch!r}; choose from {', '.join(DEMO_DEFAULTS)}")
    unknown = set(overrides) - set(DEMO_DEFAULTS[arch])
    if unknown:
        raise ValueError(f"{arch} has no training parameter {', '.join(sorted(unknown))}; "
                         f"its parameters: {', '.join(DEMO_DEFAULTS[arch])}")
    return dict(DEMO_DEFAULTS[arch], **overrides)


def _model_and_crop(arch: str, p: dict) -> tuple[nn.Module, dict, int]:
    """The untrained model, its config ``kwargs`` and the side of its training crops."""
    if arch == "demo_cnn":
        kwargs = dict(num_classes=2, width=p["width"])
        # the CNN ends in a global average pool, so it trains on small crops (cheap) and is
        # validated at its full tile size
        return DemoTileCNN(**kwargs), kwargs, p["train_crop"]
    kwargs = dict(num_classes=2, patch_size=p["patch_size"], num_layers=p["num_layers"],
                  num_heads=p["num_heads"], hidden_dim=p["hidden_dim"], mlp_dim=p["mlp_dim"])
    return demo_tile_vit(image_size=TILE_SIZE, **kwargs), kwargs, TILE_SIZE


def _train(out_dir, quiet: bool, arch: str, p: dict) -> dict:
    torch.manual_seed(p["seed"])
    t0 = time.perf_counter()
    model, kwargs, crop = _model_and_crop(arch, p)
    xtr, ytr, _ = make_tiles(p["n_train"], (0, 384), p["seed"], tile=crop)
    xva, yva, _ = make_tiles(p["n_val"], (384, 512), p["seed"] + 1)
    Xtr, Ytr = _to_input(xtr), torch.from_numpy(ytr)
    Xva, Yva = _to_input(xva), torch.from_numpy(yva)
    if arch == "demo_cnn":
        opt = torch.optim.Adam(model.parameters(), lr=p["lr"])
    else:  # the usual transformer recipe: decoupled weight decay
        opt = torch.optim.AdamW(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p["lr"], total_steps=p["epochs"] * (
        -(-len(Xtr) // p["batch_size"])))
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(p["seed"])
    for epoch in range(p["epochs"]):
        model.train()
        perm = torch.randperm(len(Xtr), generator=gen)
        total = 0.0
        for s in range(0, len(Xtr), p["batch_size"]):
            idx = perm[s:s + p["batch_size"]]
            opt.zero_grad()
            loss = loss_fn(model(Xtr[idx]), Ytr[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if not quiet:
            print(f"epoch {epoch + 1}/{p['epochs']}  loss {total / len(Xtr):.4f}", flush=True)
    model.eval()
    with torch.no_grad():
        acc_tr = float((model(Xtr).argmax(1) == Ytr).float().mean())
        acc_va = float((model(Xva).argmax(1) == Yva).float().mean())
    metrics = dict(train_accuracy=acc_tr, val_accuracy=acc_va, n_train=len(Xtr), n_val=len(Xva),
                   positive_rate_train=float(ytr.mean()), positive_rate_val=float(yva.mean()),
                   seconds=time.perf_counter() - t0, params=p)
    config = dict(architecture=arch, kwargs=kwargs,
                  classes=CLASSES, tile_size=TILE_SIZE, mpp=MODEL_MPP,
                  normalisation=dict(mean=list(DEMO_MEAN), std=list(DEMO_STD)),
                  labels=dict(dab_threshold=DAB_THRESHOLD, positive_fraction=POSITIVE_FRACTION,
                              stain="DAB (skimage.color.rgb2hed channel 2)"),
                  intended_use="demonstration of LRP on slides; not for diagnosis")
    out_dir = Path(out_dir)
    save_model(model, out_dir, config, name=arch)
    tmp = out_dir / f".metrics.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(metrics, indent=2))
    os.replace(tmp, out_dir / "metrics.json")
    if not quiet:
        print(f"train accuracy {acc_tr:.3f}  val accuracy {acc_va:.3f}  ({metrics['seconds']:.1f} s)")
    return metrics


def demo_model_config(cache_dir: str | Path | None = None, *, arch: str = "demo_cnn", quiet: bool = True,
                      **overrides) -> Path:
    """Path of the cached demo model config, training it first if no cached copy matches.

    ``arch`` is ``"demo_cnn"`` or ``"demo_vit"``. The cache key hashes the architecture, the
    training parameters and this file, so changed training code retrains.
    """
    p = _parameters(arch, overrides)
    key = hashlib.sha256((arch + json.dumps(p, sort_keys=True) + Path(__file__).read_text()).encode()
                         ).hexdigest()[:12]
    d = Path(cache_dir) if cache_dir is not None else package_cache_dir()
    d = d / f"wsi_{arch}_{key}"
    cfg = d / f"{arch}.json"
    if not cfg.is_file():
        train_demo_model(d, arch=arch, quiet=quiet, **overrides)
    load_model(cfg, device="cpu")  # fail early if the cached copy is damaged
    return cfg


def demo_encoder_spec(cache_dir: str | Path | None = None) -> dict:
    """The MIL encoder spec of the demo CNN trunk (:mod:`lrp_captum.wsi.mil.encoders`): the demo
    model's config, trained and cached first if needed (:func:`demo_model_config`)."""
    return {"arch": "demo", "config": str(demo_model_config(cache_dir))}
