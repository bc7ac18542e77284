"""A slide region shrunk to a given size with memory bounded whatever the slide.

Reading a region at a pyramid level and resizing it holds the whole region in memory, four times
over (RGBA, the white background, the composite, RGB). On a slide without a pyramid the level
for a thumbnail or a zoomed-out view is level 0, so that is gigabytes (16 bytes per level-0 pixel
of the slide). Here a region larger than :data:`READ_BUDGET_PX` is read block by block
(:data:`BLOCK` level pixels square) and each block is integrated into the output pixels it covers:
the result is the exact area average of the level's pixels (glass white where the slide is
transparent), in bounded memory: one block, one band of output rows, and the output.
"""
from __future__ import annotations

import math

import numpy as np

#: a region of at most this many level pixels is read at once and resized (a 2048 x 2048 region:
#: 16 MiB as RGBA)
READ_BUDGET_PX = 2048 * 2048
#: side of the blocks a larger region is read in, in level pixels (1 MiB each as RGBA)
BLOCK = 512


def _rgb_on_white(img) -> np.ndarray:
    """RGB uint8 ``(h, w, 3)`` of an RGBA PIL image from ``read_region`` composited onto white
    (transparent pixels, outside the slide's scanned area, are glass)."""
    a = np.asarray(img)
    if a[..., 3].min() == 255:  # inside the scanned area: nothing to composite
        return a[..., :3]
    from PIL import Image

    return np.asarray(Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img).convert("RGB"))


def _integrate(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, axis: int) -> np.ndarray:
    """Integral of piecewise-constant ``values`` along ``axis`` from ``lo[j]`` to ``hi[j]`` (positions
    in pixels of that axis, ascending, ``0 <= lo <= hi <= n``); the result has ``len(lo)`` entries
    on ``axis`` (float32: exact for the sums of a block, at most ``BLOCK * 255`` per cell).

    ``S(t) = sum(v[:floor(t)]) + frac(t) * v[floor(t)]``; the prefix sums are needed only at the
    ends, so they come from one ``np.add.reduceat`` pass over the pixels between them.
    """
    v = np.moveaxis(values, axis, 0)
    n = v.shape[0]
    k_lo = np.clip(np.floor(lo).astype(np.int64), 0, n - 1)
    k_hi = np.clip(np.floor(hi).astype(np.int64), 0, n - 1)
    points = np.unique(np.concatenate([[0], k_lo, k_hi]))  # ascending, in [0, n)
    segments = np.add.reduceat(v, points, axis=0, dtype=np.float32)  # v[points[i]:points[i+1]]
    prefix = np.concatenate([np.zeros((1,) + v.shape[1:], np.float32), np.cumsum(segments, axis=0)[:-1]])

    def at(t, k):
        frac = (t - k).astype(np.float32).reshape((-1,) + (1,) * (v.ndim - 1))
        return prefix[np.searchsorted(points, k)] + frac * v[k].astype(np.float32)

    return np.moveaxis(at(hi, k_hi) - at(lo, k_lo), 0, axis)


def _covering(start: float, step: float, count: int, a: int, b: int) -> tuple[int, int]:
    """Output pixels ``[j0, j1)`` (pixel ``j`` spans ``start + j*step .. start + (j+1)*step``) that
    overlap the level pixels ``[a, b)``."""
    j0 = max(0, int(math.floor((a - start) / step)))
    j1 = min(count, int(math.ceil((b - start) / step)))
    return j0, max(j0, j1)


def read_downsampled(slide, box0: tuple[float, float, float, float], size: tuple[int, int], *,
                     level: int | None = None, budget_px: int = READ_BUDGET_PX, block: int = BLOCK) -> np.ndarray:
    """RGB uint8 ``(height, width, 3)`` of a slide region resized to ``size``, glass white.

    Parameters
    ----------
    slide : ``openslide.OpenSlide`` (or anything with ``read_region``, ``level_downsamples`` and
        ``get_best_level_for_downsample``).
    box0 : ``(x0, y0, w0, h0)`` of the region in level-0 pixels.
    size : ``(width, height)`` of the result in pixels.
    level : the pyramid level to read (default: the best one for the downsample).
    budget_px : a region of at most this many level pixels is read at once and resized
        (bilinear); a larger one block by block and area-averaged (:func:`_integrate`), holding
        one block and the output rows it touches.
    block : side of those blocks in level pixels.
    """
    from PIL import Image

    x0, y0, w0, h0 = map(float, box0)
    width, height = (max(1, int(s)) for s in size)
    if level is None:
        level = slide.get_best_level_for_downsample(max(w0 / width, h0 / height))
    d = float(slide.level_downsamples[level])
    lx, ly, lw, lh = x0 / d, y0 / d, w0 / d, h0 / d  # the region in level pixels
    xa, ya = int(math.floor(lx)), int(math.floor(ly))
    xb, yb = max(xa + 1, int(math.ceil(lx + lw))), max(ya + 1, int(math.ceil(ly + lh)))
    if (xb - xa) * (yb - ya) <= budget_px:
        img = slide.read_region((int(round(xa * d)), int(round(ya * d))), level, (xb - xa, yb - ya))
        rgb = Image.alpha_composite(Image.new("RGBA", img.size, (255, 255, 255, 255)), img).convert("RGB")
        box = (lx - xa, ly - ya, lx - xa + lw, ly - ya + lh)
        return np.asarray(rgb.resize((width, height), Image.BILINEAR, box=box))
    fx, fy = lw / width, lh / height  # level pixels per output pixel
    out = np.empty((height, width, 3), np.uint8)
    # blocks on a grid of `block` level pixels (the slide's own tiles are 256 or 512 px: each is
    # decoded once); output rows are summed while their level rows are read, then written out
    first, acc = 0, np.zeros((0, width, 3), np.float32)  # acc: output rows first, first + 1, ...
    for by in range(ya - ya % block, yb, block):
        y0b, y1b = max(by, ya), min(by + block, yb)
        j0, j1 = _covering(ly, fy, height, y0b, y1b)
        if j1 > first + len(acc):
            acc = np.concatenate([acc, np.zeros((j1 - first - len(acc), width, 3), np.float32)])
        edges = np.arange(j0, j1 + 1) * fy + ly - y0b  # output row edges, in block pixels
        for bx in range(xa - xa % block, xb, block):
            x0b, x1b = max(bx, xa), min(bx + block, xb)
            i0, i1 = _covering(lx, fx, width, x0b, x1b)
            if i1 <= i0 or j1 <= j0:
                continue
            pixels = _rgb_on_white(slide.read_region((int(round(x0b * d)), int(round(y0b * d))), level,
                                                     (x1b - x0b, y1b - y0b)))
            cols = np.arange(i0, i1 + 1) * fx + lx - x0b  # output column edges, in block pixels
            part = _integrate(pixels, np.clip(cols[:-1], 0, x1b - x0b), np.clip(cols[1:], 0, x1b - x0b), axis=1)
            acc[j0 - first:j1 - first, i0:i1] += _integrate(part, np.clip(edges[:-1], 0, y1b - y0b),
                                                            np.clip(edges[1:], 0, y1b - y0b), axis=0)
        done = height if y1b >= yb else min(first + len(acc), max(first, int(math.floor((y1b - ly) / fy))))
        out[first:done] = np.clip(np.round(acc[:done - first] / (fx * fy)), 0, 255).astype(np.uint8)
        first, acc = done, acc[done - first:]
    return out
