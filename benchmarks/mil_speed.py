"""MIL explanation cost: evidence methods on a 2,000-tile bag against the head's own gradient,
and the end-to-end time of ``explain_mil_slide`` split into embedding, head and pixel maps.

Usage::

    python benchmarks/mil_speed.py                        # bag benchmark only (random heads)
    python benchmarks/mil_speed.py --head H.json --slide S.tif --work /tmp/mil_speed

1. Bag benchmark: for each head (gated attention-MIL, transformer) and embedding size, a bag of
   ``--tiles`` random embeddings; each method runs ``--repeats`` times, interleaved round-robin
   in one process so that load from other processes hits all methods alike; the table gives
   the median seconds and the ratio to ``gradient`` (forward + backward of the target logit,
   i.e. the head's own gradient). The goal of issue 13: ``xmil_lrp`` at most 2x ``gradient``.
2. End to end (with --head and --slide): ``explain_mil_slide`` with a fresh embedding cache,
   then a second explanation of the same slide into another folder (embeddings from the cache).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lrp_captum.wsi.mil.evidence import MethodUnavailableError, tile_evidence  # noqa: E402
from lrp_captum.wsi.mil.heads import make_head  # noqa: E402

METHODS = ("gradient", "xmil_lrp", "integrated_gradients", "single", "attention")


def forward_only(head, bag, target):
    with torch.no_grad():
        head(bag.unsqueeze(0))


def bag_benchmark(tiles: int, dims, repeats: int, threads: int):
    torch.set_num_threads(threads)
    rows = []
    for name in ("abmil", "transmil"):
        for dim in dims:
            torch.manual_seed(0)
            head = make_head(name, dim).eval()
            bag = torch.randn(tiles, dim)
            runners = {"forward": lambda: forward_only(head, bag, 1)}
            for m in METHODS:
                runners[m] = (lambda m=m: tile_evidence(m, head, bag, 1))
            available = {}
            for m, run in runners.items():  # warm-up; find what runs here
                try:
                    run()
                    available[m] = True
                except MethodUnavailableError:
                    available[m] = False
            times = {m: [] for m in runners if available[m]}
            for _ in range(repeats):
                for m in times:
                    t0 = time.perf_counter()
                    runners[m]()
                    times[m].append(time.perf_counter() - t0)
            grad = statistics.median(times["gradient"])
            for m in runners:
                med = statistics.median(times[m]) if available[m] else float("nan")
                rows.append(dict(head=name, dim=dim, tiles=tiles, method=m, available=available[m],
                                 median_s=med, ratio_to_gradient=med / grad))
    return rows


def end_to_end(head_path, slide, work: Path, method: str):
    from lrp_captum.wsi.mil.explain import explain_mil_slide

    cache = work / "embeddings"
    first = explain_mil_slide(slide, head_path, work / "first", method=method, embeddings_dir=cache, quiet=True,
                              overwrite=True)
    second = explain_mil_slide(slide, head_path, work / "second", method=method, top_tiles=4, embeddings_dir=cache,
                               quiet=True, overwrite=True)
    return first, second


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiles", type=int, default=2000)
    p.add_argument("--dims", type=int, nargs="+", default=[32, 512])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--head", default=None, help="trained head JSON for the end-to-end run")
    p.add_argument("--slide", default=None, help="slide for the end-to-end run")
    p.add_argument("--method", default="xmil_lrp", help="evidence method of the end-to-end run")
    p.add_argument("--work", default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    print(f"load average before: {os.getloadavg()}  torch threads: {args.threads}")
    rows = bag_benchmark(args.tiles, args.dims, args.repeats, args.threads)
    print(f"\nBag of {args.tiles} tile embeddings through the head (median of {args.repeats}, interleaved)\n")
    print("| head | D | method | median s | x gradient |")
    print("|---|---:|---|---:|---:|")
    for r in rows:
        if r["available"]:
            print(f"| {r['head']} | {r['dim']} | {r['method']} | {r['median_s']:.4f} | {r['ratio_to_gradient']:.2f} |")
        else:
            print(f"| {r['head']} | {r['dim']} | {r['method']} | not available here | |")
    result = dict(bag=rows, load_average=os.getloadavg())
    if args.head and args.slide:
        work = Path(args.work or tempfile.mkdtemp(prefix="mil_speed_"))
        try:
            first, second = end_to_end(args.head, args.slide, work, args.method)
        except MethodUnavailableError as exc:
            print(f"\nend to end with {args.method}: {exc}\nrerun with --method gradient")
            first, second = end_to_end(args.head, args.slide, work, "gradient")
        print(f"\nEnd to end, {Path(args.slide).name}: {first['n_tiles']} tiles, method {first['method']}\n")
        print("| run | embedding s | head s | pixel maps s | outputs s | total s | tiles embedded |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, m in (("first (empty cache)", first), ("second (same slide)", second)):
            t = m["timings"]
            print(f"| {name} | {t['embedding_s']:.2f} | {t['head_s']:.3f} | {t['pixel_maps_s']:.2f} | "
                  f"{t['outputs_s']:.2f} | {t['total_s']:.2f} | {m['embeddings']['embedded_now']} |")
        result["end_to_end"] = dict(first=first["timings"], second=second["timings"], n_tiles=first["n_tiles"],
                                    method=first["method"], embedded=[first["embeddings"]["embedded_now"],
                                                                      second["embeddings"]["embedded_now"]])
    print(f"\nload average after: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
