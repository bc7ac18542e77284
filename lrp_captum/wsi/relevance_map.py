"""The slide run's relevance map: the committed tile maps stitched into ``relevance.zarr``, with
the colour scale and the reduced map of the overview (a step of :mod:`lrp_captum.wsi.pipeline`)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrp_captum.wsi.outputs import atomic_path
from lrp_captum.wsi.run_plan import SlidePlan
from lrp_captum.wsi.stitch import BAND, footprints, stitch_bands
from lrp_captum.wsi.work import TileResults


@dataclass(frozen=True)
class RelevanceMap:
    """What :func:`stitch_relevance` made.

    Attributes
    ----------
    path : the ``relevance.zarr`` written.
    vmax : colour scale of the maps: 99.5th percentile of |relevance| on covered tissue pixels.
    heat, heat_downsample : the map block-averaged to at most about 1,024 px (for the overview),
        and output px per heat px.
    relevance_on_glass : share of the stitched |R| that fell on glass (None without ``mask_glass``).
    seconds : how long stitching took.
    """

    path: Path
    vmax: float
    heat: np.ndarray
    heat_downsample: int
    relevance_on_glass: float | None
    seconds: float


def stitch_relevance(plan: SlidePlan, tiles: TileResults, stage: Path) -> RelevanceMap:
    """Stitch the committed tile maps into ``stage/relevance.zarr``, band by band.

    With ``mask_glass``, pixels the tissue mask calls glass get relevance 0 and probability NaN
    (no colour on glass). ``relevance.zarr/tissue`` (H, W) uint8 is the tissue mask at the map's
    resolution.
    """
    import zarr

    t0 = time.perf_counter()
    stage.mkdir(parents=True, exist_ok=True)
    store = tiles.store
    mask_glass = plan.options.mask_glass
    H, W = plan.map_shape
    C = len(plan.bundle.classes)
    d = plan.output_downsample
    f = int(2 ** max(0, math.ceil(math.log2(max(H, W) / 1024)))) if max(H, W) > 1024 else 1
    f = min(f, BAND)
    heat = np.zeros((-(-H // f), -(-W // f)), np.float32)
    stride = max(1, math.ceil(H * W / 1e6))
    samples = []
    abs_total = abs_glass = 0.0
    x_centres = (np.arange(W) + 0.5) * d  # level-0 px

    def fetch(i):
        m = store.tile_map(i)
        p = store.probabilities(i)
        return np.concatenate([m[None], np.broadcast_to(p[:, None, None], (C,) + m.shape)], 0)

    with atomic_path(stage / "relevance.zarr") as ztmp:
        group = zarr.open_group(str(ztmp), mode="w")
        zrel = group.create_array("relevance", shape=(H, W), chunks=(BAND, BAND), dtype="float32", fill_value=0.0)
        zprob = group.create_array("probability", shape=(C, H, W), chunks=(1, BAND, BAND), dtype="float32",
                                   fill_value=float("nan"))
        ztis = group.create_array("tissue", shape=(H, W), chunks=(BAND, BAND), dtype="uint8", fill_value=0)
        for y, band in stitch_bands(footprints(plan.tiles, d), fetch, (H, W), 1 + C, plan.grid.overlap, BAND):
            hb = band.shape[1]
            tissue = plan.tissue.at(x_centres[None, :], ((np.arange(y, y + hb) + 0.5) * d)[:, None])
            rel = np.nan_to_num(band[0], nan=0.0)
            covered = ~np.isnan(band[0])
            if mask_glass:
                a = np.abs(rel[covered].astype(np.float64))
                abs_total += a.sum()
                abs_glass += a[~tissue[covered]].sum()
                rel[~tissue] = 0.0
                band[1:, ~tissue] = np.nan
                covered &= tissue
            zrel[y:y + hb, :] = rel
            zprob[:, y:y + hb, :] = band[1:]
            ztis[y:y + hb, :] = tissue
            samples.append(np.abs(rel[covered]).ravel()[::stride])
            pad = np.zeros((-(-hb // f) * f, heat.shape[1] * f), np.float32)
            pad[:hb, :W] = rel
            heat[y // f:y // f + pad.shape[0] // f] = pad.reshape(pad.shape[0] // f, f, -1, f).mean((1, 3))
        allv = np.concatenate(samples) if samples else np.zeros(0, np.float32)
        vmax = float(np.quantile(allv, 0.995)) if allv.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
        background = ("relevance 0 / probability NaN where no tissue tile"
                      + (" or where the tissue mask says glass" if mask_glass else ""))
        attrs = dict(output_downsample=d, level0_shape=list(plan.slide.dimensions)[::-1],
                     mpp=plan.slide_mpp * d, slide_mpp=plan.slide_mpp,
                     classes=plan.bundle.classes, vmax=vmax,
                     relevance_unit="mean input relevance per model-input pixel (summed over RGB)",
                     background=background)
        group.attrs.update(attrs)
    on_glass = abs_glass / abs_total if mask_glass and abs_total > 0 else None
    return RelevanceMap(stage / "relevance.zarr", vmax, heat, f, on_glass, time.perf_counter() - t0)
