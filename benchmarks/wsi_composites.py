"""Which LRP composite should slides use by default? Placement on tissue and faithfulness, measured.

Usage::

    python benchmarks/wsi_composites.py                 # held-out 3,072² sample slide (seed 7)
    python benchmarks/wsi_composites.py --size 4096 --seed 11 --faithfulness-tiles 96

On a held-out sample slide (a seed no test uses; the tissue layout, and so the truth of where
tissue and glass are, is known exactly) every registered composite explains every tissue tile
with the demo model at its resolution. Measured per composite:

- ``|R| on tissue``: share of the absolute relevance of all tiles that falls on tissue pixels
  (the rest paints glass); ``edge tiles``: the mean of that share per tile over tiles with less
  than 95 % tissue, where the glass is (± standard error); ``glass/tissue``: mean |R| per glass
  pixel over mean |R| per tissue pixel in those edge tiles (0 = glass stays blank).
- ``R+ on DAB``: for the target "positive", share of the positive relevance inside the DAB mask
  (the evidence the demo model was trained on; relevance mass accuracy, Arras et al. 2022),
  next to the mask's share of the tissue area.
- ``border ratio``: in tiles that are all tissue, mean |R| of the outermost pixel ring over the
  mean |R| of the pixels 8 or more px inside (1 = no seams at overlap 0).
- Faithfulness (:func:`lrp_captum.evaluation.ranking.rank_explainers` on ``--faithfulness-tiles`` tiles):
  AOPC of the MoRF curve (higher is better), ABPC, selectivity over random orders, median
  relative conservation error; patches of 16 px, replaced by the tile's channel mean, 16 steps.
- ``ms/tile``: attribution time per tile, median of 5 interleaved rounds over one batch of 32
  tiles (every round runs every composite once, in rotating order; one thread unless
  ``--threads``). On a shared machine compare the columns, not the absolute values.

The table is printed as markdown; docs/wsi.md quotes it.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _tiles_with_truth(slide_path: Path, seed: int, size: int, bundle):
    """Tiles (N, 128, 128, 3) uint8 of the slide's tissue grid, tissue truth and DAB masks (N, 128, 128)."""
    import openslide

    from lrp_captum.wsi.grid import make_grid, tissue_tiles
    from lrp_captum.wsi.reader import read_tile, slide_mpp
    from lrp_captum.demos.sample_slide import SlideLayout, dab_mask
    from lrp_captum.wsi.tissue import detect_tissue
    from lrp_captum.demos.slide_model import DAB_THRESHOLD

    s = openslide.OpenSlide(str(slide_path))
    mpp0 = slide_mpp(s, slide_path)
    grid = make_grid(*s.dimensions, mpp0, s.level_downsamples, target_mpp=bundle.mpp, tile_size=bundle.tile_size)
    tiles = tissue_tiles(grid, detect_tissue(s, slide_mpp=mpp0))
    layout = SlideLayout.random(size, size, seed=seed)
    u = (np.arange(grid.tile_size) + 0.5) * grid.scale
    pixels = np.stack([read_tile(s, grid, t["x0"], t["y0"]) for t in tiles])
    truth = np.stack([layout.tissue(t["x0"] + u[None, :], t["y0"] + u[:, None]) for t in tiles])
    dab = np.stack([dab_mask(p, DAB_THRESHOLD) for p in pixels]) & truth
    return pixels, truth, dab


def _explain_all(explainer, pixels: np.ndarray, target, batch: int = 32) -> np.ndarray:
    """(N, 128, 128) relevance of all tiles, summed over colour channels."""
    return np.concatenate([explainer.explain(torch.from_numpy(pixels[i:i + batch]), target)[0]
                           for i in range(0, len(pixels), batch)])


def _placement(rel: np.ndarray, truth: np.ndarray) -> dict:
    a = np.abs(rel.astype(np.float64))
    edge = truth.mean((1, 2)) < 0.95
    glass_per_px = (a[edge] * ~truth[edge]).sum() / max(1, (~truth[edge]).sum())
    tissue_per_px = (a[edge] * truth[edge]).sum() / max(1, truth[edge].sum())
    per_tile = (a[edge] * truth[edge]).sum((1, 2)) / a[edge].sum((1, 2))
    return {"on_tissue": (a * truth).sum() / a.sum(),
            "on_tissue_edge": per_tile.mean(), "on_tissue_edge_sem": per_tile.std() / np.sqrt(len(per_tile)),
            "glass_over_tissue": glass_per_px / tissue_per_px}


def _border_ratio(rel: np.ndarray, truth: np.ndarray) -> float:
    full = truth.all((1, 2))
    a = np.abs(rel[full].astype(np.float64))
    n = a.shape[-1]
    ring = np.ones((n, n), bool)
    ring[1:-1, 1:-1] = False
    inner = np.zeros((n, n), bool)
    inner[8:-8, 8:-8] = True
    return float(a[:, ring].mean() / a[:, inner].mean())


