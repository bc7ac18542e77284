"""Every page of the app with a hostile value in every field it shows, in a real headless Chromium.

Class names, run parameters, methods, slide and folder names come from files that anyone who can
write to the folders chose. Each field here holds markdown that Streamlit would render (an image
from another host, a phishing link, colour, an icon, LaTeX, an autolink): every page must show
it as typed, fetch nothing from that host and render none of it. Real outputs of the pipelines
(a slide result, an explain-mil folder, EEG relevance, a cohort table, a word-CNN) with their
fields rewritten. Needs: ``apt-get install -y chromium`` and OpenSeadragon.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from test_app_fixtures import free_port, make_fixture_dirs, printed_token, serving
from test_eeg_app_page import results as eeg_results  # noqa: F401 -- fixture
from test_mil_app_page import results as mil_results  # noqa: F401 -- fixture
from test_mil_support import mil_cohort  # noqa: F401 -- fixture

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]


def hostile(field: str) -> str:
    """A value for ``field`` that renders as markup unless escaped (no "/": it may be a file name)."""
    return (f"{field} ![x](http:evil.example) [login](https:evil.example) :red[{field}] :material_home: "
            f"$x^2$ www.evil.example")


SLIDE_FIELDS = ("class", "composite", "target", "output mode")
MIL_FIELDS = ("mil method", "mil target", "mil prediction", "mil slide")
EEG_FIELDS = ("eeg composite", "eeg target", "eeg figures")
TEXT_FIELDS = ("text class",)
COHORT_FIELDS = ("cohort folder",)
# markup in the page's own content that no value may bring: an image or link to the hostile host,
# a formula, colour or badge, an icon inside rendered text
MARKUP = ("[data-testid=stMain] a[href*='evil'], [data-testid=stMain] img[src*='evil'], "
          "[data-testid=stMain] .katex, .stMarkdownColoredText, .stMarkdownBadge, "
          "[data-testid=stMarkdownContainer] [data-testid=stIconMaterial]")


@pytest.fixture(scope="module")
def app(tmp_path_factory, mil_results, eeg_results):  # noqa: F811
    root = tmp_path_factory.mktemp("hostile_pages")
    slides, results = make_fixture_dirs(root, n_plain=0)
    manifest_path = results / "case_0" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["model"]["classes"] = ["negative", hostile("class")]
    manifest["parameters"] = {"composite": hostile("composite"), "target": hostile("target"),
                              "output_mode": hostile("output mode")}
    manifest_path.write_text(json.dumps(manifest))

    mil = results / "mil_hostile"
    shutil.copytree(mil_results / "gradient", mil)
    m = json.loads((mil / "manifest.json").read_text())
    m.update(method=hostile("mil method"))
    m["target"]["class_name"] = hostile("mil target")
    m["prediction"]["class_name"] = hostile("mil prediction")
    m["slide"]["path"] = str(root / (hostile("mil slide") + ".tif"))
    (mil / "manifest.json").write_text(json.dumps(m))

    from lrp_captum.cohort import SlideSpec
    from lrp_captum.cohort.table import cohort_table, write_cohort_table

    cohort = results / hostile("cohort folder")
    records = {"case_0": dict(status="done", error="", prediction=hostile("cohort prediction"), n_tiles=10, key="k")}
    write_cohort_table(cohort, cohort_table([SlideSpec("case_0", slides / "case_0.tif", hostile("cohort label"))],
                                            records))

    eeg = root / "eeg"
    shutil.copytree(eeg_results / "erp", eeg / "erp")
    (eeg / "erp" / "summary.json").write_text(json.dumps(
        {"composite": hostile("eeg composite"), "target": hostile("eeg target"),
         "figures_of": hostile("eeg figures"), "held_out_accuracy": 0.9}))

    import torch

    from lrp_captum.text.embeddings import load_word_embeddings
    from lrp_captum.text.model_folders import save_word_cnn
    from lrp_captum.text.models import WordCNN

    torch.manual_seed(0)
    save_word_cnn(WordCNN(n_filters=4, embedding_weights=load_word_embeddings()), root / "text",
                  {"class_names": ["negative", hostile("text class")]})

    port = free_port()
    cmd = [sys.executable, "-m", "lrp_captum.cli", "app", "--slides", str(slides), "--results", str(results),
           "--eeg-results", str(eeg), "--text-model", str(root / "text"), "--port", str(port)]
    with serving(cmd, port, dict(os.environ), root / "app.log", cwd=REPO):
        yield f"http://127.0.0.1:{port}", printed_token(root / "app.log")


def visit(browser, app, path: str, ready: str, fields) -> tuple[str, list, list]:
    """``(text of the page's main area, markup found, requests to the hostile host)`` of one page,
    once every field's value is shown (or after 60 s)."""
    url, token = app
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    asked = []
    page.on("request", lambda r: asked.append(r.url) if "evil" in r.url else None)
    page.goto(f"{url}{path}{'&' if '?' in path else '?'}token={token}", timeout=60_000)
    page.get_by_text(ready, exact=False).first.wait_for(timeout=120_000)
    deadline = time.monotonic() + 60
    while True:
        page.wait_for_timeout(1000)
        text = " ".join(page.locator("[data-testid=stMain]").inner_text().replace("\u2060", "").split())
        if all(hostile(f) in text for f in fields) or time.monotonic() > deadline:
            break
    markup = page.evaluate("sel => [...document.querySelectorAll(sel)].map(x => x.outerHTML.slice(0, 120))", MARKUP)
    page.close()
    return text, markup, asked


@pytest.mark.parametrize("path, ready, fields", [
    ("/?slide=case_0.tif", "Most relevant tiles", SLIDE_FIELDS),
    ("/mil", "Tile pixel map", MIL_FIELDS),
    ("/eeg", "Class averages", EEG_FIELDS),
    ("/text", "Word relevance", TEXT_FIELDS),
    ("/cohort", "shown · table", COHORT_FIELDS),  # "1 of 1 slide shown · table: ..."
], ids=["slides", "mil", "eeg", "text", "cohort"])
def test_each_page_shows_hostile_values_as_typed_and_renders_none_of_them(browser, app, path, ready, fields):
    text, markup, asked = visit(browser, app, path, ready, fields)
    assert markup == [] and asked == []
    for field in fields:
        assert hostile(field) in text, field
