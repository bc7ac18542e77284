"""Library side of the app: path safety, result loading, Deep Zoom geometry and overlay tiles."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from lrp_captum.viewer.colormaps import relevance_to_rgba
from lrp_captum.viewer.deepzoom import DeepZoomGrid, OverlayTiles, sample_map
from lrp_captum.viewer.paths import UnsafePathError, resolve_under
from lrp_captum.viewer.results import ResultError, list_slides, load_result, top_tiles
from test_app_fixtures import make_fixture_dirs, write_fixture_result, write_fixture_slide


# --- path safety -----------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["../etc/passwd", "a/../../b", "/etc/passwd", "C:\\Windows", "\\\\srv\\share",
                                 "..", "a/..\\..\\b", "", "a\x00b"])
def test_resolve_under_rejects_traversal_and_absolute_paths(tmp_path, bad):
    with pytest.raises(UnsafePathError):
        resolve_under(tmp_path, bad)


def test_resolve_under_accepts_nested_relative_path(tmp_path):
    (tmp_path / "a").mkdir()
    assert resolve_under(tmp_path, "a/b.svs") == (tmp_path / "a" / "b.svs").resolve()


def test_resolve_under_rejects_symlink_leaving_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.txt").write_text("x")
    os.symlink(tmp_path / "secret.txt", root / "link.svs")
    with pytest.raises(UnsafePathError, match="outside"):
        resolve_under(root, "link.svs")


# --- Deep Zoom geometry: OpenSlide's DeepZoomGenerator is the reference ------------------------
@pytest.mark.parametrize("size", [(3000, 2000), (1024, 768), (257, 5000)])
def test_deepzoom_grid_matches_openslide_generator(tmp_path, size):
    import openslide
    from openslide.deepzoom import DeepZoomGenerator

    path = write_fixture_slide(tmp_path / "s.tif", *size)
    with openslide.OpenSlide(str(path)) as slide:
        dz = DeepZoomGenerator(slide, tile_size=254, overlap=1, limit_bounds=False)
        grid = DeepZoomGrid(*slide.dimensions, 254, 1)
        assert grid.level_count == dz.level_count
        for level in range(dz.level_count):
            assert grid.level_dimensions(level) == dz.level_dimensions[level]
            assert grid.level_tiles(level) == dz.level_tiles[level]
            cols, rows = dz.level_tiles[level]
            for col, row in {(0, 0), (cols - 1, rows - 1), (cols // 2, rows // 2)}:
                assert grid.tile_box(level, col, row)[1] == dz.get_tile_dimensions(level, (col, row))


# --- map sampling and colours --------------------------------------------------------------------
def test_sample_map_places_a_map_pixel_on_its_level0_footprint():
    d = 8
    m = np.zeros((10, 10), np.float32)
    m[3, 5] = 1.0  # covers level-0 x in [40, 48), y in [24, 32)
    vals, valid = sample_map(m, d, (0, 0, 80, 80), (80, 80))
    ys, xs = np.nonzero(vals)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (40, 47, 24, 31)
    assert valid.all()


def test_sample_map_area_averages_when_zoomed_out():
    m = np.zeros((4, 4), np.float32)
    m[:2, :2] = 1.0  # top-left quarter
    vals, _ = sample_map(m, 1, (0, 0, 4, 4), (2, 2))
    np.testing.assert_allclose(vals, [[1.0, 0.0], [0.0, 0.0]])
    vals, _ = sample_map(m, 1, (0, 0, 4, 4), (1, 1))
    np.testing.assert_allclose(vals, [[0.25]])


def test_sample_map_outside_the_map_is_invalid():
    m = np.ones((2, 2), np.float32)
    vals, valid = sample_map(m, 10, (0, 0, 40, 40), (4, 4))
    assert valid[:2, :2].all() and not valid[2:, :].any() and not valid[:, 2:].any()


def test_sample_map_nan_pixels_are_invalid():
    m = np.array([[np.nan, 2.0]], np.float32)
    vals, valid = sample_map(m, 1, (0, 0, 2, 1), (2, 1))
    assert valid.tolist() == [[False, True]] and vals[0, 1] == 2.0


def test_relevance_colours_are_diverging_with_transparent_zero():
    rgba = relevance_to_rgba(np.array([[-1.0, 0.0, 1.0]]), vmax=1.0, cmap="bwr")
    assert tuple(rgba[0, 2]) == (255, 0, 0, 255)   # bwr top: red, opaque
    assert tuple(rgba[0, 0]) == (0, 0, 255, 255)   # bwr bottom: blue, opaque
    assert rgba[0, 1, 3] == 0                      # zero: transparent


def test_positive_mode_hides_negative_relevance():
    rgba = relevance_to_rgba(np.array([[-1.0, 1.0]]), vmax=1.0, mode="positive")
    assert rgba[0, 0, 3] == 0 and rgba[0, 1, 3] == 255
    rgba = relevance_to_rgba(np.array([[-1.0, 1.0]]), vmax=1.0, mode="negative")
    assert rgba[0, 0, 3] == 255 and rgba[0, 1, 3] == 0


# --- results ------------------------------------------------------------------------------------
def test_list_slides_reports_result_status(tmp_path):
    slides, results = make_fixture_dirs(tmp_path)
    (results / "new_0").mkdir()
    status = {e.rel_path: e.status for e in list_slides(slides, results)}
    assert status == {"case_0.tif": "explained", "new_0.tif": "incomplete"}


def test_list_slides_skips_symlinks_leaving_the_folder(tmp_path):
    slides, results = make_fixture_dirs(tmp_path, n_plain=0)
    outside = write_fixture_slide(tmp_path / "outside.tif", 512, 512)
    os.symlink(outside, slides / "escape.tif")
    assert [e.rel_path for e in list_slides(slides, results)] == ["case_0.tif"]


def test_load_result_reads_group_and_bare_array_layouts(tmp_path):
    r1 = load_result(write_fixture_result(tmp_path / "g", group=True))
    r2 = load_result(write_fixture_result(tmp_path / "a", group=False))
    assert r1.relevance.shape == r2.relevance.shape == (125, 188)
    assert r1.probability is not None and r2.probability is None
    assert r1.vmax == pytest.approx(1.0)


@pytest.mark.parametrize("damage, fragment", [
    (lambda d: (d / "manifest.json").unlink(), "manifest.json is missing"),
    (lambda d: (d / "manifest.json").write_text("{not json"), "manifest.json is not valid JSON"),
    (lambda d: (d / "manifest.json").write_text(json.dumps({"slide": "x"})), "output_downsample"),
    (lambda d: (d / "tiles.csv").write_text("a,b\n1,2\n"), "tiles.csv lacks column"),
    (lambda d: (d / "relevance.zarr" / "zarr.json").write_text("garbage"), "relevance.zarr cannot be opened"),
])
def test_load_result_names_the_damaged_file(tmp_path, damage, fragment):
    rdir = write_fixture_result(tmp_path / "r")
    damage(rdir)
    with pytest.raises(ResultError, match=fragment.replace(".", r"\.")):
        load_result(rdir)


def test_top_tiles_orders_by_positive_and_negative_relevance(tmp_path):
    r = load_result(write_fixture_result(tmp_path / "r"))
    pos = top_tiles(r.tiles, k=3)
    neg = top_tiles(r.tiles, k=3, negative=True)
    assert list(pos["relevance_pos"]) == sorted(r.tiles["relevance_pos"], reverse=True)[:3]
    assert (neg["relevance_sum"] < 0).all() and (neg["x0"] + 128 >= 1500).all()


# --- overlay tiles aligned to the slide ------------------------------------------------------------
def test_relevance_overlay_is_red_left_and_blue_right_of_the_split(tmp_path):
    r = load_result(write_fixture_result(tmp_path / "r"))
    ov = OverlayTiles(DeepZoomGrid(3000, 2000), r)
    level = ov.grid.level_count - 4  # downsample 8: the whole slide is 375 x 250 px, 2 x 1 tiles
    left = ov.relevance_rgba(level, 0, 0, cmap="bwr")
    # level-0 (1000, 1000), left of the split at x = 1500, is pixel (125, 125) of tile (0, 0)
    px = left[125, 125].astype(int)
    assert px[0] > 240 and px[2] < px[0] - 100 and px[3] > 0
    right = ov.relevance_rgba(level, 1, 0, cmap="bwr")
    c = 2400 // 8 - 253  # level-0 x = 2400; tile 1 starts at level px 254 - 1 (overlap)
    px = right[125, c].astype(int)
    assert px[2] > 240 and px[0] < px[2] - 100 and px[3] > 0
    # the default map for slides paints negative relevance teal, not haematoxylin's blue
    px = ov.relevance_rgba(level, 1, 0)[125, c].astype(int)
    assert px[1] > px[0] + 60 and px[2] > px[0] + 60 and abs(px[1] - px[2]) < 60


def test_grid_and_tissue_layers_draw_only_near_tiles(tmp_path):
    r = load_result(write_fixture_result(tmp_path / "r"))
    ov = OverlayTiles(DeepZoomGrid(3000, 2000), r)
    level = ov.grid.level_count - 4
    grid = ov.grid_rgba(level, 0, 0)
    tissue = ov.tissue_rgba(level, 0, 0)
    assert grid[..., 3].any() and tissue[..., 3].any()
    assert not grid[:5, :5, 3].any()  # the top-left corner is glass, no tile there
    assert tissue[..., 3].mean() < grid[..., 3].mean()  # outline of the union, not every tile edge


def test_probability_layer_falls_back_to_tile_table(tmp_path):
    r = load_result(write_fixture_result(tmp_path / "r", group=False))
    ov = OverlayTiles(DeepZoomGrid(3000, 2000), r)
    rgba = ov.probability_rgba(ov.grid.level_count - 4, 0, 0)
    assert rgba[..., 3].any() and not rgba[:5, :5, 3].any()


# --- the tile view: a tile's stored relevance and the relevance drawn over it -------------------
@pytest.mark.parametrize("box", [(12, 4, 16, 8), (0, 0, 8, 8), (70, 70, 30, 30), (7, 9, 1, 1)])
def test_stored_tile_relevance_holds_every_map_pixel_the_box_touches(box):
    from lrp_captum.viewer.tile_view import stored_tile_relevance

    d, (x0, y0, w0, h0) = 8, box
    relevance = np.arange(100, dtype=np.float32).reshape(10, 10)
    touched = [[relevance[i, j] for j in range(10) if j * d < x0 + w0 and (j + 1) * d > x0]
               for i in range(10) if i * d < y0 + h0 and (i + 1) * d > y0]
    np.testing.assert_array_equal(stored_tile_relevance(relevance, d, x0, y0, w0, h0), np.array(touched))


def test_blend_leaves_zero_relevance_unchanged_and_paints_vmax_in_full_colour():
    from lrp_captum.viewer.tile_view import blend_relevance

    rgb = np.full((4, 4, 3), 100, np.uint8)
    out = blend_relevance(rgb, np.array([[0.0, 1.0], [-2.0, 0.5]]), vmax=1.0, cmap="bwr")
    assert out.shape == (4, 4, 3)
    assert (out[:2, :2] == 100).all()                       # 0: tile shows through
    assert (out[:2, 2:] == (255, 0, 0)).all()               # +vmax: bwr red, opaque
    assert (out[2:, :2] == (0, 0, 255)).all()               # beyond -vmax: clipped to blue
    from matplotlib import colormaps

    colour = np.array(colormaps["bwr"](0.75)[:3]) * 255     # +vmax/2: 3/4 along the diverging map
    expected = colour * 0.5 + 100 * 0.5                      # at half opacity
    np.testing.assert_allclose(out[2:, 2:].reshape(-1, 3), np.tile(expected, (4, 1)), atol=2)
