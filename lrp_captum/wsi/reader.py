"""Opening slides with clear errors, and a DataLoader dataset that reads grid tiles."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


#: the most pixels a slide may claim: a 75 x 25 mm glass slide at 0.1 µm/px is 750000 x 250000
#: (1.9e11); a header beyond these is damaged or crafted, and reading it would never end
MAX_SLIDE_SIDE = 2 ** 21
MAX_SLIDE_PIXELS = 2 ** 40


class SlideError(ValueError):
    """A slide cannot be used; the message names the file and says what to do."""


class SlideReadError(SlideError):
    """The file is missing, unreadable, truncated, corrupt or in an unsupported format."""


class MissingMppError(SlideError):
    """The slide records no physical resolution but the run needs one."""


class EmptyTissueError(SlideError):
    """Tissue detection found no tissue tiles."""


def open_slide(path: str | Path):
    """``openslide.OpenSlide`` for ``path``, raising :class:`SlideReadError` with a clear message."""
    import openslide

    path = Path(path)
    if not path.is_file():
        raise SlideReadError(f"slide {path} does not exist")
    try:
        slide = openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError as exc:
        damage = _tiff_damage(path)
        if damage:
            raise SlideReadError(f"slide {path} is a TIFF file that cannot be parsed: {damage}. The file is "
                                 f"probably truncated or corrupt -- copy it again from its source") from exc
        raise SlideReadError(f"slide {path}: OpenSlide does not recognise this file format ({exc}). "
                             f"Convert it to a tiled pyramidal TIFF or a format listed at openslide.org") from exc
    except Exception as exc:  # OpenSlideError and libtiff failures on damaged files
        raise SlideReadError(f"slide {path} cannot be read ({exc}); the file may be truncated or corrupt "
                             f"-- copy it again from its source") from exc
    try:
        check_slide_size(slide.dimensions, path)
    except SlideReadError:
        slide.close()
        raise
    return slide


def check_slide_size(dimensions, path) -> None:
    """:class:`SlideReadError` when a slide claims more pixels than any scanner writes
    (:data:`MAX_SLIDE_SIDE` per side, :data:`MAX_SLIDE_PIXELS` in all)."""
    w, h = dimensions
    if max(w, h) > MAX_SLIDE_SIDE or w * h > MAX_SLIDE_PIXELS:
        raise SlideReadError(f"slide {path} claims {w} x {h} pixels ({float(w) * h:.2g}), more than any scanner "
                             f"writes (at most {MAX_SLIDE_SIDE} per side, {float(MAX_SLIDE_PIXELS):.2g} in all); "
                             f"the file is damaged or not a slide")


def _tiff_damage(path: Path) -> str:
    """Why a file with a TIFF header is unreadable ("" if it is not a TIFF or looks intact)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return ""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                offsets, counts = page.dataoffsets, page.databytecounts
                if offsets and max(o + c for o, c in zip(offsets, counts)) > size:
                    return f"its image data runs past the end of the file ({size} bytes)"
    except Exception as exc:  # noqa: BLE001 -- any parse failure is the diagnosis
        return f"{type(exc).__name__}: {exc} (file size {size} bytes)"
    return "OpenSlide rejects its structure although it has a TIFF header"


def slide_mpp(slide, path="slide", override: float | None = None) -> float:
    """µm per level-0 pixel from OpenSlide properties (mean of x and y), or ``override``."""
    import openslide

    if override is not None:
        return float(override)
    props = slide.properties
    try:
        mx = float(props[openslide.PROPERTY_NAME_MPP_X])
        my = float(props.get(openslide.PROPERTY_NAME_MPP_Y, mx))
    except (KeyError, ValueError):
        raise MissingMppError(f"slide {path} records no resolution (openslide.mpp-x is missing), so tiles "
                              f"cannot be cut at the model's µm/px; pass slide_mpp=... (CLI: --slide-mpp) "
                              f"if you know it") from None
    from lrp_captum.wsi.slide_options import MPP_RANGE

    if not all(MPP_RANGE[0] <= m <= MPP_RANGE[1] for m in (mx, my)):  # also inf and NaN
        raise MissingMppError(f"slide {path} records an unusable resolution ({mx:g}, {my:g} µm/px; usable: "
                              f"{MPP_RANGE[0]:g} to {MPP_RANGE[1]:g}); pass slide_mpp=... (CLI: --slide-mpp) "
                              f"if you know it")
    return (mx + my) / 2


def read_tile(slide, grid, x0: float, y0: float) -> np.ndarray:
    """RGB uint8 (tile_size, tile_size, 3) tile whose level-0 top-left is ``(x0, y0)``.

    Reads ``grid.read_size`` pixels at ``grid.level``, composites transparent (outside-slide)
    pixels onto white and resizes to ``grid.tile_size`` (bilinear, antialiased).
    """
    from PIL import Image

    n = grid.read_size
    img = slide.read_region((int(round(x0)), int(round(y0))), grid.level, (n, n))
    bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
    img = Image.alpha_composite(bg, img).convert("RGB")
    if n != grid.tile_size:
        img = img.resize((grid.tile_size, grid.tile_size), Image.BILINEAR)
    return np.asarray(img)


class SlideTileDataset(torch.utils.data.Dataset):
    """Tiles of one slide for a ``DataLoader``; each worker opens its own OpenSlide handle.

    Item ``i`` is ``(i, tile)`` with ``tile`` a (tile_size, tile_size, 3) uint8 tensor of
    ``tiles[i]`` (a row of :func:`~lrp_captum.wsi.grid.tissue_tiles`).
    """

    def __init__(self, path, grid, tiles: np.ndarray):
        self.path = str(path)
        self.grid = grid
        self.tiles = tiles
        self._slide = None

    def __len__(self):
        return len(self.tiles)

    def __getitem__(self, i):
        if self._slide is None:
            self._slide = open_slide(self.path)
        t = self.tiles[i]
        try:
            tile = read_tile(self._slide, self.grid, float(t["x0"]), float(t["y0"]))
        except Exception as exc:
            raise SlideReadError(
                f"slide {self.path}: reading the tile at level-0 ({t['x0']:.0f}, {t['y0']:.0f}) from level "
                f"{self.grid.level} failed ({exc}); the file may be truncated or corrupt") from None
        return i, torch.from_numpy(tile.copy())

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_slide"] = None  # OpenSlide handles do not cross processes
        return state
