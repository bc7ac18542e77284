"""Page logic of the Streamlit app with Streamlit's AppTest (no browser): selection, controls,
error states, path safety. Real slides (OpenSlide) and real result folders (zarr, CSV)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from test_app_fixtures import make_fixture_dirs, visible

APP = str(Path(__file__).resolve().parents[1] / "apps" / "streamlit_app.py")


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    slides, results = make_fixture_dirs(tmp_path, n_explained=2, n_plain=1)
    monkeypatch.setenv("LRP_CAPTUM_APP_SLIDES", str(slides))
    monkeypatch.setenv("LRP_CAPTUM_APP_RESULTS", str(results))
    for var in ("LRP_CAPTUM_APP_MODEL", "LRP_CAPTUM_APP_EEG_RESULTS", "LRP_CAPTUM_APP_TEXT_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return slides, results


def run_app(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def texts(elements) -> list[str]:
    """What the reader sees of each element (markdown rendered)."""
    return [visible(e.value) for e in elements]


def viewer_src(at) -> str:
    frames = at.get("iframe")
    return frames[0].proto.src if frames else ""


def test_lists_slides_with_their_result_status(dirs):
    at = run_app()
    box = at.selectbox(key="slide")
    assert box.options == ["case_0.tif — explained", "case_1.tif — explained", "new_0.tif — not explained"]
    assert box.value == "case_0.tif" and not at.exception


def test_explained_slide_shows_viewer_summary_and_gallery(dirs):
    at = run_app()
    assert viewer_src(at).endswith("/viewer?slide=case_0.tif#view")
    assert "Most relevant tiles" in texts(at.subheader)
    import pandas as pd

    tiles = pd.read_csv(dirs[1] / "case_0" / "tiles.csv")
    share = (tiles["prediction"] == "positive").mean()
    assert [m.value for m in at.metric] == [str(len(tiles)), f"{share:.0%}"]
    assert sum(b.label == "Open" for b in at.button) == 12  # 6 most positive + 6 most negative


def test_selecting_a_slide_updates_viewer_and_url(dirs):
    at = run_app()
    at.selectbox(key="slide").select_index(1).run()
    assert "slide=case_1.tif" in viewer_src(at)
    assert at.query_params["slide"] == ["case_1.tif"] or at.query_params["slide"] == "case_1.tif"


def test_url_query_selects_the_slide(dirs):
    at = run_app({"slide": "case_1.tif"})
    assert at.selectbox(key="slide").value == "case_1.tif"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "..\\case_0.tif", "sub/../../x.tif"])
def test_traversal_in_url_is_refused_with_a_message(dirs, bad):
    at = run_app({"slide": bad})
    assert any("Refused slide path" in e for e in texts(at.error))
    assert at.selectbox(key="slide").value == "case_0.tif"
    assert not at.exception


def test_unknown_slide_in_url_is_reported(dirs):
    at = run_app({"slide": "nope.svs"})
    assert any("No slide 'nope.svs'" in e for e in texts(at.error))


def test_slide_without_result_offers_explanation_and_asks_for_a_model(dirs):
    at = run_app({"slide": "new_0.tif"})
    assert "Explain this slide" in texts(at.subheader)
    assert any("--model" in w for w in texts(at.warning))
    assert "Most relevant tiles" not in texts(at.subheader)


def test_corrupt_manifest_shows_clear_error_not_a_traceback(dirs):
    _, results = dirs
    (results / "case_0" / "manifest.json").write_text("{broken")
    at = run_app()
    assert not at.exception
    assert any("manifest.json" in e for e in texts(at.error))
    assert "Explain this slide" in texts(at.subheader)


def test_corrupt_zarr_shows_clear_error_naming_the_file(dirs):
    _, results = dirs
    (results / "case_1" / "relevance.zarr" / "zarr.json").write_text("not json")
    at = run_app({"slide": "case_1.tif"})
    assert not at.exception
    assert any("relevance.zarr" in e and "re-run" in e.lower() for e in texts(at.error))


def test_missing_tiles_table_is_reported_as_corrupt(dirs):
    _, results = dirs
    (results / "case_0" / "tiles.csv").unlink()
    at = run_app()
    assert at.selectbox(key="slide").options[0] == "case_0.tif — corrupt"
    assert any("tiles.csv" in e for e in texts(at.error))


def test_opening_a_gallery_tile_shows_tile_view_and_moves_viewer(dirs):
    at = run_app()
    at.button(key=next(b.key for b in at.button if b.key and b.key.startswith("open_pos_"))).click().run()
    heads = texts(at.subheader)
    assert any(h.startswith("Tile at level-0") for h in heads)
    assert "#tile=" in viewer_src(at)
    assert len(at.image) >= 12 + 2  # gallery thumbnails + tile + heatmap
    at.button(key="close_tile").click().run()
    assert not any(h.startswith("Tile at level-0") for h in texts(at.subheader))


def test_tile_view_without_model_falls_back_to_stored_map_and_says_why(dirs):
    at = run_app()
    at.button(key=next(b.key for b in at.button if b.key and b.key.startswith("open_neg_"))).click().run()
    assert any("--model" in w for w in texts(at.warning))
    assert any("stored map" in (img.proto.imgs[0].caption if img.proto.imgs else "") for img in at.image)


def test_two_sessions_keep_their_own_selection(dirs):
    a, b = run_app(), run_app()
    b.selectbox(key="slide").select_index(2).run()
    a.run()
    assert a.selectbox(key="slide").value == "case_0.tif"
    assert b.selectbox(key="slide").value == "new_0.tif"


def test_missing_configuration_is_explained(monkeypatch):
    monkeypatch.delenv("LRP_CAPTUM_APP_SLIDES", raising=False)
    at = run_app()
    assert any("--slides" in e for e in texts(at.error)) and not at.exception


def test_nonexistent_slides_folder_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("LRP_CAPTUM_APP_SLIDES", str(tmp_path / "nope"))
    monkeypatch.setenv("LRP_CAPTUM_APP_RESULTS", str(tmp_path / "r"))
    at = run_app()
    assert any("does not exist" in e for e in texts(at.error))


def test_empty_slides_folder_says_how_to_get_slides(tmp_path, monkeypatch):
    (tmp_path / "s").mkdir()
    monkeypatch.setenv("LRP_CAPTUM_APP_SLIDES", str(tmp_path / "s"))
    monkeypatch.setenv("LRP_CAPTUM_APP_RESULTS", str(tmp_path / "r"))
    at = run_app()
    assert any("lrp-captum slide sample" in i for i in texts(at.info))


# --- optional EEG / text pages -----------------------------------------------------------------------
def _optional(apps_dir: str, pages_dir: str, arg):
    # runs as a standalone script inside AppTest: imports must be local
    import sys
    from pathlib import Path

    import streamlit as st

    sys.path.insert(0, apps_dir)
    from views.optional_pages import render_optional_page

    render_optional_page(st, "eeg_page", "render_eeg_page", "EEG", arg, "--eeg-results", Path(pages_dir))


def test_missing_optional_page_shows_a_message(tmp_path):
    at = AppTest.from_function(_optional, args=(str(Path(APP).parent), str(tmp_path), "x")).run()
    assert any("not part of this installation" in i for i in texts(at.info)) and not at.exception


def test_optional_page_is_rendered_with_its_folder(tmp_path):
    (tmp_path / "eeg_page.py").write_text("def render_eeg_page(st, d):\n    st.write('EEG from ' + str(d))\n")
    at = AppTest.from_function(_optional, args=(str(Path(APP).parent), str(tmp_path), "/data/eeg")).run()
    assert "EEG from /data/eeg" in texts(at.markdown)


def test_failing_optional_page_shows_error_not_traceback(tmp_path):
    (tmp_path / "eeg_page.py").write_text("def render_eeg_page(st, d):\n    raise RuntimeError('boom')\n")
    at = AppTest.from_function(_optional, args=(str(Path(APP).parent), str(tmp_path), "x")).run()
    assert any("boom" in e for e in texts(at.error)) and not at.exception


@pytest.mark.timeout(120)
def test_a_tiny_map_claiming_a_million_pixels_square_is_refused_on_the_page(dirs):
    import json
    import shutil

    import zarr

    _, results = dirs
    rdir = results / "case_0"
    shutil.rmtree(rdir / "relevance.zarr")
    zarr.open_group(str(rdir / "relevance.zarr"), mode="w").create_array(
        "relevance", shape=(10**6, 10**6), chunks=(10**5, 10**5), dtype="float32")
    manifest = json.loads((rdir / "manifest.json").read_text())
    del manifest["vmax"]
    (rdir / "manifest.json").write_text(json.dumps(manifest))
    at = run_app({"slide": "case_0.tif"})
    assert not at.exception
    assert any("relevance.zarr" in e and "1000000" in e for e in texts(at.error))
    assert "Most relevant tiles" not in [s.value for s in at.subheader]
