"""Stitching per-tile maps into a slide-aligned map with overlap blending, streamed in bands.

A tile whose level-0 box is ``(x0, y0, w0, h0)`` lands on output pixels
``[round(x0 / d), round((x0 + w0) / d))`` (likewise for y) of a map at output downsample ``d``
(level-0 px per output px). Neighbouring tiles without overlap therefore share edges exactly.
Where tiles overlap, each contributes ``weight * value`` and the map is divided by the summed
weight, so the weights sum to one at every covered pixel and a constant field stays constant.
The weights (:func:`blend_weights`) hand each pixel to the tile in which it lies deepest, which
removes the seams a zero-padded CNN leaves at tile edges.

The slide run's step that stitches its tiles into ``relevance.zarr`` is
:func:`lrp_captum.wsi.relevance_map.stitch_relevance`.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

BAND = 512  # rows of the map in memory at a time, and the zarr chunk side


def footprints(tiles: np.ndarray, output_downsample: float) -> np.ndarray:
    """(N, 4) int64 output-pixel boxes ``ox0, oy0, ox1, oy1`` of ``tiles`` (fields x0, y0, w0, h0).

    Boxes are at least one output pixel wide.
    """
    d = float(output_downsample)
    ox0 = np.round(tiles["x0"] / d).astype(np.int64)
    oy0 = np.round(tiles["y0"] / d).astype(np.int64)
    ox1 = np.maximum(np.round((tiles["x0"] + tiles["w0"]) / d).astype(np.int64), ox0 + 1)
    oy1 = np.maximum(np.round((tiles["y0"] + tiles["h0"]) / d).astype(np.int64), oy0 + 1)
    return np.stack([ox0, oy0, ox1, oy1], axis=1)


def resample(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Area-resample (N, C, H, W) maps to (N, C, height, width); means are preserved."""
    if maps.shape[-2:] == (height, width):
        return maps
    return F.interpolate(maps, size=(height, width), mode="area")


def blend_weights(height: int, width: int, overlap: float) -> np.ndarray:
    """(height, width) float32 window: 1 inside, falling towards the edges over the overlap.

    Along each axis of ``n`` pixels with an overlap of ``o = overlap * n`` pixels, the weight is
    ``(dist - o/4) / (o/2)`` clipped to ``[1e-3, 1]``, where ``dist`` is the distance to the
    nearer edge: the outer quarter of the overlap is (almost) ignored, the middle half cross-fades
    linearly into the neighbour, which there lies as deep inside its own tile. A zero-padded CNN
    gives its input's outermost pixels less relevance (at overlap 0 the outer pixel gets about a
    third of the interior's; see docs/wsi.md), so a pixel should come from the tile in which it
    lies deepest. Weights never reach 0, so a pixel that no neighbour covers keeps its tile's
    value; ``overlap=0`` gives all ones.
    """
    def ramp(n):
        if overlap <= 0:
            return np.ones(n, np.float32)
        o = overlap * n
        dist = np.minimum(np.arange(n) + 0.5, n - 0.5 - np.arange(n))
        return np.clip((dist - o / 4) / max(o / 2, 1e-6), 1e-3, 1.0).astype(np.float32)
    return np.outer(ramp(height), ramp(width))


def stitch_bands(boxes: np.ndarray, fetch, out_shape: tuple[int, int], channels: int, overlap: float,
                 band_height: int = 512):
    """Yield ``(y_start, band)`` with ``band`` (channels, rows, W) float32 of the stitched map.

    Parameters
    ----------
    boxes : (N, 4) output boxes from :func:`footprints`, sorted by ``oy0``.
    fetch : ``fetch(i) -> (channels, oh, ow)`` values of tile ``i`` at its footprint size.
    out_shape : (H, W) of the output map in output pixels.
    overlap : tile overlap fraction, for :func:`blend_weights`.

    Only one band and the tiles touching it are in memory at a time. Uncovered pixels are NaN.
    """
    H, W = out_shape
    oy0 = boxes[:, 1]
    max_h = int((boxes[:, 3] - boxes[:, 1]).max()) if len(boxes) else 0
    for by0 in range(0, H, band_height):
        by1 = min(H, by0 + band_height)
        num = np.zeros((channels, by1 - by0, W), np.float64)
        den = np.zeros((by1 - by0, W), np.float64)
        lo = np.searchsorted(oy0, by0 - max_h, side="left")
        hi = np.searchsorted(oy0, by1, side="left")
        for i in range(lo, hi):
            x0, y0, x1, y1 = (int(v) for v in boxes[i])
            if y1 <= by0 or x1 <= 0 or x0 >= W:
                continue
            vals = fetch(i)
            wts = blend_weights(y1 - y0, x1 - x0, overlap)
            # clip the tile box to the band and the map
            sy0, sy1 = max(y0, by0), min(y1, by1)
            sx0, sx1 = max(x0, 0), min(x1, W)
            ty, tx = slice(sy0 - y0, sy1 - y0), slice(sx0 - x0, sx1 - x0)
            w = wts[ty, tx]
            num[:, sy0 - by0:sy1 - by0, sx0:sx1] += vals[:, ty, tx] * w
            den[sy0 - by0:sy1 - by0, sx0:sx1] += w
        with np.errstate(invalid="ignore", divide="ignore"):
            band = (num / den).astype(np.float32)
        yield by0, band


def seam_ratio(values: np.ndarray, boxes: np.ndarray, valid: np.ndarray) -> float:
    """How strongly the tile grid shows in a stitched map: 1 means not at all.

    Mean ``|values|`` on the map pixels that hold a tile edge (the first or last row or column
    of a footprint in ``boxes``, from :func:`footprints`) over mean ``|values|`` on all pixels,
    both restricted to ``valid`` (H, W) bool (e.g. tissue away from glass).
    """
    H, W = values.shape
    edge = np.zeros((H, W), bool)
    for x0, y0, x1, y1 in np.asarray(boxes, np.int64):
        xs, ys = slice(max(0, x0), min(W, x1)), slice(max(0, y0), min(H, y1))
        for x in (x0, x1 - 1):
            if 0 <= x < W:
                edge[ys, x] = True
        for y in (y0, y1 - 1):
            if 0 <= y < H:
                edge[y, xs] = True
    a = np.abs(np.asarray(values, np.float64))
    return float(a[valid & edge].mean() / a[valid].mean())
