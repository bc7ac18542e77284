"""Deep Zoom tiles for a slide and for overlays aligned to it.

The slide layer is OpenSlide's own :class:`openslide.deepzoom.DeepZoomGenerator` (with
``limit_bounds=False`` so the image is the full level-0 plane). Overlay layers (relevance,
probability, tissue outline, tile grid) use :class:`DeepZoomGrid`, the same Deep Zoom geometry,
so tile ``(level, col, row)`` of every layer covers the same level-0 rectangle and a viewer can
stack them without any registration step.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lrp_captum.viewer.colormaps import SLIDE_CMAP, probability_to_rgba, relevance_to_rgba

TILE_SIZE = 254
OVERLAP = 1


@dataclass(frozen=True)
class DeepZoomGrid:
    """Deep Zoom pyramid geometry of a ``width`` x ``height`` level-0 image.

    Level ``L`` (0 = 1x1 pixel, ``level_count - 1`` = full resolution) has a level-0 downsample
    of ``2 ** (level_count - 1 - L)``.
    """

    width: int
    height: int
    tile_size: int = TILE_SIZE
    overlap: int = OVERLAP

    @property
    def level_count(self) -> int:
        return int(math.ceil(math.log2(max(self.width, self.height)))) + 1

    def level_dimensions(self, level: int) -> tuple[int, int]:
        s = self.level_scale(level)
        return (max(1, -(-self.width // s)), max(1, -(-self.height // s)))

    def level_scale(self, level: int) -> int:
        """Level-0 pixels per pixel of Deep Zoom ``level``."""
        if not 0 <= level < self.level_count:
            raise ValueError(f"Deep Zoom level {level} out of range 0..{self.level_count - 1}")
        return 2 ** (self.level_count - 1 - level)

    def level_tiles(self, level: int) -> tuple[int, int]:
        w, h = self.level_dimensions(level)
        return (-(-w // self.tile_size), -(-h // self.tile_size))

    def tile_box(self, level: int, col: int, row: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """Top-left and size of tile ``(col, row)`` in pixels of Deep Zoom ``level`` (overlap included)."""
        cols, rows = self.level_tiles(level)
        if not (0 <= col < cols and 0 <= row < rows):
            raise ValueError(f"tile ({col}, {row}) out of range {cols}x{rows} at level {level}")
        w, h = self.level_dimensions(level)
        out = []
        for t, lim, n in ((col, w, cols), (row, h, rows)):
            tl = self.overlap * (t != 0)
            br = self.overlap * (t != n - 1)
            start = t * self.tile_size - tl
            size = min(self.tile_size, lim - t * self.tile_size) + tl + br
            out.append((start, size))
        return (out[0][0], out[1][0]), (out[0][1], out[1][1])

    def tile_box_level0(self, level: int, col: int, row: int) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` of the tile in level-0 pixels (may extend past the image edge)."""
        (x, y), (w, h) = self.tile_box(level, col, row)
        s = self.level_scale(level)
        return (x * s, y * s, (x + w) * s, (y + h) * s)

    def dzi_xml(self, fmt: str) -> str:
        return ('<?xml version="1.0" encoding="UTF-8"?>'
                '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
                f'Format="{fmt}" Overlap="{self.overlap}" TileSize="{self.tile_size}">'
                f'<Size Width="{self.width}" Height="{self.height}"/></Image>')


@dataclass(frozen=True)
class SlideOverview:
    """The whole slide at ``downsample`` level-0 px per pixel (RGB uint8 ``(h, w, 3)``): where the
    slide has no pyramid level that coarse, the zoomed-out Deep Zoom tiles are cut from it, so the
    slide is read once (block by block) instead of once per tile."""

    rgb: np.ndarray
    downsample: float

    @classmethod
    def of(cls, slide, longest_side: int = 2048) -> "SlideOverview":
        from lrp_captum.wsi.downsampled_region import read_downsampled

        w0, h0 = slide.dimensions
        d = max(1.0, max(w0, h0) / longest_side)
        size = (max(1, round(w0 / d)), max(1, round(h0 / d)))
        return cls(read_downsampled(slide, (0, 0, w0, h0), size), w0 / size[0])

    def region(self, box0: tuple[float, float, float, float], size: tuple[int, int]) -> Image.Image:
        """RGB image of the level-0 box ``(x0, y0, w0, h0)`` at ``size`` (area average)."""
        x0, y0, w0, h0 = (v / self.downsample for v in box0)
        return Image.fromarray(self.rgb).resize(size, Image.BOX, box=(x0, y0, x0 + w0, y0 + h0))


