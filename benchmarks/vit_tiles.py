"""The demo ViT tile model (issue 12, "Slides with a ViT tile model"): accuracy, and where its
relevance for "positive" lies, beside the demo CNN.

For each seed, trains the demo ViT (``lrp-captum slide train-demo --arch demo_vit``, its default
parameters; lrp_captum.demos.slide_model.VIT_DEFAULTS) and reports its validation accuracy and training
time; then, on held-out positive tiles (lrp_captum.demos.dab_localisation), the share of positive
relevance inside the DAB mask against the mask's area, for each transformer composite and for
the demo CNN with its default composite. Prints markdown tables; data_cards/wsi_vit_demo_model.md
and docs/wsi.md quote them.

    python benchmarks/vit_tiles.py                       # seeds 0 1 2, 256 held-out tiles
    python benchmarks/vit_tiles.py --seeds 0 --tiles 64  # quick look
"""
from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lrp_captum.demos.dab_localisation import dab_relevance_share
from lrp_captum.wsi.model import load_model
from lrp_captum.demos.slide_model import demo_model_config

COMPOSITES = ("attnlrp", "attnlrp_gamma", "cp_lrp")


def _mean_sd(values) -> str:
    values = list(values)
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)):.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tiles", type=int, default=256, help="held-out tiles drawn (about 1/4 positive)")
    p.add_argument("--cache", type=Path, default=None, help="model cache (default: a temporary folder)")
    args = p.parse_args()
    torch.set_num_threads(1)
    cache = args.cache or Path(tempfile.mkdtemp(prefix="vit_tiles_"))
    models, rows = [], []
    for seed in args.seeds:
        load = os.getloadavg()[0]
        config = demo_model_config(cache, arch="demo_vit", seed=seed)
        metrics = json.loads((config.parent / "metrics.json").read_text())
        models.append(dict(seed=seed, val=metrics["val_accuracy"], train=metrics["train_accuracy"],
                           seconds=metrics["seconds"], load=(load + os.getloadavg()[0]) / 2))
        bundle = load_model(config, device="cpu")
        for composite in COMPOSITES:
            start = time.perf_counter()
            with warnings.catch_warnings():  # AttnLRP's sums are not the logit, by design
                warnings.simplefilter("ignore")
                result = dab_relevance_share(bundle, n_tiles=args.tiles, composite=composite)
            rows.append(dict(model="demo_vit", seed=seed, composite=composite, share=result.share,
                             area=result.area, ratio=result.ratio, n=result.n_tiles,
                             median=float(np.median(result.per_tile_share / result.per_tile_area)),
                             ms=1000 * (time.perf_counter() - start) / result.n_tiles))
        cnn = load_model(demo_model_config(cache, arch="demo_cnn", seed=seed), device="cpu")
        start = time.perf_counter()
        result = dab_relevance_share(cnn, n_tiles=args.tiles)
        rows.append(dict(model="demo_cnn", seed=seed, composite=result.composite, share=result.share,
                         area=result.area, ratio=result.ratio, n=result.n_tiles,
                         median=float(np.median(result.per_tile_share / result.per_tile_area)),
                         ms=1000 * (time.perf_counter() - start) / result.n_tiles))
        print(f"seed {seed}: demo_vit validation accuracy {models[-1]['val']:.3f} in "
              f"{models[-1]['seconds']:.0f} s; {rows[-1]['n']} positive held-out tiles", flush=True)

    print("\n| seed | validation accuracy | train accuracy | training s | load |\n|---|---|---|---|---|")
    for m in models:
        print(f"| {m['seed']} | {m['val']:.3f} | {m['train']:.3f} | {m['seconds']:.0f} | {m['load']:.1f} |")
    print(f"\n{len(args.seeds)} seed(s); per seed the positive tiles among {args.tiles} held-out tiles; "
          "mean ± sd over seeds\n")
    print("| model | composite | R+ on DAB | DAB area | ratio ↑ | median tile ratio | ms / tile |")
    print("|---|---|---|---|---|---|---|")
    for model, composite in dict.fromkeys((r["model"], r["composite"]) for r in rows):
        sel = [r for r in rows if r["model"] == model and r["composite"] == composite]
        print(f"| {model} | {composite} | {_mean_sd(r['share'] for r in sel)} | "
              f"{_mean_sd(r['area'] for r in sel)} | {_mean_sd(r['ratio'] for r in sel)} | "
              f"{_mean_sd(r['median'] for r in sel)} | {sum(r['ms'] for r in sel) / len(sel):.1f} |")


if __name__ == "__main__":
    main()
