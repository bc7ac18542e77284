"""The app's text page offers every text model it finds, the transformer included."""
import re
import shutil
from pathlib import Path

import pytest

from test_text_cli import bert_dir, word_cnn_dir  # noqa: F401  (module fixtures)

PAGES = str(Path(__file__).resolve().parents[1] / "apps" / "views")


def _text_page(pages_dir: str, model_dir: str):
    # runs as a standalone script inside AppTest: imports must be local
    import importlib.util

    import streamlit as st

    spec = importlib.util.spec_from_file_location("text_page", pages_dir + "/text_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.render_text_page(st, model_dir)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, word_cnn_dir, bert_dir):  # noqa: F811
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(word_cnn_dir, root / "text_model")
    shutil.copytree(bert_dir, root / "text_minilm")
    return root


def test_composites_offered_are_those_that_need_no_input_bounds():
    import importlib.util

    from lrp_captum.core.composites import composite_needs_bounds, list_composites

    spec = importlib.util.spec_from_file_location("text_page", PAGES + "/text_page.py")
    page = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(page)
    offered = page.text_composites()
    assert offered == [c for c in list_composites() if not composite_needs_bounds(c)]
    assert "epsilon" in offered and "epsilon_gamma_box" not in offered


def test_page_offers_the_transformer_and_explains_with_it(models_dir):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_text_page, args=(PAGES, str(models_dir)))
    at.run(timeout=180)
    assert not at.exception
    assert at.selectbox[0].options == ["text_minilm", "text_model"]
    at.selectbox[0].set_value("text_minilm").run(timeout=180)
    assert not at.exception and at.metric[0].value == "transformer"
    methods = at.selectbox[1].options
    assert "attention_rollout" in methods and "raw_attention" in methods
    at.selectbox[1].set_value("input_x_gradient")
    at.text_area[0].set_value("I didn't like it.").run(timeout=180)
    assert not at.exception
    html = " ".join(str(h.proto.body) for h in at.get("html"))
    assert "aria-label=\"didn&#x27;t: relevance" in html
    assert "probabilities bad 0." in html and "good 0." in html


def test_word_cnn_is_offered_without_attention_methods(models_dir):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_text_page, args=(PAGES, str(models_dir / "text_model")))
    at.run(timeout=180)
    assert not at.exception
    assert "attention_rollout" not in at.selectbox[0].options
    html = " ".join(str(h.proto.body) for h in at.get("html"))
    assert "colour scale of this text only" in html


def test_page_explains_the_transformer_with_lrp(models_dir):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_text_page, args=(PAGES, str(models_dir)))
    at.run(timeout=180)
    at.selectbox[0].set_value("text_minilm").run(timeout=180)
    assert "lrp" in at.selectbox[1].options
    at.selectbox[1].set_value("lrp").run(timeout=180)
    at.text_area[0].set_value("I didn't like it.").run(timeout=180)
    assert not at.exception
    html = " ".join(str(h.proto.body) for h in at.get("html"))
    assert "aria-label=\"didn&#x27;t: relevance" in html


@pytest.fixture(scope="module")
def renamed_models(tmp_path_factory, word_cnn_dir, bert_dir):  # noqa: F811
    """The word-CNN first in name order, the transformer with what train-demo records."""
    import json

    root = tmp_path_factory.mktemp("renamed")
    shutil.copytree(word_cnn_dir, root / "a_wordcnn")
    shutil.copytree(bert_dir, root / "z_minilm")
    (root / "z_minilm" / "training.json").write_text(json.dumps({
        "test_accuracy": 0.93, "data": {"source": "lrp_captum.demos.text_reviews", "n_test": 800},
        "accuracy_on": [{"file": "reviews_independent.jsonl", "n": 52, "accuracy": 0.885},
                        {"file": "reviews_independent_2.jsonl", "n": 37, "accuracy": 0.865}]}))
    return root


def test_page_shows_the_transformer_first_whatever_the_folder_names(renamed_models):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_text_page, args=(PAGES, str(renamed_models))).run(timeout=180)
    assert not at.exception
    assert at.selectbox[0].options == ["z_minilm", "a_wordcnn"]
    assert at.metric[0].value == "transformer"


def test_page_names_every_accuracy_by_what_it_was_measured_on(renamed_models):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_text_page, args=(PAGES, str(renamed_models))).run(timeout=180)
    # labels are markdown with every value escaped (viewer.escaping): compare the text shown
    shown = {re.sub(r"\\(.)", r"\1", m.label).replace("\u2060", ""): m.value for m in at.metric}
    assert shown["accuracy: held-out split of the generated reviews (800)"] == "0.930"
    assert shown["accuracy: reviews_independent.jsonl (52 texts never trained on)"] == "0.885"
    assert shown["accuracy: reviews_independent_2.jsonl (37 texts never trained on)"] == "0.865"
    assert "held-out accuracy" not in shown  # no figure without what it was measured on


def test_page_shows_where_the_output_went_and_the_warnings(models_dir):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_function(_text_page, args=(PAGES, str(models_dir / "text_minilm"))).run(timeout=180)
    at.text_area[0].set_value("great \u2603 stay").run(timeout=180)  # a snowman: an unknown character
    assert not at.exception
    html = " ".join(str(h.proto.body) for h in at.get("html"))
    assert "position/type embeddings" in html and "biases" in html
    assert any("unknown" in w.value or "[UNK]" in w.value for w in at.warning)


def test_a_model_folder_linked_outside_the_text_model_folder_is_not_offered(word_cnn_dir, tmp_path):  # noqa: F811
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "models"
    root.mkdir()
    (root / "linked").symlink_to(word_cnn_dir, target_is_directory=True)
    at = AppTest.from_function(_text_page, args=(PAGES, str(root))).run(timeout=180)
    assert not at.exception and not at.metric
    assert any("No text model" in i.value for i in at.info)
    assert not [i for i in at.info if str(tmp_path) in i.value]
