"""Ground-truth benchmark: which explanation puts relevance where the evidence is?

Trains PlantedPatternCNN on planted-pattern images (lrp_captum.demos.planted_patterns) for each seed, then
explains held-out images with LRP composites and Captum baselines and measures relevance mass
accuracy, pointing game, AOPC (MoRF/LeRF), selectivity, conservation, continuity and the
model-randomisation similarity. Prints a markdown table (mean ± std over seeds) and writes
CSV/PNG files to --out.

    python benchmarks/groundtruth.py --n-test 96 --out /tmp/gt_bench   # 41 min on 2 busy CPU cores
    python benchmarks/groundtruth.py --seeds 0 --n-train 1000 --n-test 32   # quick look
"""
from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import torch

from lrp_captum.csv_cells import write_csv_rows
from lrp_captum.demos import planted_patterns as G
from lrp_captum.evaluation import ranking as S

LRP_NAMES = ("seeds", "epsilon_gamma_box", "epsilon_plus_flat", "epsilon", "zero")
CAPTUM_NAMES = ("saliency", "input_x_gradient", "integrated_gradients", "occlusion")
COLUMNS = ("mass_accuracy", "pointing_game", "aopc_morf", "aopc_lerf", "abpc", "selectivity",
           "conservation_error", "continuity", "randomisation_similarity", "seconds")


def run_seed(seed: int, args, device) -> tuple[S.SelectionResult, float, "G.PlantedPatterns", torch.nn.Module]:
    train = G.make_planted_patterns(args.n_train, args.size, args.classes, seed=1000 + seed)
    test = G.make_planted_patterns(args.n_test, args.size, args.classes, seed=2000 + seed)
    t0 = time.perf_counter()
    model, losses = G.train_planted_cnn(train, args.classes, width=args.width, epochs=args.epochs,
                                        seed=seed, device=device)
    acc = G.accuracy(model, test)
    print(f"seed {seed}: trained in {time.perf_counter() - t0:.0f} s, final loss {losses[-1]:.4f}, "
          f"test accuracy {acc:.3f}", flush=True)
    low, high = torch.zeros(3, device=device), torch.ones(3, device=device)
    cands = S.lrp_explainers(LRP_NAMES, low=low, high=high)
    cands.update(S.captum_explainers(CAPTUM_NAMES, occlusion_window=args.patch))
    x, y, m = test.images.to(device), test.labels.to(device), test.masks.to(device)
    res = S.rank_explainers(model, x, cands, target=y, patch_size=args.patch, baseline=args.baseline,
                            masks=m, continuity_samples=args.continuity_samples,
                            randomisation_layers=2, selectivity_orders=2, seed=seed)
    return res, acc, test, model


def run_gamma_grid(args, device) -> None:
    """Seed 004's recipe on the first seed's model: rank a γ × ε grid, beside the ground truth."""
    seed = args.seeds[0]
    train = G.make_planted_patterns(args.n_train, args.size, args.classes, seed=1000 + seed)
    test = G.make_planted_patterns(args.n_test, args.size, args.classes, seed=2000 + seed)
    model, _ = G.train_planted_cnn(train, args.classes, width=args.width, epochs=args.epochs,
                                   seed=seed, device=device)
    low, high = torch.zeros(3, device=device), torch.ones(3, device=device)
    grid = S.lrp_grid(gammas=(0.0, 0.1, 0.25, 0.5, 1.0, 4.0), epsilons=(1e-6, 0.25), low=low, high=high)
    res = S.rank_explainers(model, test.images.to(device), grid, target=test.labels.to(device),
                            patch_size=args.patch, baseline=args.baseline, masks=test.masks.to(device),
                            selectivity_orders=2, seed=seed)
    res.write_report(args.out / "gamma_grid")
    print(f"γ × ε grid (epsilon_gamma_box), seed {seed}, accuracy {G.accuracy(model, test):.3f}, "
          f"{args.n_test} images, ranked by AOPC MoRF")
    print(res.to_markdown())


