"""Slides without a pyramid: tissue detection and the tile server's zoomed-out tiles read the
slide region by region, so memory stays bounded whatever the slide's size (before: 16 bytes per
level-0 pixel, 7 GB for a 20k x 20k slide). Checked on a real single-level tiled TIFF: every
read OpenSlide is asked for is within the budget, the peak resident memory of a fresh process
grows by far less than the slide's decoded size, and the images are the slide's area average."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lrp_captum.wsi.downsampled_region import READ_BUDGET_PX, read_downsampled
from lrp_captum.wsi.tissue import detect_tissue, thumbnail_rgb

ROOT = Path(__file__).resolve().parents[1]
SIDE = 4000  # 16 Mpx: four times the read budget; decoded as RGBA 61 MiB
LARGE_SIDE = 8000  # for peak memory: the fixed cost (OpenSlide's 32 MiB tile cache, blocks) is small beside it


def _slide_pixels(side: int, y0: int = 0, x0: int = 0, rows: int | None = None, cols: int | None = None) -> np.ndarray:
    """RGB uint8 ``(rows, cols, 3)`` from ``(y0, x0)`` of a ``side`` x ``side`` slide: glass with two
    tissue-coloured discs and a dark stripe."""
    rows, cols = rows or side, cols or side
    yy, xx = np.mgrid[y0:y0 + rows, x0:x0 + cols]
    img = np.full((rows, cols, 3), 240, np.uint8)
    img[(xx - side * 0.3) ** 2 + (yy - side * 0.4) ** 2 < (side * 0.2) ** 2] = (200, 120, 170)
    img[(xx - side * 0.7) ** 2 + (yy - side * 0.7) ** 2 < (side * 0.15) ** 2] = (150, 90, 160)
    img[(xx >= int(side * 0.9)) & (xx < int(side * 0.9) + 7)] = (120, 60, 110)
    return img


def _write_flat(path: Path, side: int, pixels=None) -> Path:
    """A single-level tiled TIFF at 0.25 µm/px (lossless); without ``pixels``, written tile by tile."""
    import tifffile

    tile = 256
    if pixels is None:
        n = -(-side // tile)
        pixels = (_slide_pixels(side, r * tile, c * tile, tile, tile) for r in range(n) for c in range(n))
    res = 1e4 / 0.25  # pixels per cm
    tifffile.imwrite(path, pixels, shape=(side, side, 3), dtype=np.uint8, tile=(tile, tile), compression="zlib",
                     photometric="rgb", resolution=(res, res), resolutionunit="CENTIMETER")
    return path


@pytest.fixture(scope="module")
def flat(tmp_path_factory):
    """``(path, pixels)`` of a single-level tiled TIFF (lossless, so the pixels are the reference)."""
    pixels = _slide_pixels(SIDE)
    return _write_flat(tmp_path_factory.mktemp("flat") / "flat.tif", SIDE, pixels), pixels


@pytest.fixture(scope="module")
def large_flat(tmp_path_factory):
    """A single-level 8000 x 8000 tiled TIFF (decoded as RGBA: 244 MiB), written tile by tile."""
    return _write_flat(tmp_path_factory.mktemp("large_flat") / "flat.tif", LARGE_SIDE)


class RecordingSlide:
    """A real ``OpenSlide`` that records the size of every region it is asked to read."""

    def __init__(self, path):
        import openslide

        self._slide = openslide.OpenSlide(str(path))
        self.reads: list[int] = []

    def read_region(self, location, level, size):
        self.reads.append(size[0] * size[1])
        return self._slide.read_region(location, level, size)

    def __getattr__(self, name):
        return getattr(self._slide, name)


def _area_average(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).resize(size, Image.BOX), dtype=np.float64)


def test_the_slide_has_no_pyramid(flat):
    import openslide

    with openslide.OpenSlide(str(flat[0])) as slide:
        assert slide.level_count == 1 and slide.dimensions == (SIDE, SIDE)


def test_tissue_detection_reads_a_single_level_slide_region_by_region(flat):
    slide = RecordingSlide(flat[0])
    mask = detect_tissue(slide, slide_mpp=0.25)
    assert slide.reads and max(slide.reads) <= READ_BUDGET_PX
    assert sum(slide.reads) >= SIDE * SIDE  # every pixel is read: the thumbnail averages all of them
    assert 0.15 < mask.area_fraction < 0.35  # the two discs (19 % of the slide) and the stripe


def test_a_thumbnail_read_block_by_block_is_the_area_average_of_the_slide(flat):
    path, pixels = flat
    slide = RecordingSlide(path)
    rgb = thumbnail_rgb(slide, 32.0)
    assert rgb.shape == (SIDE // 32, SIDE // 32, 3) and max(slide.reads) <= READ_BUDGET_PX
    reference = pixels.reshape(SIDE // 32, 32, SIDE // 32, 32, 3).mean((1, 3))
    assert np.abs(rgb - reference).max() <= 0.5 + 1e-9  # exact up to rounding


def test_a_region_at_a_fractional_downsample_is_its_area_average(flat):
    path, pixels = flat
    slide = RecordingSlide(path)
    box = (1000, 500, 2100, 3000)  # level-0 x, y, w, h
    got = read_downsampled(slide, box, (70, 120), budget_px=200_000, block=300)
    assert max(slide.reads) <= 300 * 300
    reference = _area_average(pixels[500:3500, 1000:3100], (70, 120))
    assert np.abs(got - reference).max() <= 1.0


_MEASURE = """
import json, sys
from pathlib import Path
def status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
path, step = Path(sys.argv[1]), sys.argv[2]
import openslide
from lrp_captum.wsi.tissue import detect_tissue, tissue_mask_from_rgb
from lrp_captum.viewer.tile_server import TileService
import numpy as np
tissue_mask_from_rgb(np.full((64, 64, 3), 200, np.uint8))  # load scipy/skimage before measuring
service = TileService(path.parent, path.parent / "results")
_, _, grid = service.open_slide(path.name)
slide = openslide.OpenSlide(str(path))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak resident size (VmHWM) starts again from the current one
before = status_kib("VmRSS")
if step == "tissue":
    detect_tissue(slide, slide_mpp=0.25)
