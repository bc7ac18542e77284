"""The app's MIL page shows a finished explain-mil folder with Streamlit's AppTest (no browser)."""
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from lrp_captum.demos.mil_cohort import read_cohort
from lrp_captum.wsi.mil.encoders import build_encoder
from lrp_captum.wsi.mil.explain import explain_mil_slide
from lrp_captum.wsi.mil.head_files import save_head
from lrp_captum.wsi.mil.heads import make_head
from lrp_captum.wsi.mil.results import find_mil_explanations, read_mil_explanation
from test_mil_support import mil_cohort, tiny_spec  # noqa: F401 -- fixture

PAGES = Path(__file__).resolve().parents[1] / "apps" / "views"


@pytest.fixture(scope="module")
def results(mil_cohort, tmp_path_factory):
    root = tmp_path_factory.mktemp("mil_results")
    enc = build_encoder(tiny_spec())
    torch.manual_seed(0)
    head = save_head(make_head("abmil", enc.dim).eval(), root / "head", name="abmil",
                     classes=["negative", "lesion"], encoder=enc)
    slide = next(e.slide for e in read_cohort(mil_cohort) if e.label == 1)
    explain_mil_slide(slide, head, root / "out" / "gradient", method="gradient", top_tiles=3,
                      embeddings_dir=root / "emb", quiet=True)
    explain_mil_slide(slide, head, root / "out" / "single", method="single", embeddings_dir=root / "emb", quiet=True)
    return root / "out"


def _page(pages_dir: str, results_dir: str):
    # runs as a standalone script inside AppTest: imports must be local
    import importlib.util

    import streamlit as st

    spec = importlib.util.spec_from_file_location("mil_page", pages_dir + "/mil_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.render_mil_page(st, results_dir)


def test_explanations_are_found_and_read_back(results):
    assert find_mil_explanations(results) == [results / "gradient", results / "single"]
    ex = read_mil_explanation(results / "gradient")
    assert ex.evidence_map.ndim == 2 and len(ex.tile_maps) == 3
    assert ex.pixel_map(int(ex.tile_maps_index[0])).shape == (128, 128)
    assert ex.pixel_map(10_000) is None


def test_page_shows_prediction_evidence_map_and_a_tile_pixel_map(results):
    at = AppTest.from_function(_page, args=(str(PAGES), str(results)), default_timeout=120).run()
    assert not at.exception
    assert at.selectbox(key="mil_result").options == ["gradient", "single"]
    assert [m.label for m in at.metric] == ["prediction", "probability", "tiles"]
    assert len(at.selectbox(key="mil_tile").options) == 3
    assert "Tile pixel map" in [s.value for s in at.subheader]


def test_page_says_when_a_method_has_no_pixel_maps(results):
    at = AppTest.from_function(_page, args=(str(PAGES), str(results)), default_timeout=120).run()
    at.selectbox(key="mil_result").select("single").run()
    assert not at.exception and any("one number per tile" in i.value for i in at.info)


def test_page_without_explanations_says_how_to_make_them(tmp_path):
    at = AppTest.from_function(_page, args=(str(PAGES), str(tmp_path))).run()
    assert any("lrp-captum slide explain-mil" in i.value for i in at.info)


@pytest.fixture
def linked(results, tmp_path):
    """A copy of the gradient explanation in a fresh results folder, and a place outside it."""
    import shutil

    root = tmp_path / "results"
    shutil.copytree(results / "gradient", root / "mil2")
    return root, tmp_path / "elsewhere"


@pytest.mark.parametrize("name", ["evidence.zarr", "tiles.csv"])
def test_a_file_of_an_explanation_linked_outside_the_results_folder_is_refused(linked, name):
    root, elsewhere = linked
    elsewhere.mkdir()
    (root / "mil2" / name).rename(elsewhere / name)
    (root / "mil2" / name).symlink_to(elsewhere / name)
    at = AppTest.from_function(_page, args=(str(PAGES), str(root)), default_timeout=120).run()
    assert not at.exception and not at.metric
    assert any("outside the results folder" in e.value for e in at.error)


def test_an_explanation_whose_manifest_is_linked_outside_is_not_offered(linked):
    root, elsewhere = linked
    elsewhere.mkdir()
    (root / "mil2" / "manifest.json").rename(elsewhere / "manifest.json")
    (root / "mil2" / "manifest.json").symlink_to(elsewhere / "manifest.json")
    at = AppTest.from_function(_page, args=(str(PAGES), str(root)), default_timeout=120).run()
    assert not at.exception and not at.metric and not at.selectbox


def test_mil_page_messages_carry_no_absolute_path(linked, tmp_path):
    import shutil

    root, _ = linked
    shutil.rmtree(root / "mil2" / "evidence.zarr")  # damaged: its manifest is still there
    shown = [e.value for e in AppTest.from_function(_page, args=(str(PAGES), str(root)), default_timeout=120).run().error]
    empty = tmp_path / "empty"
    empty.mkdir()
    shown += [i.value for i in AppTest.from_function(_page, args=(str(PAGES), str(empty))).run().info]
    assert len(shown) == 2 and not [s for s in shown if str(tmp_path) in s]


def test_page_says_a_run_from_features_has_no_pixel_maps_and_where_it_is_shown_over_the_slide(tmp_path):
    from test_mil_viewer import features_app_folders

    _, results = features_app_folders(tmp_path)
    at = AppTest.from_function(_page, args=(str(PAGES), str(results)), default_timeout=120).run()
    assert not at.exception
    assert any("TRIDENT/CLAM features" in i.value and "no tile encoder" in i.value for i in at.info)
    assert any("slide viewer" in c.value for c in at.caption)


def test_page_shows_how_the_explanation_adds_up_as_the_manifest_says(results):
    sums = json.loads((results / "gradient" / "manifest.json").read_text())["sums"]
    at = AppTest.from_function(_page, args=(str(PAGES), str(results)), default_timeout=120).run()
    assert not at.exception
    shown = " ".join(c.value for c in at.caption)
    assert f"Σ tile evidence {sums['evidence_sum']:+.4g}" in shown
    assert f"target logit {sums['target_logit']:+.4g}" in shown
    off = sums["pixel_maps_off_by_more_than_1_percent"]
    assert f"{3 - off} of 3 pixel maps sum to their tile's evidence within 1 %" in shown
    table = at.dataframe[0].value
    assert {"pixel_map_sum", "pixel_map_to_evidence"} <= set(table.columns)
    tiles = pd.read_csv(results / "gradient" / "tiles.csv")
    first = int(at.selectbox(key="mil_tile").value)
    ratio = float(tiles.loc[tiles["tile_index"] == first, "pixel_map_to_evidence"].iloc[0])
    assert f"{ratio:.4f} × its evidence" in shown
