"""The tile view: one analysed tile's pixels, its stored relevance, and the relevance drawn over it.

Boxes are in level-0 pixels, as stored in ``tiles.csv``; the relevance map of a result is at
``downsample`` level-0 pixels per map pixel (``manifest["output_downsample"]``).
"""
from __future__ import annotations

import numpy as np

from lrp_captum.viewer.colormaps import SLIDE_CMAP, relevance_to_rgba


def read_tile_rgb(slide, x0: int, y0: int, w0: int, h0: int, out_size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB pixels of a level-0 box, read from the best pyramid level for ``out_size``.

    Parameters
    ----------
    slide : openslide.OpenSlide
    x0, y0, w0, h0 : int
        Box in level-0 pixels.
    out_size : (width, height), optional
        Output size; defaults to the level-0 size ``(w0, h0)`` (full resolution).

    Returns
    -------
    ndarray, shape (height, width, 3), uint8
        Transparent slide areas are composited on white.
    """
    from PIL import Image

    out_w, out_h = out_size or (int(w0), int(h0))
    level = slide.get_best_level_for_downsample(max(w0 / out_w, h0 / out_h))
    d = slide.level_downsamples[level]
    size = (max(1, int(round(w0 / d))), max(1, int(round(h0 / d))))
    region = slide.read_region((int(x0), int(y0)), level, size)
    white = Image.new("RGBA", region.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, region).convert("RGB")
    if rgb.size != (out_w, out_h):
        rgb = rgb.resize((out_w, out_h), Image.BILINEAR if rgb.size[0] < out_w else Image.BOX)
    return np.asarray(rgb)


def stored_tile_relevance(relevance, downsample: float, x0: int, y0: int, w0: int, h0: int) -> np.ndarray:
    """The part of a result's relevance map that covers a level-0 box.

    Parameters
    ----------
    relevance : array-like, shape (H_d, W_d)
        The result's map; pixel ``(i, j)`` covers level-0 ``[j*d, (j+1)*d) x [i*d, (i+1)*d)``.
    downsample : float
        ``d``, level-0 pixels per map pixel.
    x0, y0, w0, h0 : int
        Box in level-0 pixels.

    Returns
    -------
    ndarray, shape (ceil((y0+h0)/d) - floor(y0/d), ceil((x0+w0)/d) - floor(x0/d)), float32
        Every map pixel the box touches (clipped at the map's edge).
    """
    d = float(downsample)
    r0, c0 = int(y0 // d), int(x0 // d)
    r1, c1 = int(np.ceil((y0 + h0) / d)), int(np.ceil((x0 + w0) / d))
    return np.asarray(relevance[r0:r1, c0:c1], dtype=np.float32)


def blend_relevance(rgb: np.ndarray, heat: np.ndarray, vmax: float,
                    cmap: str = SLIDE_CMAP) -> np.ndarray:
    """A tile with its relevance drawn over it, at the tile's size.

    Parameters
    ----------
    rgb : ndarray, shape (H, W, 3), uint8
        The tile.
    heat : ndarray, shape (h, w)
        Its relevance at any resolution; stretched to ``(H, W)`` with nearest-neighbour sampling
        so map pixels stay visible as squares.
    vmax : float
        |relevance| drawn with full colour and full opacity.
    cmap : str
        Diverging colour map (:data:`lrp_captum.viewer.colormaps.DIVERGING_CMAPS`).

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
        Alpha of the relevance colour is ``min(|r| / vmax, 1)``: where relevance is 0 the tile
        shows unchanged.
    """
    from PIL import Image

    rgba = relevance_to_rgba(heat, vmax, cmap=cmap)
    over = Image.fromarray(rgba, "RGBA").resize((rgb.shape[1], rgb.shape[0]), Image.NEAREST)
    return np.asarray(Image.alpha_composite(Image.fromarray(rgb).convert("RGBA"), over).convert("RGB"))
