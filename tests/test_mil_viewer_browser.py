"""A MIL explanation from TRIDENT features in the app's deep-zoom viewer, in a real headless Chromium:
the evidence as an overlay over the slide, attention as the second map, a click on a tile says
that a features-only run has no pixel maps. Screenshots go to ``test-artifacts/``."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lrp_captum.cli.app import streamlit_command
from lrp_captum.viewer.access_token import new_token
from test_app_fixtures import free_port, serving, viewer_frame
from test_mil_viewer import features_app_folders

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
ARTIFACTS.mkdir(exist_ok=True)
TOKEN = new_token()
SLIDE = "from_features.tif"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("mil_browser")
    slides, results = features_app_folders(root)
    port = free_port()
    env = dict(os.environ, LRP_CAPTUM_APP_SLIDES=str(slides), LRP_CAPTUM_APP_RESULTS=str(results),
               LRP_CAPTUM_APP_TOKEN=TOKEN)
    with serving(streamlit_command(port), port, env, root / "streamlit.log", cwd=REPO):
        yield f"http://127.0.0.1:{port}", results


def _open(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    frame = viewer_frame(page, url, SLIDE, TOKEN)
    frame.wait_for_function("window.lrpViewer.viewer.world.getItemCount() >= 2 && "
                            "window.lrpViewer.viewer.world.getItemAt(1).getFullyLoaded()", timeout=60_000)
    return page, frame


def _pixels(frame) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(frame.locator("#viewer").screenshot())).convert("RGB")).astype(int)


def test_the_evidence_is_an_overlay_over_the_slide_and_attention_the_second_map(browser, app):
    page, frame = _open(browser, app[0])
    options = frame.eval_on_selector_all("#map option", "els => els.map(e => [e.value, e.textContent])")
    assert options == [["relevance", "Evidence"], ["attention", "Attention"]]
    assert "evidence for" in frame.inner_text("#legend-title")
    evidence = _pixels(frame)
    page.screenshot(path=str(ARTIFACTS / "mil_viewer_evidence.png"), full_page=True)
    frame.select_option("#map", "attention")
    frame.wait_for_function("window.lrpViewer.viewer.world.getItemCount() >= 2 && "
                            "window.lrpViewer.viewer.world.getItemAt(1).getFullyLoaded() && "
                            "window.lrpViewer.viewer.world.getItemAt(1).source.getTileUrl(0,0,0).includes('attention')",
                            timeout=60_000)
    page.wait_for_timeout(500)
    attention = _pixels(frame)
    assert "attention" in frame.inner_text("#legend-title")
    assert np.abs(attention - evidence).mean() > 2  # another map over the same slide
    assert frame.evaluate("window.lrpViewer.tilesFailed") == 0
    page.close()


def test_a_click_on_a_tile_shows_its_evidence_and_says_a_features_run_has_no_pixel_map(browser, app):
    page, frame = _open(browser, app[0])
    frame.locator("#viewer").click(position={"x": 700, "y": 500})
    frame.wait_for_function("window.lrpViewer.lastTile !== undefined", timeout=30_000)
    hit = frame.evaluate("window.lrpViewer.lastTile")
    assert hit["tile"] is not None, hit
    row = pd.read_csv(app[1] / "from_features" / "tiles.csv").set_index("tile_index").loc[hit["tile"]]
    assert hit["evidence"] == pytest.approx(row["evidence"], rel=1e-6)
    assert frame.is_visible("#tile-panel") and not frame.is_visible("#tile-img")
    assert f"Tile {hit['tile']}" in frame.inner_text("#tile-text")
    assert "No pixel maps in this run" in frame.inner_text("#tile-note")
    page.screenshot(path=str(ARTIFACTS / "mil_viewer_click.png"), full_page=True)
    assert "No pixel maps" in page.inner_text("body")  # the page below the viewer says it too
    page.close()