else:  # the coarsest Deep Zoom level that still shows the whole slide in one tile
    level = max(l for l in range(grid.level_count) if grid.level_tiles(l) == (1, 1))
    service.tile(path.name, "slide", level, 0, 0)
print(json.dumps(dict(growth_mib=(status_kib("VmHWM") - before) / 1024)))
"""


@pytest.mark.parametrize("step", ["tissue", "zoomed_out_tile"])
def test_peak_memory_grows_by_far_less_than_the_decoded_slide(large_flat, step):
    run = subprocess.run([sys.executable, "-c", _MEASURE, str(large_flat), step], capture_output=True, text=True,
                         cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=600)
    assert run.returncode == 0, run.stderr
    growth = json.loads(run.stdout.strip().splitlines()[-1])["growth_mib"]
    decoded_rgba_mib = LARGE_SIDE * LARGE_SIDE * 4 / 2**20
    assert growth < 0.5 * decoded_rgba_mib, f"{step}: peak grew by {growth:.0f} MiB"


def test_zoomed_out_tiles_of_a_slide_without_a_pyramid_are_its_area_average(flat):
    from openslide.deepzoom import DeepZoomGenerator

    from lrp_captum.viewer.deepzoom import OVERLAP, TILE_SIZE, DeepZoomGrid, SlideOverview, slide_tile

    path, pixels = flat
    slide = RecordingSlide(path)
    dz = DeepZoomGenerator(slide._slide, tile_size=TILE_SIZE, overlap=OVERLAP, limit_bounds=False)
    grid = DeepZoomGrid(SIDE, SIDE)
    overview = SlideOverview.of(slide)
    checked = 0
    for level in range(grid.level_count):
        if grid.level_tiles(level) != (1, 1):  # each of these would read the whole slide
            continue
        for source in (None, lambda: overview):  # read block by block, or cut from the overview
            tile = np.asarray(slide_tile(slide, dz, grid, level, 0, 0, source), dtype=np.float64)
            reference = _area_average(pixels, grid.level_dimensions(level))
            assert tile.shape == reference.shape
            assert np.abs(tile - reference).mean() < 1.0, level
            checked += 1
    assert checked >= 8 and max(slide.reads) <= READ_BUDGET_PX


def test_the_tile_server_serves_zoomed_out_tiles_of_a_slide_without_a_pyramid(flat):
    import io

    from PIL import Image

    from lrp_captum.viewer.tile_server import TileService

    path, pixels = flat
    service = TileService(path.parent, path.parent / "results")
    _, _, grid = service.open_slide(path.name)
    level = max(lv for lv in range(grid.level_count) if grid.level_tiles(lv) == (1, 1))
    body, ctype = service.tile(path.name, "slide", level, 0, 0)
    tile = np.asarray(Image.open(io.BytesIO(body)), dtype=np.float64)
    reference = _area_average(pixels, grid.level_dimensions(level))
    assert ctype == "image/jpeg" and tile.shape == reference.shape
    assert np.abs(tile - reference).mean() < 3.0  # JPEG at quality 85
