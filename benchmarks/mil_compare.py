"""Compare tile-evidence methods for MIL heads on the held-out slides of the synthetic cohort.

Usage::

    python benchmarks/mil_compare.py --cohort /tmp/mil/cohort --heads abmil.json transmil.json \
        --figure docs/figures/mil_comparison.png

Measures (see :mod:`lrp_captum.wsi.mil.faithfulness`):

- tile AUROC: evidence for the ``lesion`` logit against the lesion mask, on held-out lesion
  slides (lesion tile = at least half of its area is lesion; tiles with less are left out);
- AOPC: mean drop of the ``lesion`` logit when the top-k tiles by evidence are removed,
  k = 0..20, on all held-out slides.

Without ``--heads`` the script writes (or reuses) a 48-slide cohort under ``--work`` and trains
both heads first, as ``lrp-captum slide cohort-sample`` and ``train-mil`` would.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_captum.wsi.mil.faithfulness import DEFAULT_METHODS, compare_on_cohort  # noqa: E402

LABELS = {"xmil_lrp": "xMIL-LRP", "xmil_lrp_bias_kept": "xMIL-LRP, biases kept", "attention": "attention", "attention_norm": "attention x norm",
          "gradient": "gradient x input", "integrated_gradients": "IG", "single": "Single",
          "leave_one_out": "leave-one-out", "random": "random"}


def summarise(table):
    """Per method: mean ± sd of AUROC (lesion slides) and AOPC (all slides), seconds per slide."""
    rows = []
    for method, g in table.groupby("method", sort=False):
        if not g["available"].all():
            rows.append(dict(method=method, available=False))
            continue
        auroc = g.loc[g["label"] == 1, "auroc"].dropna()
        rows.append(dict(method=method, available=True, auroc_mean=auroc.mean(), auroc_sd=auroc.std(),
                         aopc_mean=g["aopc"].mean(), aopc_sd=g["aopc"].std(), seconds=g["seconds"].mean(),
                         n_lesion_slides=len(auroc), n_slides=len(g)))
    return rows


def print_table(name, rows):
    print(f"\n{name}\n")
    print("| method | tile AUROC (lesion slides) | AOPC, lesion logit (all held-out) | s / slide |")
    print("|---|---:|---:|---:|")
    for r in rows:
        if not r["available"]:
            print(f"| {LABELS.get(r['method'], r['method'])} | not available | not available | |")
            continue
        print(f"| {LABELS.get(r['method'], r['method'])} | {r['auroc_mean']:.3f} ± {r['auroc_sd']:.3f} | "
              f"{r['aopc_mean']:.3f} ± {r['aopc_sd']:.3f} | {r['seconds']:.3f} |")


def figure(path, results, cohort, heads):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lrp_captum.demos.mil_cohort import read_cohort, tile_lesion_fraction
    from lrp_captum.wsi.mil.embeddings import embed_slide
    from lrp_captum.wsi.mil.encoders import build_encoder
    from lrp_captum.wsi.mil.evidence import MethodUnavailableError, tile_evidence
    from lrp_captum.wsi.mil.head_files import load_head

    names = list(results)
    fig = plt.figure(figsize=(13, 7.5), dpi=110)
    for k, measure in enumerate(("auroc", "aopc")):
        ax = fig.add_subplot(2, 2, k + 1)
        width = 0.8 / len(names)
        methods = [r["method"] for r in results[names[0]]]
        for j, name in enumerate(names):
            rows = {r["method"]: r for r in results[name]}
            vals = [rows[m].get(f"{measure}_mean", np.nan) for m in methods]
            errs = [rows[m].get(f"{measure}_sd", 0) for m in methods]
            ax.bar(np.arange(len(methods)) + j * width, vals, width, yerr=errs, label=name, capsize=2)
        ax.set_xticks(np.arange(len(methods)) + width * (len(names) - 1) / 2)
        ax.set_xticklabels([LABELS.get(m, m) for m in methods], rotation=35, ha="right", fontsize=8)
        ax.set_title("tile AUROC vs lesion mask" if measure == "auroc" else "AOPC of patch dropping (lesion logit)")
        if measure == "auroc":
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        ax.legend(fontsize=8)
    # one held-out lesion slide: tile maps of a few methods for the first head
    head = load_head(heads[0])
    enc = build_encoder(head.encoder_spec)
    entry = next(e for e in read_cohort(cohort) if e.split == "test" and e.label == 1)
    bag = embed_slide(entry.slide, enc, Path(cohort) / "embeddings")
    rows, cols = bag.tiles["row"], bag.tiles["col"]
    shape = (rows.max() + 1, cols.max() + 1)
    panels = [("lesion share of the tile", tile_lesion_fraction(entry.mask, bag.tiles), "Oranges")]
    for m in ("xmil_lrp", "attention", "single", "gradient"):
        try:
            panels.append((LABELS[m], tile_evidence(m, head.model, head.bag_input(bag.features), 1).scores.numpy(),
                           "viridis" if m == "attention" else "bwr"))
        except MethodUnavailableError:
            continue
    for i, (title, values, cmap) in enumerate(panels):
        ax = fig.add_subplot(2, len(panels), len(panels) + i + 1)
        img = np.full(shape, np.nan)
        img[rows, cols] = values
        lim = np.nanmax(np.abs(img)) or 1.0
        # tissue tiles without lesion/attention still get a visible colour; glass stays white
        ax.imshow(img, cmap=cmap, vmin=-lim if cmap == "bwr" else -0.15 * lim, vmax=lim)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"MIL evidence on the held-out cohort slides ({', '.join(names)}); bottom: "
                 f"{entry.slide.name} with {names[0]}, red = for lesion", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cohort", default=None, help="cohort folder (default: WORK/cohort, written if missing)")
    p.add_argument("--heads", nargs="*", default=None, help="head JSON files (default: train abmil and transmil)")
    p.add_argument("--work", default="/tmp/lrp_captum_mil_compare")
    p.add_argument("--n", type=int, default=48, help="slides of a generated cohort")
    p.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    p.add_argument("--figure", default=None, help="PNG to write")
    p.add_argument("--json", default=None, help="summary JSON to write")
    args = p.parse_args(argv)
    work = Path(args.work)
    cohort = Path(args.cohort or work / "cohort")
    if not (cohort / "cohort.csv").is_file():
        from lrp_captum.demos.mil_cohort import write_cohort

        write_cohort(cohort, args.n, seed=1)
    heads = args.heads
    if not heads:
        from lrp_captum.wsi.mil.training import train_mil

        heads = []
        for name in ("abmil", "transmil"):
            path = work / f"{name}.json"
            if not path.is_file():
                train_mil(cohort, work / name, head=name)
            heads.append(str(path))
    print(f"load average: {os.getloadavg()}")
    results = {}
    for h in heads:
        table = compare_on_cohort(h, cohort, methods=args.methods)
        name = json.loads(Path(h).read_text())["head"]
        results[name] = summarise(table)
        print_table(f"{name} ({Path(h).name}), {table['slide'].nunique()} held-out slides", results[name])
    if args.figure:
        figure(args.figure, results, cohort, heads)
        print(f"\nwrote {args.figure}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