def heatmap_figure(model, test, device, path: Path, n: int = 6) -> None:
    low, high = torch.zeros(3, device=device), torch.ones(3, device=device)
    cands = {**S.lrp_explainers(("epsilon_gamma_box", "epsilon_plus_flat", "zero"), low=low, high=high),
             **S.captum_explainers(("saliency", "integrated_gradients"))}
    x, y = test.images[:n].to(device), test.labels[:n].to(device)
    G.plot_explanations(path, test, {name: explain(model, x, y) for name, explain in cands.items()}, n, cell=1.6)


def summarise(out: Path) -> None:
    """Print the markdown table (mean ± std over seeds) from ``out/seed*/results.csv``."""
    per_seed: dict[str, list[dict]] = {}
    files = sorted(out.glob("seed*/results.csv"))
    if not files:
        raise SystemExit(f"no seed*/results.csv under {out}; run the benchmark first")
    for f in files:
        with open(f) as fh:
            for row in csv.DictReader(fh):
                per_seed.setdefault(row["name"], []).append(row)

    def stat(name, col):
        vals = [float(r[col]) for r in per_seed[name] if r.get(col) not in (None, "", "nan")]
        vals = [v for v in vals if not math.isnan(v)]
        if not vals:
            return float("nan"), float("nan")
        mean = sum(vals) / len(vals)
        sd = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0.0
        return mean, sd

    order = sorted(per_seed, key=lambda n: -stat(n, "mass_accuracy")[0])
    write_csv_rows(out / "summary.csv", ["method"] + [f"{c}_{s}" for c in COLUMNS for s in ("mean", "std")],
                   ([name] + [v for c in COLUMNS for v in stat(name, c)] for name in order))
    print(f"{len(files)} seed(s): {', '.join(f.parent.name for f in files)}")
    head = ["method", "mass acc ↑", "pointing ↑", "AOPC MoRF ↑", "AOPC LeRF ↓", "ABPC ↑",
            "selectivity ↑", "conserv. err ↓", "continuity ↓", "rand. sim ↓", "s / batch"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name in order:
        cells = [name]
        for c in COLUMNS:
            mean, sd = stat(name, c)
            if math.isnan(mean):
                cells.append("n/a")
            elif c == "seconds":
                cells.append(f"{mean:.2f}")
            else:
                cells.append(f"{mean:.3f} ± {sd:.3f}" if len(files) > 1 else f"{mean:.3f}")
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=128)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--patch", type=int, default=4, help="perturbation patch side in pixels")
    p.add_argument("--baseline", default="mean")
    p.add_argument("--continuity-samples", type=int, default=2)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, default=Path("groundtruth_benchmark"))
    p.add_argument("--gamma-grid", action="store_true",
                   help="instead: rank a γ × ε grid on the first seed's model (writes gamma_grid/)")
    p.add_argument("--summarise-only", action="store_true",
                   help="only print the table of the seeds already under --out")
    args = p.parse_args()
    if args.summarise_only:
        summarise(args.out)
        return
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" else args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.gamma_grid:
        run_gamma_grid(args, device)
        return
    t_all = time.perf_counter()
    for seed in args.seeds:
        res, acc, test, model = run_seed(seed, args, device)
        res.write_report(args.out / f"seed{seed}")  # per seed, so an interrupted run still counts
        if seed == args.seeds[0]:
            heatmap_figure(model, test, device, args.out / "heatmaps.png")
    print()
    print(f"{args.n_test} held-out {args.size}x{args.size} images per seed, {args.classes} classes; "
          f"mask area fraction {test.mask_fraction:.3f}; perturbation: {args.patch}x{args.patch} "
          f"patches -> {args.baseline}; total {time.perf_counter() - t_all:.0f} s")
    summarise(args.out)


if __name__ == "__main__":
    main()
