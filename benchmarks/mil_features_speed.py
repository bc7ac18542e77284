"""Speed of explaining a slide from features TRIDENT/CLAM already computed (issue 21).

Usage::

    python benchmarks/mil_features_speed.py                    # 20,000 tiles, 1,024-d, CLAM-SB
    python benchmarks/mil_features_speed.py --heads clam_sb clam_mb abmil transmil --repeats 7

1. Head: a bag of ``--tiles`` random ``--dim``-d features through a published head of that size
   (CLAM-SB: 1024 → 512, gated attention 256, 2 classes; weights random). ``forward``,
   ``gradient`` (gradient × input: one forward and backward of the target logit, the head's
   input gradient) and ``xmil_lrp`` run round-robin in one process, each after a warm-up call,
   so load from other processes hits them alike; the table gives the median seconds and the
   ratio to ``gradient``. The goal of issue 21: ``xmil_lrp`` at most 2× ``gradient``.
2. Reading: a TRIDENT features file of ``--tiles`` × ``--dim`` (float32 and float16, row chunks
   as TRIDENT writes them) read with :func:`read_feature_file`; median of ``--repeats`` reads
   (the file is in the page cache after the first).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_captum.wsi.mil.evidence import tile_evidence  # noqa: E402
from lrp_captum.wsi.mil.feature_files import read_feature_file  # noqa: E402
from lrp_captum.wsi.mil.published_heads import ABMIL, CLAM, TransMIL  # noqa: E402

HEADS = {
    "clam_sb": lambda d: CLAM(d, 2),
    "clam_mb": lambda d: CLAM(d, 2, multi_branch=True),
    "abmil": lambda d: ABMIL(d, 512, 384, 2),
    "transmil": lambda d: TransMIL(d, 2),
}


def _median_times(runners: dict, repeats: int) -> dict:
    for run in runners.values():  # warm-up (and the LRP plan, made once per head)
        run()
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def head_rows(names, tiles: int, dim: int, repeats: int) -> list[dict]:
    rows = []
    for name in names:
        torch.manual_seed(0)
        head = HEADS[name](dim).eval().requires_grad_(False)
        bag = torch.randn(tiles, dim)

        def forward(head=head, bag=bag):
            with torch.no_grad():
                head(bag.unsqueeze(0))

        runners = {"forward": forward, "gradient": lambda h=head, b=bag: tile_evidence("gradient", h, b, 1),
                   "xmil_lrp": lambda h=head, b=bag: tile_evidence("xmil_lrp", h, b, 1)}
        medians = _median_times(runners, repeats)
        rows += [dict(head=name, method=m, seconds=s, ratio=s / medians["gradient"]) for m, s in medians.items()]
    return rows


def write_trident_features(path: Path, tiles: int, dim: int, dtype) -> Path:
    import h5py

    rng = np.random.default_rng(0)
    side = int(np.ceil(np.sqrt(tiles)))
    coords = np.stack(np.divmod(np.arange(tiles), side)[::-1], axis=1).astype(np.int64) * 512
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=rng.standard_normal((tiles, dim)).astype(dtype), chunks=(1, dim),
                         maxshape=(None, dim))
        f.create_dataset("coords", data=coords, chunks=(1, 2), maxshape=(None, 2)).attrs.update(
            patch_size=256, patch_size_level0=512, level0_magnification=40, target_magnification=20, overlap=0)
    return path


def read_rows(tiles: int, dim: int, repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in (np.float32, np.float16):
            path = write_trident_features(Path(tmp) / f"S_{np.dtype(dtype).name}.h5", tiles, dim, dtype)
            medians = _median_times({"read": lambda p=path: read_feature_file(p)}, repeats)
            rows.append(dict(dtype=np.dtype(dtype).name, megabytes=path.stat().st_size / 2**20,
                             seconds=medians["read"]))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--heads", nargs="+", default=["clam_sb"], choices=sorted(HEADS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    print(f"\nHead on a bag of {args.tiles:,} tiles × {args.dim} (median of {args.repeats} warm calls, "
          f"{args.threads} threads, torch {torch.__version__})\n")
    print("| head | method | median s | × gradient |")
    print("|---|---|---:|---:|")
    for r in head_rows(args.heads, args.tiles, args.dim, args.repeats):
        print(f"| {r['head']} | {r['method']} | {r['seconds']:.3f} | {r['ratio']:.2f} |")

    print(f"\nReading a TRIDENT features file of {args.tiles:,} × {args.dim} (row chunks; median of "
          f"{args.repeats} reads)\n")
    print("| features dtype | file MB | median s |")
    print("|---|---:|---:|")
    for r in read_rows(args.tiles, args.dim, args.repeats):
        print(f"| {r['dtype']} | {r['megabytes']:.0f} | {r['seconds']:.3f} |")


if __name__ == "__main__":
    main()
