"""Cohort on Ray vs a plain serial loop over the same slides, on the same cores, in one run.

Usage::

    python benchmarks/cohort_throughput.py                 # 8 slides of 2,048^2, 2 cores
    python benchmarks/cohort_throughput.py --slides 16 --size 4096 --cores 2 --repeats 2

Three ways to explain the same generated slides with the demo model, each a fresh process whose
wall time is measured from outside (interpreter start, imports, model load and, for the cohort,
Ray's start included), interleaved per repeat so that load from other processes hits all alike:

- ``serial``: one Python process, ``for slide in slides: explain_slide(..., threads=CORES)``;
- ``cohort, 1 slide at a time``: ``lrp-captum slide cohort --num-cpus CORES --cpus-per-slide CORES``,
  the same per-slide settings as ``serial``: the difference is the cost of the cohort path (Ray
  start, worker start, task dispatch, progress, table);
- ``cohort, 1 core per slide``: ``--cpus-per-slide 1``, CORES slides at once with one thread each
  (the default).

The per-tile cost is ``tiles_s / n_tiles`` from the serial run's manifests (reading, attribution
and committing of one tile, on CORES threads); docs/cohort.md turns it into cohort times.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERIAL = """
import json, sys
from pathlib import Path
from lrp_captum.wsi.pipeline import explain_slide
spec = json.loads(sys.argv[1])
for slide in sorted(Path(spec["slides"]).glob("*.tif")):
    explain_slide(slide, spec["model"], Path(spec["out"]) / slide.stem, threads=spec["cores"], num_workers=0,
                  batch_size=spec["batch"], device="cpu", quiet=True)
"""


def _timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd[:6])} ... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall


def _tiles(out: Path) -> tuple[int, float]:
    """Total tiles and total tile-loop seconds (read + explain + commit) over a run's manifests."""
    manifests = [json.loads(p.read_text()) for p in out.glob("*/manifest.json")]
    return sum(m["n_tiles"] for m in manifests), sum(m["timings"]["tiles_s"] for m in manifests)


def cost_split(out: Path, slides: Path) -> dict:
    """Where a serial run's time and bytes go, from its manifests and files.

    Returns per-tile milliseconds of attribution and of reading + committing (the tile loop's
    rest), per-slide seconds of stitching + writing outputs, output MB per 1,000 tiles, and the
    compressed level-0 slide bytes a tile reads (file size x the tiles' share of the slide area;
    an estimate: the file also holds the reduced levels).
    """
    manifests = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/manifest.json")}
    n = sum(m["n_tiles"] for m in manifests.values())
    attr = sum(m["timings"]["attribution_s"] for m in manifests.values())
    loop = sum(m["timings"]["tiles_s"] for m in manifests.values())
    post = sum(m["timings"]["stitch_s"] + m["timings"]["outputs_s"] for m in manifests.values())
    out_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    read = 0.0
    for name, m in manifests.items():
        w0, h0 = m["slide"]["dimensions"]
        g = m["grid"]
        tile0 = (g["tile_size"] * g["scale_level0_px_per_target_px"]) ** 2  # level-0 px² per tile
        read += (slides / f"{name}.tif").stat().st_size * min(1.0, m["n_tiles"] * tile0 / (w0 * h0))
    return dict(attribution_ms=1e3 * attr / n, read_commit_ms=1e3 * (loop - attr) / n,
                stitch_outputs_s=post / len(manifests), out_mb_per_1000_tiles=out_bytes / n / 1e3,
                read_kb_per_tile=read / n / 1e3)