def _dab_mass(rel: np.ndarray, dab: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    pos = np.clip(rel.astype(np.float64), 0, None)
    has = dab.any((1, 2))
    return float((pos[has] * dab[has]).sum() / pos[has].sum()), float(dab[has].sum() / truth[has].sum())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=3072, help="side of the held-out slide in level-0 px")
    p.add_argument("--seed", type=int, default=7, help="layout seed of the held-out slide (no test uses 7)")
    p.add_argument("--faithfulness-tiles", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=ROOT / ".cache" / "wsi_bench")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from lrp_captum import list_composites
    from lrp_captum.evaluation import ranking as S
    from lrp_captum.wsi.tile_relevance import DEFAULT_COMPOSITE, TileExplainer
    from lrp_captum.wsi.model import load_model
    from lrp_captum.demos.sample_slide import write_sample_slide
    from lrp_captum.demos.slide_model import demo_model_config

    args.work.mkdir(parents=True, exist_ok=True)
    slide = args.work / f"heldout_{args.size}_seed{args.seed}.svs"
    if not slide.exists():
        write_sample_slide(slide, args.size, kind="svs", seed=args.seed)
    bundle = load_model(demo_model_config(quiet=True), device="cpu")
    pixels, truth, dab = _tiles_with_truth(slide, args.seed, args.size, bundle)
    edge = truth.mean((1, 2)) < 0.95
    print(f"held-out slide {slide.name}: {len(pixels)} tissue tiles ({edge.sum()} edge tiles with glass, "
          f"{truth.all((1, 2)).sum()} all tissue), demo model, {args.threads} thread(s); "
          f"default now: {DEFAULT_COMPOSITE}\n")

    names = list(list_composites())
    rows = {}
    for name in names:
        ex = TileExplainer(bundle, name)
        rel = _explain_all(ex, pixels, "predicted")
        rel_pos = _explain_all(ex, pixels, "positive")
        dab_share, dab_area = _dab_mass(rel_pos, dab, truth)
        rows[name] = dict(_placement(rel, truth), border=_border_ratio(rel, truth), dab=dab_share,
                          dab_area=dab_area)
    for name, ms in _interleaved_ms(bundle, names, pixels[:32]).items():
        rows[name]["ms"] = ms

    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(pixels), min(args.faithfulness_tiles, len(pixels)), replace=False))
    x = bundle.normalise(torch.from_numpy(pixels[pick]))
    low, high = (torch.as_tensor(v, dtype=torch.float32) for v in _bounds(bundle))
    result = S.rank_explainers(bundle.model, x, S.lrp_explainers(names, low=low, high=high), patch_size=16,
                               baseline="mean", n_steps=16, randomisation_layers=0)
    faith = {r["name"]: r for r in result.rows}

    print("| composite | \\|R\\| on tissue | edge tiles | glass/tissue per px | R+ on DAB (area) | border ratio "
          "| AOPC MoRF ↑ | ABPC ↑ | selectivity ↑ | conservation error ↓ | ms/tile |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in sorted(names, key=lambda n: -rows[n]["on_tissue"]):
        r, f = rows[name], faith[name]
        print(f"| {name} | {100 * r['on_tissue']:.1f} % | {100 * r['on_tissue_edge']:.1f} ± "
              f"{100 * r['on_tissue_edge_sem']:.1f} % | "
              f"{r['glass_over_tissue']:.3f} | {100 * r['dab']:.1f} % ({100 * r['dab_area']:.1f} %) | "
              f"{r['border']:.2f} | {f['aopc_morf']:.3f} ± {f['aopc_morf_sem']:.3f} | {f['abpc']:.3f} | "
              f"{f['selectivity']:.3f} | "
              f"{f['conservation_error']:.3g} | {r['ms']:.2f} |")
    f = faith["random"]
    print(f"| random (reference) | | | | | | {f['aopc_morf']:.3f} ± {f['aopc_morf_sem']:.3f} | {f['abpc']:.3f} | "
          f"{f['selectivity']:.3f} | | |")
    return 0


def _interleaved_ms(bundle, names, pixels: np.ndarray, rounds: int = 5) -> dict:
    """Median ms per tile of each composite on one batch, over interleaved rounds."""
    from lrp_captum.wsi.tile_relevance import TileExplainer

    explainers = {n: TileExplainer(bundle, n) for n in names}
    x = torch.from_numpy(pixels)
    for ex in explainers.values():
        ex.explain(x, "predicted")  # warm-up: canonization, planning
    times = {n: [] for n in names}
    for k in range(rounds):
        for n in names[k % len(names):] + names[:k % len(names)]:
            t0 = time.perf_counter()
            explainers[n].explain(x, "predicted")
            times[n].append(time.perf_counter() - t0)
    return {n: 1e3 * float(np.median(t)) / len(pixels) for n, t in times.items()}


def _bounds(bundle):
    from lrp_captum import zbox_bounds

    return zbox_bounds(mean=bundle.mean, std=bundle.std, pixel_range=(0.0, 1.0))


if __name__ == "__main__":
    sys.exit(main())
