"""Read one analysed tile of a slide, as stored in ``tiles.csv``, for display and re-explanation."""
from __future__ import annotations

import numpy as np


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
