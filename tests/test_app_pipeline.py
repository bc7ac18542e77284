"""The app on real WSI-pipeline output: a generated sample slide explained with a (quickly
trained) demo model, then viewed, re-explained per tile, and explained from the page."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from lrp_captum.viewer.results import list_slides, load_result
from lrp_captum.viewer.tile_server import TileService
from test_app_fixtures import visible

APP = str(Path(__file__).resolve().parents[1] / "apps" / "streamlit_app.py")


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    from lrp_captum.wsi.pipeline import explain_slide
    from lrp_captum.demos.sample_slide import write_sample_slide
    from lrp_captum.demos.slide_model import demo_model_config

    root = tmp_path_factory.mktemp("app_real")
    model = demo_model_config(root / "model", n_train=256, n_val=64, epochs=2)
    slides, results = root / "slides", root / "results"
    write_sample_slide(slides / "sample.svs", 2048, kind="svs", seed=1)
    write_sample_slide(slides / "fresh.tif", 1024, kind="tiff", seed=2)
    explain_slide(slides / "sample.svs", model, results / "sample", quiet=True, num_workers=0, device="cpu",
                  keep_work=True)
    return slides, results, model


@pytest.fixture
def app_env(real, monkeypatch):
    slides, results, model = real
    monkeypatch.setenv("LRP_CAPTUM_APP_SLIDES", str(slides))
    monkeypatch.setenv("LRP_CAPTUM_APP_RESULTS", str(results))
    monkeypatch.setenv("LRP_CAPTUM_APP_MODEL", str(model))
    monkeypatch.setenv("LRP_CAPTUM_APP_DEVICE", "cpu")
    return real


def test_pipeline_result_loads_with_class_probability_maps(real):
    slides, results, _ = real
    r = load_result(results / "sample")
    assert r.probability.shape == (2,) + r.relevance.shape
    assert r.classes == ["negative", "positive"]
    assert r.vmax == pytest.approx(r.manifest["vmax"])
    assert {e.rel_path: e.status for e in list_slides(slides, results)} == {"fresh.tif": "not explained",
                                                                             "sample.svs": "explained"}


def test_probability_tiles_of_both_classes_sum_to_one_where_there_is_tissue(real):
    slides, results, _ = real
    svc = TileService(slides, results)
    ov = svc.open_result("sample.svs")
    level = ov.grid.level_count - 3  # downsample 4
    from lrp_captum.viewer.deepzoom import sample_map

    box, size = ov._raster_size(level, 0, 0)
    p0, ok0 = sample_map(ov.result.probability[0], ov.result.downsample, box, size)
    p1, ok1 = sample_map(ov.result.probability[1], ov.result.downsample, box, size)
    both = ok0 & ok1
    assert both.any()
    np.testing.assert_allclose((p0 + p1)[both], 1.0, atol=1e-4)
    rgba = ov.probability_rgba(level, 0, 0, class_index=1)
    assert (rgba[..., 3] > 0).sum() == both.sum()


def test_progress_is_read_from_the_pipeline_work_folder(real):
    from lrp_captum.viewer.jobs import work_folder_progress

    _, results, _ = real
    n = load_result(results / "sample").manifest["n_tiles"]
    assert work_folder_progress(results / "sample") == (n, n)
    assert work_folder_progress(results / "nothing") is None


def test_tile_view_starts_on_the_class_the_slide_run_explained(app_env):
    _, results, _ = app_env
    r = load_result(results / "sample")
    for prefix in ("open_pos_", "open_neg_"):
        at = AppTest.from_file(APP, default_timeout=120)
        at.query_params["slide"] = "sample.svs"
        at.run()
        at.button(key=next(b.key for b in at.button if b.key and b.key.startswith(prefix))).click().run()
        row = r.tiles.loc[at.session_state["tile"]["index"]]
        assert at.selectbox(key="tile_target").value == row["target"]


def _open_top_tile():
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["slide"] = "sample.svs"
    at.run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    key = next(b.key for b in at.button if b.key and b.key.startswith("open_pos_"))
    return at.button(key=key).click().run()


def _compute_seconds(at) -> float:
    text = next(visible(c.value) for c in at.caption if "computed in" in c.value)
    return float(re.search(r"computed in ([0-9.]+) s", text).group(1))


def test_tile_view_recomputes_relevance_with_the_model_in_under_two_seconds(app_env):
    at = _open_top_tile()
    assert not at.exception and not at.warning
    assert _compute_seconds(at) < 2.0
    at.selectbox(key="tile_target").set_value("negative").run()
    assert any("Relevance of 'negative'" in visible(c.value) for c in at.caption)
    assert _compute_seconds(at) < 2.0
    at.selectbox(key="tile_composite").set_value("epsilon_gamma_box").run()
    at.selectbox(key="tile_mode").set_value("probability").run()
    assert any("epsilon_gamma_box, probability output" in visible(c.value) for c in at.caption)


def test_tile_view_probabilities_match_the_tile_table(app_env):
    _, results, _ = app_env
    at = _open_top_tile()
    r = load_result(results / "sample")
    table = at.dataframe[0].value
    row = r.tiles.loc[at.session_state["tile"]["index"]]
    # the page reads the tile again from the slide; the pipeline read it through its own reader
    assert table["probability"].tolist() == pytest.approx([row["p_negative"], row["p_positive"]], abs=0.02)


def test_explaining_a_slide_from_the_page_shows_progress_then_the_result(app_env):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["slide"] = "fresh.tif"
    at.run()
    at.button(key="explain_start").click().run()
    assert "Explaining this slide" in [s.value for s in at.subheader] or "fresh.tif — explained" in at.selectbox(
        key="slide").options  # a fast machine may finish before the first rerun
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        time.sleep(1.0)
        at.run()
        if at.selectbox(key="slide").value == "fresh.tif" and "Most relevant tiles" in [s.value for s in at.subheader]:
            break
    assert "fresh.tif — explained" in at.selectbox(key="slide").options
    assert not at.exception and not at.error


def _deep_tile_over_tissue(ov):
    """``(level, col, row)`` of a full-resolution Deep Zoom tile whose centre is in an analysed tile."""
    level = ov.grid.level_count - 1
    x0, y0, w0, h0 = ov.result.tiles[["x0", "y0", "w0", "h0"]].iloc[len(ov.result.tiles) // 2]
    return level, int((x0 + w0 / 2) // ov.grid.tile_size), int((y0 + h0 / 2) // ov.grid.tile_size)


def test_deepest_zoom_levels_show_each_tiles_own_full_resolution_map(real):
    """Zoomed in past the stored map (1/8 of level 0 here), the relevance layer is the analysed
    tile's own map at the model's resolution, as the tile view computes it, not 8-px blocks."""
    import torch

    from lrp_captum.viewer.tile_view import read_tile_rgb
    from lrp_captum.wsi.model import load_model
    from lrp_captum.wsi.tile_relevance import TileExplainer

    slides, results, model = real
    coarse = TileService(slides, results).open_result("sample.svs")
    fine_service = TileService(slides, results, model_config=model, device="cpu")
    fine = fine_service.open_result("sample.svs")
    level, col, row = _deep_tile_over_tissue(fine)
    d = int(fine.result.downsample)
    blocky = coarse.relevance_rgba(level, col, row)[..., 3]
    detailed = fine_service.relevance_rgba("sample.svs", level, col, row)[..., 3]
    assert detailed.shape == blocky.shape
    # the stored map is constant on d x d blocks of level 0; the tile's own map is not
    (tx, ty), _ = fine.grid.tile_box(level, col, row)  # at full resolution: level-0 pixels
    ix, iy = (-tx) % d, (-ty) % d
    blocks = blocky[iy:iy + 8 * d, ix:ix + 8 * d].reshape(8, d, 8, d)
    fine_blocks = detailed[iy:iy + 8 * d, ix:ix + 8 * d].reshape(8, d, 8, d)
    assert (blocks.max((1, 3)) - blocks.min((1, 3))).max() <= 1
    assert (fine_blocks.max((1, 3)) - fine_blocks.min((1, 3))).max() > 20
    # independent reference: the analysed tile explained as the tile view does, at its centre pixel
    tiles = fine.result.tiles
    t = tiles.iloc[len(tiles) // 2]
    bundle = load_model(model, device="cpu")
    rgb = read_tile_rgb(openslide_of(slides / "sample.svs"), int(t.x0), int(t.y0), int(t.w0), int(t.h0),
                        (bundle.tile_size, bundle.tile_size))
    explainer = TileExplainer(bundle, fine.result.parameter("composite"), fine.result.parameter("output_mode"))
    rel = explainer.explain(torch.from_numpy(rgb.copy())[None], str(t.target))[0][0]
    cx, cy = int(t.x0 + t.w0 / 2), int(t.y0 + t.h0 / 2)  # level-0 centre of the analysed tile
    value = fine_service.relevance_values("sample.svs", level, col, row)[cy - ty, cx - tx]
    scale = t.w0 / bundle.tile_size
    assert value == pytest.approx(rel[int((cy - t.y0) / scale), int((cx - t.x0) / scale)], rel=1e-4, abs=1e-7)


def openslide_of(path):
    import openslide

    return openslide.OpenSlide(str(path))