def slide_tile(slide, dz, grid: DeepZoomGrid, level: int, col: int, row: int,
               overview=None) -> Image.Image:
    """RGB image of the slide layer's Deep Zoom tile ``(level, col, row)``.

    OpenSlide's own tile (``dz.get_tile``) when the slide level it reads is small enough
    (:data:`~lrp_captum.wsi.downsampled_region.READ_BUDGET_PX`), as on any pyramidal slide;
    otherwise (a slide without a pyramid, zoomed out) the region is area-averaged block by block,
    or cut from ``overview()`` (a callable returning the slide's :class:`SlideOverview`) when the
    tile is at least as coarse as it, so memory stays bounded whatever the slide.
    """
    from lrp_captum.wsi.downsampled_region import READ_BUDGET_PX, read_downsampled

    scale = grid.level_scale(level)
    best = slide.get_best_level_for_downsample(scale)
    x0, y0, x1, y1 = grid.tile_box_level0(level, col, row)
    w, h = slide.dimensions
    box0 = (x0, y0, min(x1, w) - x0, min(y1, h) - y0)  # as OpenSlide's tile: clipped to the image
    size = grid.tile_box(level, col, row)[1]
    if box0[2] * box0[3] / slide.level_downsamples[best] ** 2 <= READ_BUDGET_PX:
        return dz.get_tile(level, (col, row))
    if overview is not None:
        view = overview()
        if scale >= view.downsample:
            return view.region(box0, size)
    return Image.fromarray(read_downsampled(slide, box0, size, level=best))


