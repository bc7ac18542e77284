"""The whole ``lrp-captum slide explain-mil --features`` run on a 20,000-tile slide (issue 21).

Usage::

    python benchmarks/mil_features.py                      # 20,000 tiles, 1,024-d, CLAM-SB, 3 runs
    python benchmarks/mil_features.py --work /tmp/bench    # keep (and reuse) the slide and files

Writes once (not timed): a pyramidal TIFF slide of 142 × 141 tiles of 256 level-0 px at
0.5 µm/px (36,352 × 36,096 px; a few textures of the demo slide repeated), a TRIDENT job folder with the slide's ``features`` (``--tiles``
× ``--dim`` float32) and ``coords`` (the first ``--tiles`` tiles of that grid), and a CLAM-SB
checkpoint of the usual size (1024 → 512, gated attention 256, 2 classes; random weights, saved
as ``{"model_state_dict", "epoch", "auc_val": numpy.float64}``). Then runs the command as a user
does, in a fresh process each time (``--runs`` times, into a new folder), and prints the wall
time of the process (Python start and imports included) and the stages the manifest records.
The goal of issue 21: under a minute, with no tile embedded (``embeddings.embedded_now == 0``).

``--head-bench`` adds the head alone: xMIL-LRP against the head's gradient on the same bag
(:mod:`mil_features_speed`, median of warm calls round-robin in one process).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIDE0, MPP = 256, 0.5  # tile side in level-0 px, µm per level-0 px (20x: TRIDENT's 256 px at 20x)


def write_tiled_slide(path: Path, width: int, height: int, tile: int = 256) -> Path:
    """A generic pyramidal TIFF (levels 1, 4, 16, 64; JPEG tiles) that OpenSlide opens with its mpp.

    Its tiles are a few textures of the demo slide repeated: what is timed is the run, not the
    slide's content, and rendering 1.3 gigapixels would take longer than everything else.
    """
    import tifffile

    from lrp_captum.demos.sample_slide import write_sample_slide

    small = path.with_name("texture.tif")
    if not small.is_file():
        write_sample_slide(small, 1024, kind="tiff", mpp=MPP)
    import openslide

    with openslide.OpenSlide(str(small)) as s:
        texture = np.asarray(s.read_region((0, 0), 0, (1024, 1024)).convert("RGB"))
    textures = [texture[y:y + tile, x:x + tile] for y in range(0, 1024, tile) for x in range(0, 1024, tile)]
    res_cm = 1e4 / MPP
    tmp = path.with_name(path.name + ".tmp")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        for i, d in enumerate((1, 4, 16, 64)):
            lw, lh = -(-width // d), -(-height // d)

            def tiles(lw=lw, lh=lh):
                for ty in range(0, lh, tile):
                    for tx in range(0, lw, tile):
                        yield textures[(tx // tile * 7 + ty // tile * 3) % len(textures)]

            tif.write(tiles(), shape=(lh, lw, 3), dtype=np.uint8, tile=(tile, tile), photometric="rgb",
                      compression="jpeg", resolution=(res_cm / d, res_cm / d), resolutionunit="CENTIMETER",
                      subfiletype=1 if i else 0, metadata=None)
    tmp.rename(path)
    return path


def write_inputs(work: Path, tiles: int, dim: int) -> tuple[Path, Path, Path]:
    """(slide, TRIDENT job folder, CLAM-SB checkpoint) under ``work``, written when missing."""
    import h5py
    import torch

    from lrp_captum.wsi.mil.published_heads import CLAM

    cols = int(np.ceil(np.sqrt(tiles)))
    rows = -(-tiles // cols)
    slide = work / "slide_20k.tif"
    if not slide.is_file():
        write_tiled_slide(slide, cols * SIDE0, rows * SIDE0)
    feats = work / "job" / "20x_256px_0px_overlap" / "features_uni_v1" / f"{slide.stem}.h5"
    if not feats.is_file():
        feats.parent.mkdir(parents=True, exist_ok=True)
        idx = np.arange(tiles)
        coords = np.stack([idx % cols, idx // cols], axis=1).astype(np.int64) * SIDE0
        with h5py.File(feats, "w") as f:
            f.create_dataset("features", data=np.random.default_rng(0).standard_normal((tiles, dim), np.float32))
            f.create_dataset("coords", data=coords).attrs.update(
                patch_size=SIDE0, patch_size_level0=SIDE0, level0_magnification=20, target_magnification=20,
                overlap=0)
    head = work / "clam_sb.pt"
    if not head.is_file():
        torch.manual_seed(0)
        torch.save({"model_state_dict": CLAM(dim, 2).state_dict(), "epoch": 20, "auc_val": np.float64(0.9)}, head)
    return slide, work / "job", head


def whole_runs(work: Path, slide: Path, job: Path, head: Path, runs: int) -> list[dict]:
    rows = []
    for i in range(runs):
        out = work / f"out_{time.time_ns()}"
        cmd = [sys.executable, "-m", "lrp_captum.cli", "slide", "explain-mil", str(slide), "--features", str(job),
               "--head", str(head), "--head-arch", "clam-sb", "--out", str(out), "--quiet"]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        wall = time.perf_counter() - t0
        if done.returncode:
            raise SystemExit(f"run {i} failed ({done.returncode}): {done.stderr.strip()}")
        manifest = json.loads((out / "manifest.json").read_text())
        rows.append(dict(wall_s=wall, n_tiles=manifest["n_tiles"], embedded=manifest["embeddings"]["embedded_now"],
                         **manifest["timings"]))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="folder for the inputs (default: a temporary one)")
    parser.add_argument("--head-bench", action="store_true", help="also time xMIL-LRP against the gradient")
    parser.add_argument("--repeats", type=int, default=5, help="warm calls per method of --head-bench")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        inputs = write_inputs(work, args.tiles, args.dim)
        print(f"inputs ready in {time.perf_counter() - t0:.0f} s (slide {inputs[0].stat().st_size / 2**20:.0f} MB)")
        rows = whole_runs(work, *inputs, args.runs)
    print(f"\n`slide explain-mil --features` on a {rows[0]['n_tiles']:,}-tile slide, {args.dim}-d TRIDENT "
          f"features, CLAM-SB (one fresh process per run; median of {len(rows)}; tiles embedded: "
          f"{max(r['embedded'] for r in rows)})\n")
    print("| stage | median s | runs |")
    print("|---|---:|---|")
    for key, name in (("wall_s", "**whole command** (process wall time)"), ("total_s", "explain_mil_slide"),
                      ("embedding_s", "reading + checking the features"), ("head_s", "prediction + xMIL-LRP"),
                      ("outputs_s", "writing the result folder")):
        values = [r[key] for r in rows]
        print(f"| {name} | {statistics.median(values):.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    if args.head_bench:
        import torch

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from mil_features_speed import head_rows

        print(f"\nThe head alone on the same bag ({args.tiles:,} × {args.dim}; median of {args.repeats} warm calls "
              f"round-robin in one process, {torch.get_num_threads()} threads)\n")
        print("| method | median s | × gradient |")
        print("|---|---:|---:|")
        for r in head_rows(["clam_sb"], args.tiles, args.dim, args.repeats):
            print(f"| {r['method']} | {r['seconds']:.3f} | {r['ratio']:.2f} |")
    return rows


if __name__ == "__main__":
    main()
