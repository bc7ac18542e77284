"""Tile grid, tissue mask and stitching: placement, level choice, seamless blending."""
import numpy as np
import openslide
import pytest
import torch

from lrp_captum.wsi.grid import make_grid, tissue_tiles
from lrp_captum.demos.sample_slide import SlideLayout, write_sample_slide
from lrp_captum.wsi.pipeline import DEFAULT_OVERLAP
from lrp_captum.wsi.stitch import blend_weights, footprints, resample, seam_ratio, stitch_bands
from lrp_captum.wsi.tissue import TissueMask, detect_tissue


def _all_tiles(grid):
    rows, cols = grid.shape
    full = TissueMask(np.ones((grid.height0, grid.width0), bool), 1.0, 0.0)
    tiles = tissue_tiles(grid, full, min_tissue=0.0)
    assert len(tiles) == rows * cols
    return tiles


def _stitch(tiles, values, d, shape, overlap, band=64):
    boxes = footprints(tiles, d)
    def fetch(i):
        x0, y0, x1, y1 = boxes[i]
        return np.full((1, y1 - y0, x1 - x0), values[i], np.float32)
    out = np.full(shape, np.nan, np.float32)
    for y, b in stitch_bands(boxes, fetch, shape, 1, overlap, band_height=band):
        out[y:y + b.shape[1]] = b[0]
    return out


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_constant_field_stitches_to_a_constant_map(overlap):
    grid = make_grid(1000, 700, 0.5, [1.0, 4.0], target_mpp=0.5, tile_size=64, overlap=overlap)
    tiles = _all_tiles(grid)
    d = 4
    shape = (-(-700 // d), -(-1000 // d))
    out = _stitch(tiles, np.full(len(tiles), 2.5), d, shape, overlap)
    assert not np.isnan(out).any()  # the grid covers the whole slide
    np.testing.assert_allclose(out, 2.5, rtol=1e-6)


@pytest.mark.parametrize("overlap", [0.25, 0.5])
def test_blended_map_stays_within_the_values_of_the_covering_tiles(overlap):
    grid = make_grid(1000, 700, 0.5, [1.0], target_mpp=0.5, tile_size=64, overlap=overlap)
    tiles = _all_tiles(grid)
    # value = tile column: normalised weights make each pixel a convex combination of the
    # columns of the tiles covering it, so the map never leaves that range
    boxes = footprints(tiles, 4)
    out = _stitch(tiles, tiles["col"].astype(float), 4, (175, 250), overlap)
    for x in range(0, 250, 7):
        cover = tiles["col"][(boxes[:, 0] <= x) & (boxes[:, 2] > x)]
        col = out[:, x]
        assert col.min() >= cover.min() - 1e-5 and col.max() <= cover.max() + 1e-5
    w = blend_weights(16, 16, overlap)
    assert (w > 0).all() and w.max() <= 1.0


@pytest.mark.parametrize("target_mpp,expected_level", [(0.5, 0), (1.0, 0), (2.0, 1)])
def test_grid_reads_the_coarsest_level_not_coarser_than_the_target(target_mpp, expected_level):
    grid = make_grid(4000, 4000, 0.5, [1.0, 4.0, 16.0], target_mpp=target_mpp, tile_size=128)
    assert grid.level == expected_level
    # the read region covers the tile's level-0 footprint
    assert grid.read_size * grid.level_downsample == pytest.approx(128 * target_mpp / 0.5)


@pytest.mark.parametrize("target_mpp", [0.5, 1.0])
def test_tiles_land_at_their_level0_coordinates(target_mpp):
    slide_mpp, T, d = 0.5, 32, 8
    grid = make_grid(1200, 900, slide_mpp, [1.0, 4.0], target_mpp=target_mpp, tile_size=T)
    tiles = _all_tiles(grid)
    side0 = T * target_mpp / slide_mpp  # level-0 px per tile, computed by hand
    shape = (-(-900 // d), -(-1200 // d))
    out = _stitch(tiles, 1000 * tiles["row"] + tiles["col"], d, shape, 0.0)
    for r, c in [(0, 0), (1, 2), (grid.shape[0] - 1, grid.shape[1] - 1)]:
        cx, cy = (c + 0.5) * side0 / d, (r + 0.5) * side0 / d  # tile centre in output px
        if cy < shape[0] and cx < shape[1]:
            assert out[int(cy), int(cx)] == 1000 * r + c
        # first and last output pixel of the tile's footprint
        assert out[int(r * side0 / d), int(c * side0 / d)] == 1000 * r + c
        y1, x1 = int((r + 1) * side0 / d) - 1, int((c + 1) * side0 / d) - 1
        if y1 < shape[0] and x1 < shape[1]:
            assert out[y1, x1] == 1000 * r + c


def test_tissue_mask_matches_the_generated_layout(tmp_path):
    path = write_sample_slide(tmp_path / "t.tif", 2048, seed=5)
    s = openslide.OpenSlide(str(path))
    tm = detect_tissue(s, slide_mpp=0.5)
    lay = SlideLayout.random(2048, 2048, seed=5)
    h, w = tm.mask.shape
    ys, xs = np.mgrid[0:h, 0:w]
    truth = lay.tissue((xs + 0.5) * tm.downsample, (ys + 0.5) * tm.downsample)
    iou = (truth & tm.mask).sum() / (truth | tm.mask).sum()
    assert iou > 0.85  # white lumens inside the IHC tissue read as glass


def test_tissue_fraction_of_a_box_counts_mask_pixels():
    m = np.zeros((10, 10), bool)
    m[:5, :] = True
    tm = TissueMask(m, downsample=4.0, threshold=0.1)
    assert tm.fraction(0, 0, 40, 40) == pytest.approx(0.5)
    assert tm.fraction(0, 0, 40, 20) == pytest.approx(1.0)
    assert tm.fraction(0, 20, 40, 20) == pytest.approx(0.0)


def _attenuated_tile(side: int = 128) -> np.ndarray:
    """A tile map as a zero-padded CNN explains uniform tissue: 0.3 at the edge, 1 from 5 px in."""
    i = np.arange(side)
    dist = np.minimum.outer(np.minimum(i, side - 1 - i), np.minimum(i, side - 1 - i))
    return np.minimum(1.0, 0.3 + 0.14 * dist).astype(np.float32)


@pytest.mark.parametrize("d", [1, 2, 8])
def test_edge_attenuated_tiles_stitch_without_seams_at_the_default_overlap(d):
    grid = make_grid(2048, 1536, 0.5, [1.0], target_mpp=0.5, tile_size=128, overlap=DEFAULT_OVERLAP)
    tiles = _all_tiles(grid)
    boxes = footprints(tiles, d)
    tile = torch.from_numpy(_attenuated_tile())[None, None]

    def fetch(i):
        x0, y0, x1, y1 = boxes[i]
        return resample(tile, int(y1 - y0), int(x1 - x0))[0].numpy()

    shape = (-(-1536 // d), -(-2048 // d))
    out = np.full(shape, np.nan, np.float32)
    for y, b in stitch_bands(boxes, fetch, shape, 1, grid.overlap, band_height=256):
        out[y:y + b.shape[1]] = b[0]
    inner = np.zeros(shape, bool)
    m = 128 // d  # away from the slide's border, where no neighbour can cover the edge
    inner[m:-m, m:-m] = True
    assert out[inner].min() > 0.9
    assert seam_ratio(out, boxes, inner) > 0.97


def test_seam_ratio_sees_lines_on_tile_edges():
    boxes = np.array([[0, 0, 10, 10], [10, 0, 20, 10]])
    values = np.ones((10, 20))
    assert seam_ratio(values, boxes, np.ones((10, 20), bool)) == pytest.approx(1.0)
    values[:, [0, 9, 10, 19]] = 0.5
    values[[0, 9], :] = 0.5
    assert seam_ratio(values, boxes, np.ones((10, 20), bool)) < 0.8