def sample_map(values, downsample: float, box_level0: tuple[float, float, float, float],
               size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resample a map onto an output raster covering a level-0 box.

    Parameters
    ----------
    values : array-like, shape (H_d, W_d)
        Map whose pixel ``(i, j)`` covers level-0 ``[j*d, (j+1)*d) x [i*d, (i+1)*d)``.
    downsample : float
        ``d``, map pixel size in level-0 pixels.
    box_level0 : (x0, y0, x1, y1)
        Output extent in level-0 pixels.
    size : (width, height)
        Output raster size in pixels.

    Returns
    -------
    values : ndarray, shape (height, width), float32
        Area-averaged when an output pixel spans several map pixels, nearest otherwise; 0 outside.
    valid : ndarray of bool, shape (height, width)
        True where the output pixel is mostly covered by finite map pixels.
    """
    w_out, h_out = size
    out = np.zeros((h_out, w_out), np.float32)
    valid = np.zeros((h_out, w_out), bool)
    H, W = values.shape
    x0, y0, x1, y1 = box_level0
    px = (x1 - x0) / w_out  # level-0 pixels per output pixel
    py = (y1 - y0) / h_out
    # clip the box to the map extent, then to whole output pixels
    cx0, cy0 = max(x0, 0.0), max(y0, 0.0)
    cx1, cy1 = min(x1, W * downsample), min(y1, H * downsample)
    ox0, oy0 = int(round((cx0 - x0) / px)), int(round((cy0 - y0) / py))
    ox1, oy1 = int(round((cx1 - x0) / px)), int(round((cy1 - y0) / py))
    if ox1 <= ox0 or oy1 <= oy0:
        return out, valid
    # map-space box for the covered output pixels
    mx0, my0 = (x0 + ox0 * px) / downsample, (y0 + oy0 * py) / downsample
    mx1, my1 = (x0 + ox1 * px) / downsample, (y0 + oy1 * py) / downsample
    ix0, iy0 = max(0, int(math.floor(mx0))), max(0, int(math.floor(my0)))
    ix1, iy1 = min(W, int(math.ceil(mx1))), min(H, int(math.ceil(my1)))
    crop = np.asarray(values[iy0:iy1, ix0:ix1], dtype=np.float32)
    finite = np.isfinite(crop)
    crop = np.where(finite, crop, 0.0).astype(np.float32)
    shrink = px / downsample > 1.0
    resample = Image.BOX if shrink else Image.NEAREST
    box = (mx0 - ix0, my0 - iy0, mx1 - ix0, my1 - iy0)
    target = (ox1 - ox0, oy1 - oy0)
    vals = np.asarray(Image.fromarray(crop, mode="F").resize(target, resample, box=box))
    cover = np.asarray(Image.fromarray(finite.astype(np.float32), mode="F").resize(target, resample, box=box))
    ok = cover >= 0.5
    # area averages counted NaN pixels as 0: renormalise by the finite fraction
    vals = np.where(ok, vals / np.maximum(cover, 1e-6), 0.0)
    out[oy0:oy1, ox0:ox1] = vals
    valid[oy0:oy1, ox0:ox1] = ok
    return out, valid


def encode_png(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _pixel_box(box, x0: float, y0: float, sx: float, sy: float, pad: int) -> list[float]:
    """``[left, top, right, bottom]`` (inclusive) of a level-0 ``(x, y, w, h)`` box on a raster whose
    origin is level-0 ``(x0, y0)``, ``sx``/``sy`` raster pixels per level-0 pixel, shifted by
    ``pad``; at least one pixel, however far zoomed out."""
    bx, by, bw, bh = box
    left, top = (bx - x0) * sx + pad, (by - y0) * sy + pad
    return [left, top, max(left, (bx + bw - x0) * sx + pad - 1), max(top, (by + bh - y0) * sy + pad - 1)]


class OverlayTiles:
    """Deep Zoom tiles of a result's maps, aligned with the slide's Deep Zoom pyramid.

    Parameters
    ----------
    grid : DeepZoomGrid
        Geometry of the slide (level-0 width/height, tile size, overlap).
    result : lrp_captum.viewer.results.SlideResult
        Opened result folder.
    """

    def __init__(self, grid: DeepZoomGrid, result):
        self.grid = grid
        self.result = result
        tiles = result.tiles
        self._boxes = tiles[["x0", "y0", "w0", "h0"]].to_numpy(dtype=np.float64)
        self._probability = result.probability

    def _raster_size(self, level: int, col: int, row: int) -> tuple[tuple[float, float, float, float], tuple[int, int]]:
        (_, _), (w, h) = self.grid.tile_box(level, col, row)
        return self.grid.tile_box_level0(level, col, row), (w, h)

    def relevance_rgba(self, level: int, col: int, row: int, mode: str = "both", cmap: str = SLIDE_CMAP,
                       vmax: float | None = None) -> np.ndarray:
        box, size = self._raster_size(level, col, row)
        vals, valid = sample_map(self.result.relevance, self.result.downsample, box, size)
        return relevance_to_rgba(vals, vmax or self.result.vmax, mode, cmap, valid)

    def probability_rgba(self, level: int, col: int, row: int, cmap: str = "viridis",
                         class_index: int = -1) -> np.ndarray:
        """Probability of class ``class_index`` (default: the last class, e.g. "positive")."""
        box, size = self._raster_size(level, col, row)
        if self._probability is None:
            return self._tile_probability_rgba(box, size, cmap, class_index)
        n = self._probability.shape[0]
        if not -n <= class_index < n:
            raise ValueError(f"class index {class_index} out of range for {n} probability maps")
        vals, valid = sample_map(self._probability[class_index], self.result.downsample, box, size)
        return probability_to_rgba(vals, cmap, valid=valid)

    def _tiles_in(self, box) -> np.ndarray:
        x0, y0, x1, y1 = box
        b = self._boxes
        hit = (b[:, 0] < x1) & (b[:, 0] + b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 1] + b[:, 3] > y0)
        return np.flatnonzero(hit)

    def attention_rgba(self, level: int, col: int, row: int, cmap: str = "viridis") -> np.ndarray:
        """A MIL head's attention per tile (``tiles.csv`` column ``attention``) over its footprint,
        relative to the tile with the most (1); transparent where no tile is."""
        box, size = self._raster_size(level, col, row)
        if "attention" not in self.result.tiles.columns:
            raise ValueError("this result has no attention (a head without attention pooling, or no MIL head)")
        attention = self.result.tiles["attention"].to_numpy(dtype=np.float32)
        return probability_to_rgba(self._painted(box, size, attention / (attention.max() or 1.0)), cmap)

    def tile_at(self, x: float, y: float) -> int | None:
        """Row of ``tiles.csv`` whose box holds the level-0 point ``(x, y)`` (the one whose centre is
        nearest, where tiles overlap), or None."""
        b = self._boxes
        hit = np.flatnonzero((b[:, 0] <= x) & (x < b[:, 0] + b[:, 2]) & (b[:, 1] <= y) & (y < b[:, 1] + b[:, 3]))
        if not len(hit):
            return None
        centre = b[hit, :2] + b[hit, 2:] / 2
        return int(hit[np.argmin(((centre - (x, y)) ** 2).sum(1))])

    def _painted(self, box, size, values: np.ndarray) -> np.ndarray:
        """(h, w) float32 raster of per-tile ``values`` over the tiles' boxes (mean where they
        overlap, NaN where no tile is), for the level-0 ``box``."""
        w, h = size
        x0, y0, x1, y1 = box
        sx, sy = w / (x1 - x0), h / (y1 - y0)
        acc = np.zeros((h, w), np.float32)
        cnt = np.zeros((h, w), np.float32)
        for i in self._tiles_in(box):
            bx, by, bw, bh = self._boxes[i]
            c0, r0 = max(0, int((bx - x0) * sx)), max(0, int((by - y0) * sy))
            c1, r1 = min(w, int(math.ceil((bx + bw - x0) * sx))), min(h, int(math.ceil((by + bh - y0) * sy)))
            acc[r0:r1, c0:c1] += values[i]
            cnt[r0:r1, c0:c1] += 1
        return np.where(cnt > 0, acc / np.maximum(cnt, 1), np.nan)

    def _tile_probability_rgba(self, box, size, cmap, class_index: int = -1) -> np.ndarray:
        """Probability map painted from the per-tile table when the result has no probability map.

        Uses the column ``p_<class>`` of the requested class when present, else ``probability``.
        """
        columns = self.result.tiles.columns
        classes = self.result.classes
        column = f"p_{classes[class_index]}" if classes and -len(classes) <= class_index < len(classes) else None
        column = column if column in columns else ("probability" if "probability" in columns else None)
        if column is None:
            return probability_to_rgba(np.full(size[::-1], np.nan, np.float32), cmap)
        return probability_to_rgba(self._painted(box, size, self.result.tiles[column].to_numpy(dtype=np.float32)), cmap)

    def grid_rgba(self, level: int, col: int, row: int, colour=(255, 255, 0, 220)) -> np.ndarray:
        """Outlines of the analysed tiles (1 px at any zoom)."""
        box, (w, h) = self._raster_size(level, col, row)
        img = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        x0, y0, x1, y1 = box
        sx, sy = w / (x1 - x0), h / (y1 - y0)
        draw = ImageDraw.Draw(img)
        idx = self._tiles_in(box)
        if len(idx) and self._boxes[idx, 2].mean() * sx < 3:
            return np.asarray(img)  # tiles smaller than 3 screen px: an outline grid would be a solid fill
        for i in idx:
            draw.rectangle(_pixel_box(self._boxes[i], x0, y0, sx, sy, 0), outline=colour, width=1)
        return np.asarray(img)

    def tissue_rgba(self, level: int, col: int, row: int, colour=(0, 200, 0)) -> np.ndarray:
        """Outline of the analysed (tissue) area: the union of the tile boxes."""
        box, (w, h) = self._raster_size(level, col, row)
        pad = 2  # draw on a padded raster so edges on tile borders are found by the filter
        x0, y0, x1, y1 = box
        sx, sy = w / (x1 - x0), h / (y1 - y0)
        mask = Image.new("L", (w + 2 * pad, h + 2 * pad), 0)
        draw = ImageDraw.Draw(mask)
        big = (x0 - pad / sx, y0 - pad / sy, x1 + pad / sx, y1 + pad / sy)
        for i in self._tiles_in(big):
            draw.rectangle(_pixel_box(self._boxes[i], x0, y0, sx, sy, pad), fill=255)
        edges = np.asarray(mask.filter(ImageFilter.FIND_EDGES))[pad:pad + h, pad:pad + w]
        edges = np.asarray(Image.fromarray(edges).filter(ImageFilter.MaxFilter(3)))
        out = np.zeros((h, w, 4), np.uint8)
        out[..., :3] = colour
        out[..., 3] = np.where(edges > 0, 255, 0)
        return out
