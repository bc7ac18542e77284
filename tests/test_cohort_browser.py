"""The cohort page in a real headless Chromium: from the cohort table to a slide in the viewer.

Starts ``lrp-captum app`` on real slides and result folders with a cohort
table (written by the cohort's table writer) in the results folder.
Needs: ``apt-get install -y chromium`` and ``scripts/fetch_openseadragon.sh``.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lrp_captum.cohort import SlideSpec
from lrp_captum.cohort.table import cohort_table, write_cohort_table
from test_app_fixtures import free_port, make_fixture_dirs, printed_token

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]


LOGIN = {}  # the token `lrp-captum app` printed


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort_browser")
    slides, results = make_fixture_dirs(root, n_explained=2, n_plain=0)
    records = {f"case_{i}": dict(status="done", error="", prediction="positive", n_tiles=10, key="k")
               for i in range(2)}
    write_cohort_table(results, cohort_table([SlideSpec(f"case_{i}", slides / f"case_{i}.tif") for i in range(2)],
                                             records))
    port = free_port()
    # as a user starts it: `lrp-captum app`, which runs Streamlit as its child and stops it on SIGTERM
    log = open(root / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "lrp_captum.cli", "app", "--slides", str(slides), "--results",
                             str(results), "--port", str(port)], cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        LOGIN["token"] = printed_token(root / "app.log")  # printed once the app answers
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=40)
        log.close()


def test_open_in_viewer_shows_the_chosen_cohort_slide(app_url, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(app_url + "/?token=" + LOGIN["token"], timeout=60_000)
    # the app's own navigation replaces Streamlit's file-based one once its script has run
    page.wait_for_selector("text=Slide relevance viewer", timeout=60_000)
    page.get_by_role("link", name="Cohort", exact=True).click()
    page.wait_for_selector("text=Open a slide in the viewer", timeout=60_000)
    page.get_by_test_id("stSelectbox").filter(has_text="Open a slide").click()
    page.get_by_role("option", name="case_1").click()
    page.wait_for_timeout(1000)  # the button's link follows the rerun
    with context.expect_page(timeout=30_000) as opened:
        page.get_by_text("Open in viewer").click()
    viewer = opened.value
    viewer.wait_for_load_state()
    assert viewer.url == app_url + "/?slide=case_1.tif"
    viewer.wait_for_selector("iframe", timeout=60_000)
    assert viewer.get_by_text("case_1.tif · result folder: case_1/ · status: explained").count() == 1
    assert viewer.get_by_text("Page not found").count() == 0
    context.close()
