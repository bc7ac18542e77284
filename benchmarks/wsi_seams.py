"""Seams in stitched slide heatmaps, and what removing them costs, measured side by side.

Usage::

    python benchmarks/wsi_seams.py                          # held-out 3,072² slide, overlaps 0, 1/8, 1/4
    python benchmarks/wsi_seams.py --overlaps 0 0.25 --rounds 3

A CNN with zero padding gives the outermost pixels of its input less relevance than the interior
(they feed fewer neurons, and the padded neighbourhood changes the activations there). Tiled
without overlap, every tile boundary then shows as a line of weak relevance. With overlap, the
stitching blends tiles with weights that fall towards each tile's edge, so every pixel is
dominated by a tile in which it lies inside.

For each overlap, ``explain_slide`` (default composite, demo model) runs on the held-out slide of
``benchmarks/wsi_composites.py``, and the former default composite once at the first overlap (the
former defaults); in one process, rounds interleaved, every configuration once per round.
Measured:

- ``seam ratio`` (:func:`lrp_captum.wsi.stitch.seam_ratio`): mean |R| on the map pixels that
  hold a tile edge of the run's own grid, over mean |R| on all tissue pixels, both on tissue at
  least 2 map px from glass, at output downsample 2 (model pixels 2 x 2) and at the default
  output downsample. 1 = no seam.
- ``image control``: the same ratio for the slide's optical density (its tissue texture), which
  shows that the sample texture itself has no lines on the grid.
- ``tiles``, ``CPU s``, ``wall s``: tiles explained, and the end-to-end CPU time of the process
  (tiles are read in it, ``num_workers=0``) and wall time, medians over rounds; the CPU time
  relative to the first overlap. CPU time is what a loaded machine distorts least.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _interior_tissue(tissue: np.ndarray, margin: int = 2) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_erosion(tissue, np.ones((2 * margin + 1,) * 2, bool), border_value=0)


def _optical_density(slide_path: Path, shape, d: int) -> np.ndarray:
    """(H, W) mean optical density of the slide at the map's resolution."""
    import openslide
    from PIL import Image

    from lrp_captum.wsi.tissue import thumbnail_rgb

    rgb = thumbnail_rgb(openslide.OpenSlide(str(slide_path)), d)
    if rgb.shape[:2] != tuple(shape):
        rgb = np.asarray(Image.fromarray(rgb).resize(shape[::-1], Image.BILINEAR))
    return -np.log10(np.clip(rgb.astype(np.float64) / 255, 1 / 255, 1)).mean(-1)


def main(argv=None) -> int:
    import pandas as pd
    import zarr

    from lrp_captum.wsi.tile_relevance import DEFAULT_COMPOSITE
    from lrp_captum.wsi.pipeline import explain_slide
    from lrp_captum.demos.sample_slide import write_sample_slide
    from lrp_captum.wsi.stitch import footprints, seam_ratio
    from lrp_captum.demos.slide_model import demo_model_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=3072)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--overlaps", type=float, nargs="+", default=[0.0, 0.125, 0.25])
    p.add_argument("--former-composite", default="epsilon_plus_flat",
                   help="also run this composite at the first overlap (the former defaults; '' to skip)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=ROOT / ".cache" / "wsi_bench")
    args = p.parse_args(argv)

    args.work.mkdir(parents=True, exist_ok=True)
    slide = args.work / f"heldout_{args.size}_seed{args.seed}.svs"
    if not slide.exists():
        write_sample_slide(slide, args.size, kind="svs", seed=args.seed)
    model = demo_model_config(quiet=True)
    configs = ([(args.former_composite, args.overlaps[0])] if args.former_composite else []) + \
        [(DEFAULT_COMPOSITE, o) for o in args.overlaps]
    tmp = Path(tempfile.mkdtemp(prefix="wsi_seams_"))
    walls, cpus = {c: [] for c in configs}, {c: [] for c in configs}
    seams, control, n_tiles, default_d = {}, {}, {}, None
    try:
        for r in range(args.rounds):
            for k, (comp, o) in enumerate(configs if r % 2 == 0 else configs[::-1]):
                out = tmp / f"c{k}_r{r}"
                options = dict(composite=comp, overlap=o, batch_size=32, num_workers=0, threads=args.threads,
                               quiet=True)  # reads in this process, so that its CPU time is the whole run's
                t0, c0 = time.perf_counter(), time.process_time()
                m = explain_slide(slide, model, out, **options)
                walls[comp, o].append(time.perf_counter() - t0)
                cpus[comp, o].append(time.process_time() - c0)
                n_tiles[comp, o], default_d = m["n_tiles"], m["output_downsample"]
                if r == 0:
                    for d in (2, default_d):
                        run = out if d == default_d else tmp / f"c{k}_d{d}"
                        if d != default_d:
                            explain_slide(slide, model, run, output_downsample=d, **options)
                        g = zarr.open_group(str(run / "relevance.zarr"), mode="r")
                        rel, inside = g["relevance"][:], _interior_tissue(g["tissue"][:].astype(bool))
                        boxes = footprints(pd.read_csv(run / "tiles.csv").to_records(), d)
                        seams[comp, o, d] = seam_ratio(rel, boxes, inside)
                        control[comp, o, d] = seam_ratio(_optical_density(slide, rel.shape, d), boxes, inside)
                shutil.rmtree(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    base = float(np.median(cpus[configs[0]]))
    print(f"held-out slide {slide.name}, demo model, {args.threads} thread(s), median of {args.rounds} "
          f"interleaved rounds\n")
    print(f"| composite | overlap | tiles | CPU s | CPU time vs first row | wall s | seam ratio, d=2 | "
          f"seam ratio, d={default_d} | image control, d=2 / d={default_d} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for comp, o in configs:
        cpu, wall = float(np.median(cpus[comp, o])), float(np.median(walls[comp, o]))
        print(f"| {comp} | {o:g} | {n_tiles[comp, o]} | {cpu:.1f} | {cpu / base:.2f}x | {wall:.1f} | "
              f"{seams[comp, o, 2]:.2f} | {seams[comp, o, default_d]:.2f} | "
              f"{control[comp, o, 2]:.2f} / {control[comp, o, default_d]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
