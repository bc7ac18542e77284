"""WSI pipeline throughput and memory: end-to-end tiles/s vs attribution alone, peak RSS by slide size.

Usage::

    python benchmarks/wsi_throughput.py --threads 1          # 8,000^2 throughput; RSS 8,000^2 vs 32,000^2
    python benchmarks/wsi_throughput.py --rss-mpp 2.0        # RSS with 4x coarser tiles (faster)

1. Throughput: ``explain_slide`` on a generated 8,000 x 8,000 slide at the demo model's resolution
   (end-to-end wall time: open, tissue, grid, DataLoader reads, attribution, commit, stitch, outputs)
   vs ``TileExplainer.explain`` on the same-sized batches of tiles already in memory (same model,
   same composite). Overhead = 1 - end-to-end tiles/s / pre-loaded tiles/s; and, measured within
   the same run (robust to load from other processes), 1 - time in attribution / wall time.
2. Memory: peak RSS (VmHWM) of a fresh process running ``explain_slide`` on each slide size at the
   model's resolution (about 5 min for 32,000^2 on a busy 2-core CPU; ``--rss-mpp 2`` for a
   quicker run with 16x fewer tiles). The reader worker's peak (ru_maxrss of the children) is
   reported separately; as a forked process it counts pages shared with the main process.

Each measurement runs in its own subprocess. Slides are cached under ``--work``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM is per address space, so unlike ru_maxrss it
    does not inherit the peak of the parent that forked this process before exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(spec: dict) -> dict:
    import numpy as np
    import torch

    from lrp_captum.wsi.tile_relevance import TileExplainer
    from lrp_captum.wsi.model import load_model
    from lrp_captum.wsi.pipeline import explain_slide

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    out = Path(tempfile.mkdtemp(prefix="wsi_bench_"))
    m = explain_slide(spec["slide"], spec["model"], out / "run", mpp=spec.get("mpp"), batch_size=spec["batch"],
                      device=spec["device"], quiet=True, overwrite=True)
    res = dict(n_tiles=m["n_tiles"], timings=m["timings"],
               rss_self_mb=_peak_rss_mb(),
               rss_workers_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
               relevance_shape=m["relevance_shape"])
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    if spec.get("preloaded"):
        import openslide

        from lrp_captum.wsi.grid import make_grid, tissue_tiles
        from lrp_captum.wsi.reader import read_tile
        from lrp_captum.wsi.tissue import detect_tissue

        bundle = load_model(spec["model"], spec["device"])
        s = openslide.OpenSlide(spec["slide"])
        grid = make_grid(*s.dimensions, float(s.properties["openslide.mpp-x"]), s.level_downsamples,
                         target_mpp=bundle.mpp, tile_size=bundle.tile_size)
        tiles = tissue_tiles(grid, detect_tissue(s, slide_mpp=grid.slide_mpp))
        k = min(len(tiles), spec["preloaded"])
        data = torch.from_numpy(np.stack([read_tile(s, grid, t["x0"], t["y0"]) for t in tiles[:k]]))
        ex = TileExplainer(bundle)
        ex.explain(data[:spec["batch"]])  # warm-up
        if bundle.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(0, k, spec["batch"]):
            ex.explain(data[i:i + spec["batch"]])
        if bundle.device.type == "cuda":
            torch.cuda.synchronize()
        res["preloaded_tiles"] = k
        res["preloaded_tiles_per_s"] = k / (time.perf_counter() - t)
    return res


def _run_child(spec: dict) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], cwd=ROOT, capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--throughput-size", type=int, default=8000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[8000, 32000])
    ap.add_argument("--rss-mpp", type=float, default=None, help="tile µm/px for the RSS runs (default: the model's)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--preloaded", type=int, default=512, help="tiles for the pre-loaded attribution timing")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--work", default=str(ROOT / ".cache" / "wsi_bench"))
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--repeats", type=int, default=3, help="throughput runs; medians are reported")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0

    sys.path.insert(0, str(ROOT))
    from lrp_captum.demos.sample_slide import write_sample_slide
    from lrp_captum.demos.slide_model import demo_model_config

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = str(demo_model_config(quiet=True))

    def slide(size):
        p = work / f"sample_{size}.svs"
        if not p.exists():
            t = time.perf_counter()
            write_sample_slide(p, size, kind="svs", seed=0)
            print(f"generated {p.name} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        return str(p)

    common = dict(model=model, batch=args.batch, device=args.device, threads=args.threads)
    if not args.skip_throughput:
        import statistics

        runs = [_run_child(dict(common, slide=slide(args.throughput_size), preloaded=args.preloaded))
                for _ in range(args.repeats)]
        med = statistics.median
        r = runs[0]
        tm = {k: med(x["timings"][k] for x in runs) for k in ("total_s", "attribution_s", "open_tissue_grid_s",
                                                              "stitch_s", "outputs_s")}
        e2e = med(x["n_tiles"] / x["timings"]["total_s"] for x in runs)
        pre = med(x["preloaded_tiles_per_s"] for x in runs)
        within = med(1 - x["timings"]["attribution_s"] / x["timings"]["total_s"] for x in runs)
        print(f"\n## Throughput ({args.throughput_size:,}^2 slide, demo CNN, epsilon_plus_flat, batch {args.batch}, "
              f"device {args.device}, median of {args.repeats} runs)\n")
        print("| measure | value |\n| --- | --- |")
        print(f"| tissue tiles | {r['n_tiles']} |")
        print(f"| end-to-end wall time | {tm['total_s']:.1f} s |")
        print(f"| end-to-end tiles/s | {e2e:.1f} |")
        print(f"| attribution on pre-loaded tensors, tiles/s | {pre:.1f} |")
        print(f"| pipeline overhead (1 - e2e / pre-loaded) | {100 * (1 - e2e / pre):.1f} % |")
        print(f"| time in attribution inside the run | {tm['attribution_s']:.1f} s |")
        print(f"| pipeline overhead within the run (1 - attribution / wall) | {100 * within:.1f} % |")
        print("| per run: e2e tiles/s, pre-loaded tiles/s, within-run overhead | " + "; ".join(
            f"{x['n_tiles'] / x['timings']['total_s']:.0f}, {x['preloaded_tiles_per_s']:.0f}, "
            f"{100 * (1 - x['timings']['attribution_s'] / x['timings']['total_s']):.0f} %" for x in runs) + " |")
        print(f"| open + tissue + grid / stitch / outputs | {tm['open_tissue_grid_s']:.1f} / {tm['stitch_s']:.1f} / "
              f"{tm['outputs_s']:.1f} s |")
    if args.skip_rss:
        return 0
    rows = []
    for size in args.sizes:
        rr = _run_child(dict(common, slide=slide(size), mpp=args.rss_mpp))
        rows.append((size, rr))
    print(f"\n## Peak RSS by slide size (tiles at {args.rss_mpp or 'the model'} µm/px, batch {args.batch})\n")
    print("| slide | tiles | relevance map | wall | peak RSS main | peak RSS reader worker |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size, rr in rows:
        h, w = rr["relevance_shape"]
        print(f"| {size:,}^2 | {rr['n_tiles']} | {w}x{h} | {rr['timings']['total_s']:.0f} s | "
              f"{rr['rss_self_mb']:.0f} MB | {rr['rss_workers_mb']:.0f} MB |")
    a, b = rows[0][1]["rss_self_mb"], rows[-1][1]["rss_self_mb"]
    print(f"\npeak RSS ratio {rows[-1][0]:,}^2 / {rows[0][0]:,}^2: {b / a:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
