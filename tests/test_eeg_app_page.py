"""The app's EEG page renders saved relevance with Streamlit's AppTest (no browser)."""
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from lrp_captum.eeg.explain import explain_epochs, find_relevance_folders, load_relevance
from lrp_captum.eeg.models import build_model
from lrp_captum.demos.eeg_simulation import simulate_epochs
from lrp_captum.eeg.model_folder import EEGModelConfig

PAGES = Path(__file__).resolve().parents[1] / "apps" / "views"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    epochs = simulate_epochs("erp", n_epochs=10, seed=2)
    torch.manual_seed(0)
    model = build_model("eegnet", 28, 100).eval()
    model.eeg_config = EEGModelConfig("eegnet", list(epochs.ch_names), 100.0, 100, -0.2,
                                      ["non_target", "target"])
    root = tmp_path_factory.mktemp("eeg_results")
    explain_epochs(model, epochs, composite="epsilon", device="cpu").save(root / "erp")
    return root


def _page(pages_dir: str, results_dir: str):
    # runs as a standalone script inside AppTest: imports must be local
    import importlib.util

    import streamlit as st

    spec = importlib.util.spec_from_file_location("eeg_page", pages_dir + "/eeg_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.render_eeg_page(st, results_dir)


def test_saved_relevance_is_found_and_read_back(results):
    assert find_relevance_folders(results) == [results / "erp"]
    epochs, evokeds, summary = load_relevance(results / "erp")
    assert len(epochs) == 10 and set(evokeds) == {"non_target", "target"} and summary == {}


def test_page_shows_class_averages_topomaps_and_a_trial(results):
    at = AppTest.from_function(_page, args=(str(PAGES), str(results)), default_timeout=120).run()
    assert not at.exception
    assert [s.value for s in at.subheader] == ["Class averages", "Topomaps", "Single trial"]
    assert at.selectbox[0].value == "erp"
    assert at.metric[0].value == "10"


def test_page_without_results_says_how_to_make_them(tmp_path):
    at = AppTest.from_function(_page, args=(str(PAGES), str(tmp_path))).run()
    assert any("lrp-captum eeg explain" in i.value for i in at.info)


def test_page_for_a_missing_results_folder_says_so(tmp_path):
    missing = tmp_path / "not-there"
    at = AppTest.from_function(_page, args=(str(PAGES), str(missing))).run()
    assert not at.exception
    assert any("No EEG results folder" in i.value for i in at.info)


def test_page_labels_accuracy_by_split_and_warns_at_chance_level(results, tmp_path):
    import json
    import shutil

    folder = tmp_path / "weak"
    shutil.copytree(results / "erp", folder)
    (folder / "summary.json").write_text(json.dumps(
        {"held_out_accuracy": 0.45, "n_held_out": 10, "at_chance": True,
         "figures_of": "10 held-out epochs", "composite": "epsilon", "target": "predicted"}))
    at = AppTest.from_function(_page, args=(str(PAGES), str(tmp_path)), default_timeout=120).run()
    assert not at.exception
    assert at.metric[1].label == "held-out accuracy" and at.metric[1].value == "0.450"
    assert any("chance level" in w.value for w in at.warning)
    assert any("10 held-out epochs" in c.value for c in at.caption)


def test_a_relevance_file_linked_outside_the_eeg_folder_is_refused(results, tmp_path):
    import shutil

    root, elsewhere = tmp_path / "eeg", tmp_path / "elsewhere"
    shutil.copytree(results / "erp", root / "erp")
    elsewhere.mkdir()
    (root / "erp" / "relevance-epo.fif").rename(elsewhere / "relevance-epo.fif")
    (root / "erp" / "relevance-epo.fif").symlink_to(elsewhere / "relevance-epo.fif")
    at = AppTest.from_function(_page, args=(str(PAGES), str(root)), default_timeout=120).run()
    assert not at.exception and not at.subheader
    assert any("outside the EEG results folder" in e.value for e in at.error)


def test_eeg_page_messages_carry_no_absolute_path(tmp_path):
    shown = []
    for folder in (tmp_path / "missing", tmp_path):
        shown += [i.value for i in AppTest.from_function(_page, args=(str(PAGES), str(folder))).run().info]
    assert len(shown) == 2 and not [s for s in shown if str(tmp_path) in s]
