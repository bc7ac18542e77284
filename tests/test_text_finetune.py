"""The MiniLM demo classifier: frozen bottom computed once, top layers trained, folder cached."""
import json

import pytest
import torch

from lrp_captum.demos.text_minilm import (TRAINING_FILE, cached_model, default_settings,
                                          freeze_below, frozen_states, top_logits,
                                          train_minilm_demo)

TINY = {"n_examples": 40, "epochs": 1, "train_layers": 1, "batch_size": 16, "max_length": 24}


@pytest.fixture(scope="module")
def minilm():
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lrp_captum.text.embeddings import minilm_model_dir

    source = str(minilm_model_dir())
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2).eval()
    return model, AutoTokenizer.from_pretrained(source)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "minilm"
    model, tokenizer, report = train_minilm_demo(out, **TINY)
    return out, model, tokenizer, report


@pytest.mark.parametrize("first", [0, 4, 6])
def test_top_layers_on_cached_bottom_states_equal_the_models_forward(minilm, first):
    model, tokenizer = minilm
    batch = tokenizer(["short", "a longer review that needs padding in the batch"],
                      padding=True, return_tensors="pt")
    mask = batch["attention_mask"]
    with torch.no_grad():
        expected = model(**batch).logits
        got = top_logits(model, frozen_states(model, batch["input_ids"], mask, first), mask,
                         first)
    assert torch.allclose(got, expected, atol=1e-5)


def test_only_the_top_layers_pooler_and_head_train(minilm):
    import copy

    model = copy.deepcopy(minilm[0])
    names = freeze_below(model, 2)
    assert all(n.startswith(("bert.encoder.layer.4.", "bert.encoder.layer.5.", "bert.pooler.",
                             "classifier.")) for n in names)
    assert not model.bert.embeddings.word_embeddings.weight.requires_grad
    with pytest.raises(ValueError, match="between 0 and 6"):
        freeze_below(model, 7)


def test_training_saves_a_hugging_face_folder_with_class_names_and_a_report(trained):
    out, model, _, report = trained
    assert not report["cached"] and report["settings"] == {**default_settings(), **TINY}
    assert 0.0 <= report["test_accuracy"] <= 1.0 and report["seconds"] > 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["id2label"] == {"0": "negative", "1": "positive"}
    assert (out / TRAINING_FILE).is_file() and (out / "tokenizer.json").is_file()
    assert [p.name for p in out.parent.iterdir()] == ["minilm"]  # no temporary folder left


def test_same_settings_reuse_the_cached_model(trained):
    out, model, _, _ = trained
    again, _, report = train_minilm_demo(out, **TINY)
    assert report["cached"]
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    assert not cached_model(out, {**default_settings(), **TINY, "seed": 1})


def test_saved_demo_is_explained_like_any_hugging_face_folder(trained):
    from lrp_captum.text import explain_text, load_text_model

    out = trained[0]
    model, tokenizer, info = load_text_model(out, device="cpu")
    assert info["class_names"] == ["negative", "positive"] and "test_accuracy" in info
    e = explain_text(model, tokenizer, "I didn't like it.", method="input_x_gradient")
    assert e.words == ["I", "didn't", "like", "it", "."]
    assert e.class_names == ["negative", "positive"] and len(e.windows) == 1
    from_folder = explain_text(out, None, "I didn't like it.", method="input_x_gradient")
    assert from_folder.token_relevance == pytest.approx(e.token_relevance, abs=1e-6)


def test_a_folder_that_is_not_a_demo_model_is_not_replaced(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a MiniLM demo model folder"):
        train_minilm_demo(tmp_path, **TINY)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_training_says_the_new_head_in_one_line_and_prints_no_loading_reports(tmp_path, capfd):
    import sys

    train_minilm_demo(tmp_path / "minilm", log=lambda m: print(m, file=sys.stderr), **TINY)
    printed = "".join(capfd.readouterr())
    for noise in ("LOAD REPORT", "MISSING", "Loading weights", "Writing model shards"):
        assert noise not in printed
    assert sum("new 2-class head" in line for line in printed.splitlines()) == 1
