"""The tile grid: which slide regions the model sees, at which level, and where they land.

Coordinates always name their frame: ``*_0`` / ``x0, y0, w0, h0`` are level-0 pixels, ``col, row``
index the grid, "target px" are pixels at the model resolution ``target_mpp`` (µm/px).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: the most grid cells a run may visit (a 200k x 100k px slide at 0.25 µm/px has about 1.3e5 cells
#: of 224 px at 0.5 µm/px with 1/8 overlap); beyond it a mistyped --mpp would loop for hours
MAX_GRID_CELLS = 4_000_000

@dataclass(frozen=True)
class TileGrid:
    """A regular tile grid over a slide.

    Attributes
    ----------
    width0, height0 : slide size in level-0 pixels.
    slide_mpp : µm per level-0 pixel.
    target_mpp : µm per pixel of the tiles handed to the model.
    tile_size : tile side in target px.
    stride : grid step in target px (``tile_size * (1 - overlap)``).
    level : pyramid level the tiles are read from.
    level_downsample : that level's downsample relative to level 0.
    """

    width0: int
    height0: int
    slide_mpp: float
    target_mpp: float
    tile_size: int
    stride: int
    level: int
    level_downsample: float

    @property
    def scale(self) -> float:
        """Level-0 pixels per target pixel."""
        return self.target_mpp / self.slide_mpp

    @property
    def read_size(self) -> int:
        """Side of the region read at ``level`` (in level pixels) before resizing to ``tile_size``."""
        return max(1, round(self.tile_size * self.scale / self.level_downsample))

    @property
    def overlap(self) -> float:
        return 1.0 - self.stride / self.tile_size

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) so that the grid covers the whole slide."""
        def n(extent0):
            ext = extent0 / self.scale
            return 1 if ext <= self.tile_size else math.ceil((ext - self.tile_size) / self.stride) + 1
        return n(self.height0), n(self.width0)

    def box0(self, col, row):
        """Level-0 box ``(x0, y0, w0, h0)`` (floats) of grid cell(s) ``col, row``."""
        side = self.tile_size * self.scale
        return (np.asarray(col) * self.stride * self.scale, np.asarray(row) * self.stride * self.scale, side, side)

    def to_dict(self) -> dict:
        return dict(width0=self.width0, height0=self.height0, slide_mpp=self.slide_mpp,
                    target_mpp=self.target_mpp, tile_size=self.tile_size, stride=self.stride,
                    level=self.level, level_downsample=self.level_downsample,
                    scale_level0_px_per_target_px=self.scale, read_size_level_px=self.read_size)


def make_grid(width0: int, height0: int, slide_mpp: float, level_downsamples, *, target_mpp: float,
              tile_size: int, overlap: float = 0.0, tolerance: float = 0.05) -> TileGrid:
    """Grid at ``target_mpp`` reading from the coarsest level that is not coarser than the target.

    ``overlap`` is the fraction of a tile shared with its neighbour (0 <= overlap < 1); the stride
    is ``round(tile_size * (1 - overlap))`` target px. A level up to ``tolerance`` coarser than the
    target still counts (scanners round their downsamples).
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if slide_mpp <= 0 or target_mpp <= 0:
        raise ValueError(f"resolutions must be positive (slide {slide_mpp} µm/px, target {target_mpp} µm/px)")
    scale = target_mpp / slide_mpp
    stride = max(1, round(tile_size * (1.0 - overlap)))
    cells = math.prod(1 if e / scale <= tile_size else math.ceil((e / scale - tile_size) / stride) + 1
                      for e in (width0, height0))
    if cells > MAX_GRID_CELLS:
        raise ValueError(f"a tile grid at {target_mpp:g} µm/px with {tile_size}-px tiles every {stride} px would have "
                         f"{cells:.3g} cells on this {width0} x {height0} px slide (at most {MAX_GRID_CELLS:.0e}); "
                         f"choose a coarser --mpp, a larger --tile-size or a smaller --overlap")
    usable = [i for i, d in enumerate(level_downsamples) if d <= scale * (1 + tolerance)]
    level = max(usable, key=lambda i: level_downsamples[i]) if usable else 0
    return TileGrid(int(width0), int(height0), float(slide_mpp), float(target_mpp), int(tile_size),
                    int(stride), int(level), float(level_downsamples[level]))


def tissue_tiles(grid: TileGrid, tissue, min_tissue: float = 0.1) -> np.ndarray:
    """Grid cells whose tissue fraction is at least ``min_tissue``, in row-major order.

    Returns a structured array with fields ``row, col`` (grid), ``x0, y0, w0, h0`` (level-0 px,
    float64) and ``tissue`` (fraction).
    """
    rows, cols = grid.shape
    out = []
    for r in range(rows):
        for c in range(cols):
            x0, y0, w0, h0 = grid.box0(c, r)
            f = tissue.fraction(float(x0), float(y0), w0, h0)
            if f >= min_tissue and f > 0:
                out.append((r, c, float(x0), float(y0), w0, h0, f))
    dt = np.dtype([("row", "i4"), ("col", "i4"), ("x0", "f8"), ("y0", "f8"), ("w0", "f8"),
                   ("h0", "f8"), ("tissue", "f4")])
    return np.array(out, dtype=dt)
