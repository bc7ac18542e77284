"""Faithfulness on planted patterns, Vision Transformer (issue 12): which explanation of a ViT
puts its relevance where the evidence is?

For each seed, trains the planted-pattern ViT (lrp_captum.demos.planted_patterns.planted_pattern_vit) on
its own generated images, explains held-out images for their true class with AttnLRP
(attnlrp, attnlrp_gamma), CP-LRP, input×gradient, Captum's IntegratedGradients, attention
rollout, raw attention and random noise (lrp_captum.demos.vit_planted_patterns), and scores the maps
against the pattern masks: relevance mass accuracy and pointing game, on pixels and on the
ViT's 4×4 patches. Prints markdown tables (mean ± sd over seeds) and writes per-seed CSVs, the
trained weights and a figure to --out.

    python benchmarks/vit_groundtruth.py --out /tmp/vit_gt                 # 3 seeds
    python benchmarks/vit_groundtruth.py --out /tmp/vit_gt --reuse         # explain again only
    python benchmarks/vit_groundtruth.py --seeds 0 --n-train 2000 --epochs 4 --n-test 32  # quick look
"""
from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from pathlib import Path

import torch

from lrp_captum.csv_cells import write_csv_rows
from lrp_captum.demos import planted_patterns as G
from lrp_captum.demos.vit_planted_patterns import SCORES, VIT_METHODS, score_explainers, vit_explainers

PATCH = 4
HEADERS = {"mass_accuracy": "mass acc (pixels) ↑", "mass_accuracy_patches": "mass acc (patches) ↑",
           "pointing_game": "pointing (pixels) ↑", "pointing_game_patches": "pointing (patches) ↑",
           "seconds": "s / image"}


def trained_model(seed: int, args) -> tuple[torch.nn.Module, dict, "G.PlantedPatterns"]:
    """The seed's ViT, trained (or loaded from ``--out`` with ``--reuse``), its record and test set."""
    train = G.make_planted_patterns(args.n_train, args.size, args.classes, seed=1000 + seed)
    test = G.make_planted_patterns(args.n_test, args.size, args.classes, seed=2000 + seed)
    weights = args.out / f"seed{seed}" / "vit.pt"
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    if args.reuse and weights.is_file():
        torch.manual_seed(seed)
        model = G.planted_pattern_vit(args.classes, args.size)
        model.load_state_dict(torch.load(weights, weights_only=True))
        model.eval()
        seconds, final_loss = math.nan, math.nan
    else:
        model, losses = G.train_planted_vit(train, args.classes, epochs=args.epochs, seed=seed)
        seconds, final_loss = time.perf_counter() - start, losses[-1]
        weights.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), weights)
    record = dict(seed=seed, accuracy=G.accuracy(model, test), train_seconds=seconds,
                  final_loss=final_loss, load=(load_before + os.getloadavg()[0]) / 2)
    print(f"seed {seed}: test accuracy {record['accuracy']:.3f}, trained in {seconds:.0f} s "
          f"(final loss {final_loss:.4f}, 1-min load average ~{record['load']:.1f})", flush=True)
    return model, record, test


def run_seed(seed: int, args) -> tuple[dict, dict]:
    model, record, test = trained_model(seed, args)
    with warnings.catch_warnings():  # AttnLRP's sums are not the logit, by design; reported below
        warnings.simplefilter("ignore")
        results = score_explainers(model, test.images, test.labels, test.masks,
                                   vit_explainers(VIT_METHODS, seed=seed), PATCH)
    rows = [dict(seed=seed, method=name, **{k: float(v.float().mean()) for k, v in scores.items()
                                            if k != "seconds"},
                 seconds=scores["seconds"] / len(test)) for name, scores in results.items()]
    write_csv_rows(args.out / f"seed{seed}" / "scores.csv", list(rows[0]), (list(r.values()) for r in rows))
    if seed == args.seeds[0]:
        heatmap_figure(model, test, args.out / "vit_groundtruth_heatmaps.png")
    return rows, record


def _mean_sd(values: list[float]) -> str:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:.3f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{mean:.3f} ± {sd:.3f}"


def summary_table(rows: list[dict]) -> str:
    """Markdown: one row per method, mean ± sd over seeds, best mass accuracy first."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    columns = list(SCORES) + ["seconds"]
    table = {m: {c: [r[c] for r in rows if r["method"] == m] for c in columns} for m in methods}
    methods.sort(key=lambda m: -sum(table[m]["mass_accuracy"]) / len(table[m]["mass_accuracy"]))
    lines = ["| method | " + " | ".join(HEADERS[c] for c in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for m in methods:
        cells = [_mean_sd(table[m][c]) for c in SCORES] + \
            [f"{sum(table[m]['seconds']) / len(table[m]['seconds']):.4f}"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def heatmap_figure(model, test, path: Path, n: int = 6) -> None:
    x, y = test.images[:n], test.labels[:n]
    explainers = vit_explainers([m for m in VIT_METHODS if m != "random"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        maps = {name.replace("_", " "): explain(model, x, y) for name, explain in explainers.items()}
    G.plot_explanations(path, test, maps, n)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-train", type=int, default=12000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--n-test", type=int, default=96)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: on a shared machine more were slower)")
    p.add_argument("--reuse", action="store_true", help="load the weights --out holds instead of training")
    p.add_argument("--out", type=Path, default=Path("vit_groundtruth"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows, records = [], []
    for seed in args.seeds:
        seed_rows, record = run_seed(seed, args)
        rows += seed_rows
        records.append(record)
    print(f"\n{len(args.seeds)} seed(s), {args.n_test} held-out images each, explained for the true "
          f"class; mask area {100 * 49 / args.size ** 2:.1f} % of the pixels; total "
          f"{time.perf_counter() - start:.0f} s\n")
    print("| seed | test accuracy | training s | final loss | load |\n|---|---|---|---|---|")
    for r in records:
        print(f"| {r['seed']} | {r['accuracy']:.3f} | {r['train_seconds']:.0f} | {r['final_loss']:.4f} | "
              f"{r['load']:.1f} |")
    print()
    print(summary_table(rows))


if __name__ == "__main__":
    main()
