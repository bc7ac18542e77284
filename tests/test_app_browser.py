"""The app in a real headless Chromium (Debian package, driven by Playwright).

Starts ``streamlit run apps/streamlit_app.py`` on localhost with real slides and results, opens
the slide viewer and checks what a user sees. Screenshots go to ``test-artifacts/``.
Needs: ``apt-get install -y chromium`` and ``scripts/fetch_openseadragon.sh``.
"""
from __future__ import annotations

import io
import os
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lrp_captum.cli.app import streamlit_command
from lrp_captum.viewer.access_token import new_token
from test_app_fixtures import (CHROMIUM, CHROMIUM_ARGS, free_port, make_fixture_dirs, viewer_frame,
                               write_fixture_result, write_fixture_slide)

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
ARTIFACTS.mkdir(exist_ok=True)
HOSTILE = "x</script><script>alert(document.domain)</script>.svs"  # three nested folders on disk
TOKEN = new_token()  # as `lrp-captum app` draws one


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    slides, results = make_fixture_dirs(tmp_path_factory.mktemp("browser"))
    (slides / HOSTILE).parent.mkdir(parents=True)
    write_fixture_slide(slides / HOSTILE, 1024, 768)
    # explained, then the slide file was written again: same size and dimensions, other time
    changed = write_fixture_slide(slides / "changed.tif", 1024, 768)
    write_fixture_result(results / "changed", 1024, 768, slide=changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    port = free_port()
    env = dict(os.environ, LRP_CAPTUM_APP_SLIDES=str(slides), LRP_CAPTUM_APP_RESULTS=str(results),
               LRP_CAPTUM_APP_TOKEN=TOKEN)
    log = open(tmp_path_factory.mktemp("log") / "streamlit.log", "w")
    proc = subprocess.Popen(streamlit_command(port), env=env, cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "streamlit exited early"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def open_viewer(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    frame = viewer_frame(page, url, "case_0.tif", TOKEN)
    frame.wait_for_function("window.lrpViewer && window.lrpViewer.ready && window.lrpViewer.tilesLoaded >= 4"
                            " && window.lrpViewer.viewer.world.getItemCount() >= 2", timeout=60_000)
    # wait until every visible tile has been drawn
    frame.wait_for_function("window.lrpViewer.viewer.world.getItemAt(0).getFullyLoaded() && "
                            "window.lrpViewer.viewer.world.getItemAt(1).getFullyLoaded()", timeout=60_000)
    return page, frame


def viewer_pixels(frame) -> np.ndarray:
    png = frame.locator("#viewer").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def red_fraction(px: np.ndarray) -> float:
    return float(((px[..., 0] - px[..., 2]) > 80).mean())


def test_viewer_renders_slide_and_overlay_tiles(browser, app_url):
    page, frame = open_viewer(browser, app_url)
    page.screenshot(path=str(ARTIFACTS / "app_slide_viewer.png"), full_page=True)
    px = viewer_pixels(frame)
    assert px.std() > 10                           # not a blank canvas
    assert red_fraction(px) > 0.01                 # positive relevance (red) is drawn
    # negative relevance too, in the slides' cyan (green and blue well above red; not H&E blue)
    assert (((px[..., 1] - px[..., 0]) > 60) & ((px[..., 2] - px[..., 0]) > 60)).mean() > 0.01
    assert frame.evaluate("window.lrpViewer.tilesFailed") == 0
    page.close()


def test_opacity_change_fades_overlay_and_keeps_the_view(browser, app_url):
    page, frame = open_viewer(browser, app_url)
    frame.evaluate("(() => { const v = window.lrpViewer.viewer.viewport; v.zoomTo(v.getZoom() * 2.5, null, true); })()")
    frame.wait_for_function("window.lrpViewer.viewer.world.getItemAt(1).getFullyLoaded()", timeout=30_000)
    page.wait_for_timeout(500)
    zoom_before = frame.evaluate("window.lrpViewer.viewer.viewport.getZoom(true)")
    before = red_fraction(viewer_pixels(frame))
    frame.locator("#opacity").fill("5")
    page.wait_for_timeout(500)
    after = red_fraction(viewer_pixels(frame))
    page.screenshot(path=str(ARTIFACTS / "app_opacity_low.png"), full_page=True)
    assert frame.evaluate("window.lrpViewer.viewer.world.getItemAt(1).getOpacity()") == pytest.approx(0.05)
    assert after < before / 3
    assert frame.evaluate("window.lrpViewer.viewer.viewport.getZoom(true)") == pytest.approx(zoom_before)
    # switching the sign and the map replaces the overlay layer without touching zoom/pan
    frame.locator("input[name=sign][value=positive]").check()
    frame.locator("#map").select_option("probability")
    page.wait_for_timeout(500)
    assert frame.evaluate("window.lrpViewer.viewer.viewport.getZoom(true)") == pytest.approx(zoom_before)
    # quick successive switches leave exactly one overlay layer above the slide
    frame.locator("#map").select_option("relevance")
    frame.evaluate("""() => { for (const v of ["negative", "both", "positive", "both"]) {
        const el = document.querySelector(`input[name=sign][value=${v}]`);
        el.checked = true; el.dispatchEvent(new Event("change")); } }""")  # faster than layers open
    page.wait_for_timeout(1500)
    assert frame.evaluate("window.lrpViewer.viewer.world.getItemCount()") == 2
    page.close()


def test_reloading_the_page_keeps_view_and_display_settings(browser, app_url):
    page, frame = open_viewer(browser, app_url)
    frame.evaluate("(() => { const v = window.lrpViewer.viewer.viewport; v.zoomTo(v.getZoom() * 3, null, true); })()")
    frame.locator("#opacity").fill("30")
    frame.locator("input[name=sign][value=negative]").check()
    page.wait_for_timeout(1000)  # the view is saved when the zoom animation finishes
    zoom = frame.evaluate("window.lrpViewer.viewer.viewport.getZoom(true)")
    page.reload()
    page.wait_for_selector("iframe", timeout=60_000)
    page.wait_for_timeout(500)
    frame = next(f for f in page.frames if "/viewer" in f.url)
    frame.wait_for_function("window.lrpViewer && window.lrpViewer.ready", timeout=60_000)
    assert frame.evaluate("window.lrpViewer.viewer.viewport.getZoom(true)") == pytest.approx(zoom, rel=1e-3)
    assert frame.locator("#opacity").input_value() == "30"
    assert frame.locator("input[name=sign][value=negative]").is_checked()
    page.close()


def test_opening_a_top_tile_shows_its_heatmap_without_reloading_the_viewer(browser, app_url):
    page, frame = open_viewer(browser, app_url)
    frame.evaluate("window.__sameDocument = true")
    page.locator("[class*='st-key-open_pos_'] button").first.click()
    page.get_by_text("Tile at level-0").wait_for(timeout=60_000)
    caption = page.get_by_text("Relevance (", exact=False).first
    caption.wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "app_tile_view.png"), full_page=True)
    frame = next(f for f in page.frames if "/viewer" in f.url)
    assert frame.evaluate("window.__sameDocument === true")  # hash navigation, not a reload
    assert "#tile=" in frame.url
    # the tile heatmap image is rendered with visible red (positive tile) pixels
    imgs = page.locator("[data-testid=stImage] img")
    sizes = [imgs.nth(i).bounding_box() for i in range(imgs.count())]
    assert len(sizes) >= 14
    heatmap = imgs.nth(imgs.count() - 2).screenshot()  # tile, heatmap, blend are the last three
    px = np.asarray(Image.open(io.BytesIO(heatmap)).convert("RGB")).astype(int)
    assert red_fraction(px) > 0.5
    # closing the tile view reruns the Streamlit script; the viewer must not reload
    zoom = frame.evaluate("window.lrpViewer.viewer.viewport.getZoom(true)")
    page.locator(".st-key-close_tile button").click()
    page.get_by_text("Tile at level-0").wait_for(state="detached", timeout=60_000)
    page.wait_for_timeout(500)
    assert frame.evaluate("window.__sameDocument === true")
    assert frame.evaluate("window.lrpViewer.viewer.viewport.getZoom(true)") == pytest.approx(zoom)
    page.close()


def test_a_hostile_slide_name_runs_no_script_and_is_shown_as_text(browser, app_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    frame = viewer_frame(page, app_url, HOSTILE, TOKEN)
    page.get_by_text(HOSTILE + " · result folder", exact=False).wait_for(timeout=30_000)
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ARTIFACTS / "app_hostile_name.png"), full_page=True)
    assert frame.evaluate("window.LRP_SLIDE") == HOSTILE           # the name arrived intact, as data
    assert frame.evaluate("window.lrpViewer.tilesLoaded") > 0 and frame.evaluate("window.lrpViewer.tilesFailed") == 0
    assert dialogs == []
    frame.evaluate("alert('control')")                               # the listener does see a script's alert
    assert dialogs == ["control"]
    page.close()


def test_viewer_warns_when_the_slide_was_modified_after_its_result(browser, app_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    frame = viewer_frame(page, app_url, "changed.tif", TOKEN)
    frame.wait_for_function("window.lrpViewer.viewer.world.getItemCount() >= 2", timeout=60_000)
    banner = frame.locator("#message")
    assert banner.is_visible() and "modified after its result was made" in banner.inner_text()
    assert page.get_by_text("modified after its result was made", exact=False).count() >= 1  # the page says it too
    page.close()