def _same_outputs(a: Path, b: Path) -> bool:
    """Every output file byte for byte (manifest.json differs only in its timings)."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "manifest.json"
                   and "cohort" not in p.name and ".cohort" not in p.parts)
    return bool(files) and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=8, help="number of slides (default 8)")
    ap.add_argument("--size", type=int, default=2048, help="slide side in level-0 px (default 2048)")
    ap.add_argument("--cores", type=int, default=2, help="cores for every variant (default 2)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", default=None, help="folder for slides and outputs (default: a temp folder)")
    args = ap.parse_args()

    from lrp_captum.demos.sample_slide import write_sample_slide
    from lrp_captum.demos.slide_model import demo_model_config

    work = Path(args.work or tempfile.mkdtemp(prefix="cohort_bench_"))
    slides = work / f"slides_{args.slides}x{args.size}"
    if not slides.is_dir():
        slides.mkdir(parents=True)
        for i in range(args.slides):
            write_sample_slide(slides / f"s{i:03d}.tif", args.size, kind="tiff", seed=i)
    model = str(demo_model_config())
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=str(args.cores))
    cohort = [sys.executable, "-m", "lrp_captum.cli", "slide", "cohort", str(slides), "--model", model,
              "--batch-size", str(args.batch), "--num-cpus", str(args.cores), "--quiet"]
    variants = {
        "serial loop": lambda out: [sys.executable, "-c", SERIAL, json.dumps(dict(
            slides=str(slides), model=model, out=str(out), cores=args.cores, batch=args.batch))],
        "cohort, 1 slide at a time": lambda out: cohort + ["--out", str(out), "--cpus-per-slide", str(args.cores)],
        "cohort, 1 core per slide": lambda out: cohort + ["--out", str(out), "--cpus-per-slide", "1"],
    }
    walls = {k: [] for k in variants}
    outs = {}
    for r in range(args.repeats):
        for v, (name, cmd) in enumerate(variants.items()):
            out = work / f"out_r{r}_v{v}"
            shutil.rmtree(out, ignore_errors=True)
            walls[name].append(_timed(cmd(out), env))
            outs[name] = out
            print(f"repeat {r + 1}: {name}: {walls[name][-1]:.1f} s", file=sys.stderr, flush=True)

    n_tiles, tiles_s = _tiles(outs["serial loop"])
    base = statistics.median(walls["serial loop"])
    load = os.getloadavg()[0]
    print(f"\n{args.slides} slides of {args.size}^2 px, {n_tiles} tissue tiles, demo model, batch {args.batch}, "
          f"{args.cores} cores, median of {args.repeats}; load average {load:.1f} on {os.cpu_count()} CPUs "
          f"(shared machine)\n")
    print("| variant | wall s | slides/min | tiles/s | wall / serial | same, per repeat |")
    print("|---|---:|---:|---:|---:|---|")
    for name, w in walls.items():
        wall = statistics.median(w)
        paired = ", ".join(f"{a / b:.2f}" for a, b in zip(w, walls["serial loop"]))
        print(f"| {name} | {wall:.1f} | {60 * args.slides / wall:.1f} | {n_tiles / wall:.1f} | {wall / base:.2f} "
              f"| {paired} |")
    for name in list(variants)[1:]:
        t = json.loads((outs[name] / "cohort.json").read_text())["timings"]
        wall = walls[name][-1]
        print(f"\n{name} (last repeat): Ray start {t['ray_start_s']:.1f} s, slides {t['slides_s']:.1f} s, "
              f"Ray stop {t['ray_stop_s']:.1f} s, the rest (interpreter, imports, model check, table) "
              f"{wall - sum(t.values()):.1f} s of {wall:.1f} s")
    print(f"\nper-tile cost (serial, {args.cores} threads, read + explain + commit): {1e3 * tiles_s / n_tiles:.1f} ms")
    split = cost_split(outs["serial loop"], slides)
    print("of which attribution {attribution_ms:.1f} ms, reading + committing {read_commit_ms:.1f} ms; "
          "stitching + outputs {stitch_outputs_s:.1f} s per slide; outputs {out_mb_per_1000_tiles:.1f} MB per "
          "1,000 tiles; about {read_kb_per_tile:.0f} kB of compressed slide read per tile".format(**split))
    print(f"cohort outputs byte-identical to serial (same threads): "
          f"{_same_outputs(outs['serial loop'], outs['cohort, 1 slide at a time'])}")


if __name__ == "__main__":
    main()
