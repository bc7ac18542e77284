"""The trained demo word-CNN and its word-level LRP explanations (ground truth from VADER)."""
import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lrp_captum.demos.text_sentences import make_sentiment_dataset, split_examples
from lrp_captum.text.evaluate import compare_methods, evaluate_explanations
from lrp_captum.text.explain import explain_text
from lrp_captum.text import load_text_model
from lrp_captum.demos.text_wordcnn import (predict_logits, train_demo_model, vocabulary_logits,
                                           encode_for_training)
from lrp_captum.text.model_folders import STATE_FILE

N_EXAMPLES, SEED = 2500, 0


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Demo model trained once per session (about 10-20 s of CPU) and saved."""
    out = tmp_path_factory.mktemp("text_model")
    model, tokenizer, report = train_demo_model(out, n_examples=N_EXAMPLES, epochs=20,
                                                n_filters=16, seed=SEED, device="cpu")
    examples = make_sentiment_dataset(N_EXAMPLES, seed=SEED, vocab=tokenizer.get_vocab())
    _, test = split_examples(examples, seed=SEED)
    return SimpleNamespace(model=model, tokenizer=tokenizer, report=report, dir=out,
                           test=test[:300])


@pytest.fixture(scope="module")
def tokenizer():
    from lrp_captum.text.embeddings import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="session")
def test_explanations(trained):
    return explain_text(trained.model, trained.tokenizer, [e.text for e in trained.test])


def test_held_out_accuracy_is_at_least_90_percent(trained):
    assert trained.report["test_accuracy"] >= 0.90
    assert trained.report["data"]["n_test"] == 500


def test_relevance_mass_on_deciding_words_is_at_least_70_percent(trained, test_explanations):
    scores = evaluate_explanations(test_explanations, trained.test)
    assert scores["evidence_mass_mean"] >= 0.7, scores


def test_negation_that_flips_the_label_carries_a_large_share(trained, test_explanations):
    scores = evaluate_explanations(test_explanations, trained.test)
    assert scores["n_negated"] > 100
    assert scores["negation_share_mean"] >= 0.3, scores
    assert scores["negation_in_top2"] >= 0.85, scores


def test_distractor_negation_that_does_not_flip_gets_little_relevance(trained,
                                                                      test_explanations):
    scores = evaluate_explanations(test_explanations, trained.test)
    assert scores["n_distractor"] > 50
    assert scores["distractor_share_mean"] < 0.1, scores


def test_not_good_is_negative_because_of_not(trained):
    e = explain_text(trained.model, trained.tokenizer, "the service was not good .")
    assert e.predicted_name == "negative"
    rel = dict(zip(e.words, e.word_relevance))
    assert rel["not"] == max(rel.values())
    good = explain_text(trained.model, trained.tokenizer, "the service was good .")
    assert good.predicted_name == "positive"
    assert dict(zip(good.words, good.word_relevance))["good"] == max(good.word_relevance)


def test_word_relevance_sums_token_relevance_exactly(trained):
    text = "The receptionist was not unbelievably helpful, honestly."
    e = explain_text(trained.model, trained.tokenizer, text)
    assert len(e.tokens) > len(e.words) + 2  # sub-words were merged
    word_sum = sum(e.word_relevance)
    token_sum = sum(r for r, w in zip(e.token_relevance, e.token_word) if w is not None)
    assert word_sum == pytest.approx(token_sum, abs=1e-9)
    special_sum = sum(s["relevance"] for s in e.special_tokens)
    assert word_sum + special_sum == pytest.approx(e.relevance_sum, abs=1e-9)
    i = e.words.index("unbelievably")
    pieces = [r for r, w in zip(e.token_relevance, e.token_word) if w == i]
    assert len(pieces) == 5 and e.word_relevance[i] == pytest.approx(sum(pieces), abs=1e-9)


def test_token_relevance_is_gradient_times_embedding_for_lrp_zero(trained):
    # independent reference: on a ReLU network LRP-0 equals gradient x input
    model, text = trained.model, "our waiter was extremely rude ."
    e = explain_text(model, trained.tokenizer, text, composite="zero")
    ids = torch.tensor([trained.tokenizer.encode(text).ids])
    emb = model.embedding(ids).detach().requires_grad_()
    x = emb.transpose(1, 2)
    z = torch.cat([p(a(c(x))) for c, a, p in zip(model.convs, model.activations, model.pools)], 1)
    logit = model.classifier(z.flatten(1))[0, e.target]
    (grad,) = torch.autograd.grad(logit, emb)
    expected = (grad * emb).sum(-1)[0]
    assert torch.allclose(torch.tensor(e.token_relevance), expected, atol=1e-5)


def test_batched_explanations_equal_one_at_a_time(trained):
    texts = ["the app is not bad .", "in short , the coffee seemed very nice overall .", "ok",
             "the hotel was great"]
    batched = explain_text(trained.model, trained.tokenizer, texts, batch_size=4)
    for text, b in zip(texts, batched):
        single = explain_text(trained.model, trained.tokenizer, text)
        assert b.words == single.words
        assert b.token_relevance == pytest.approx(single.token_relevance, abs=1e-6)


def test_target_by_name_reverses_the_sign_of_the_sentiment_word(trained):
    text = "the movie was wonderful ."
    pos = explain_text(trained.model, trained.tokenizer, text, target="positive")
    neg = explain_text(trained.model, trained.tokenizer, text, target="negative")
    i = pos.words.index("wonderful")
    assert pos.target_name == "positive" and neg.target_name == "negative"
    assert pos.word_relevance[i] > 0 > neg.word_relevance[i]
    with pytest.raises(ValueError, match="unknown target class 'neutral'"):
        explain_text(trained.model, trained.tokenizer, text, target="neutral")


def test_empty_text_is_explained_with_special_tokens_only(trained):
    e = explain_text(trained.model, trained.tokenizer, "")
    assert e.words == [] and e.word_relevance == []
    assert [s["token"] for s in e.special_tokens] == ["[CLS]", "[SEP]", "[PAD]"]
    assert any("empty text" in w for w in e.warnings)


def test_long_text_is_not_cut_at_the_tokenizers_128_tokens(trained):
    text = "the room was great . " * 60  # 300 words, 302 tokens
    e = explain_text(trained.model, trained.tokenizer, text)
    assert len(e.words) == 300 and len(e.tokens) == 302
    assert e.windows == [[1, 301]] and not e.warnings  # the word-CNN has no length limit


def test_text_longer_than_max_length_is_explained_over_windows_and_says_so(trained):
    text = "the room was great . " * 20  # 100 words, 102 tokens
    e = explain_text(trained.model, trained.tokenizer, text, max_length=32)
    assert len(e.words) == 100 and all(r == r for r in e.word_relevance)
    assert len(e.windows) == 6 and e.windows[0] == [1, 31] and e.windows[-1] == [71, 101]
    assert any("overlapping windows of 32 tokens" in w for w in e.warnings)


def test_unknown_characters_are_explained_as_unknown_words(trained):
    e = explain_text(trained.model, trained.tokenizer, "the staff was 😀 friendly")
    assert e.unknown_words == [3] and e.words[3] == "😀"
    assert all(r == r for r in e.word_relevance)  # finite, not NaN


def test_model_in_training_mode_is_explained_in_eval_mode_and_comes_back_unchanged(trained):
    model, text = trained.model, "the hotel was not clean ."
    expected = explain_text(model, trained.tokenizer, text)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    try:
        with pytest.warns(UserWarning, match="training mode") as record:
            got = explain_text(model, trained.tokenizer, text)
        assert len([w for w in record if "training mode" in str(w.message)]) == 1
        assert all(m.training for m in model.modules())
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
        # dropout was off: the relevance is the eval-mode one
        assert got.token_relevance == pytest.approx(expected.token_relevance, abs=1e-6)
        assert got.probabilities == pytest.approx(expected.probabilities, abs=1e-6)
    finally:
        model.eval()


def test_vocabulary_training_path_equals_the_model_forward(trained):
    texts = [e.text for e in trained.test[:40]] + ["ok"]
    ids, lengths = encode_for_training(trained.tokenizer, texts, trained.model.min_length)
    vocab = torch.unique(ids)
    with torch.no_grad():
        fast = vocabulary_logits(trained.model, vocab, torch.searchsorted(vocab, ids), lengths)
    assert torch.allclose(fast, predict_logits(trained.model, ids, lengths), atol=1e-5)


def test_saved_model_reloads_with_identical_outputs_and_no_embedding_copy(trained):
    model, tokenizer, config = load_text_model(trained.dir, device="cpu")
    ids = torch.tensor([tokenizer.encode("the novel was dull .").ids])
    with torch.no_grad():
        assert torch.equal(model(ids), trained.model(ids))
    assert (trained.dir / STATE_FILE).stat().st_size < 1_000_000  # 30522x384 table not stored
    assert config["class_names"] == ["negative", "positive"]
    assert model.class_names == ("negative", "positive")


def test_missing_model_dir_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="lrp-captum text train-demo"):
        load_text_model(tmp_path / "nope")


def test_comparison_scores_all_three_methods_on_the_same_sentences(trained):
    rows = compare_methods(trained.model, trained.tokenizer, trained.test[:20])
    assert [r["method"] for r in rows] == ["lrp (epsilon)", "input_x_gradient",
                                           "integrated_gradients"]
    assert all(r["n"] == 20 and 0 <= r["evidence_mass_mean"] <= 1 for r in rows)


# ---------------------------------------------------------------------------------------------
# other models
# ---------------------------------------------------------------------------------------------
class BagOfEmbeddings(nn.Module):
    """A user's own classifier: mean of embeddings, linear layer without bias."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.tokens = nn.Embedding(30522, 8)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flat = nn.Flatten()
        self.out = nn.Linear(8, 3, bias=False)

    def forward(self, ids):
        return self.out(self.flat(self.pool(self.tokens(ids).transpose(1, 2))))


def test_own_classifier_relevance_is_each_tokens_linear_contribution(tokenizer):
    model = BagOfEmbeddings().eval()
    text = "not bad at all"
    e = explain_text(model, tokenizer, text, target=2)
    ids = torch.tensor(tokenizer.encode(text).ids)
    # independent reference: logit_c = sum_t w_c . e_t / L, so R_t = w_c . e_t / L
    expected = (model.tokens.weight[ids] @ model.out.weight[2]).detach() / len(ids)
    assert torch.allclose(torch.tensor(e.token_relevance), expected, atol=1e-5)
    assert e.relevance_sum == pytest.approx(e.output_relevance, abs=1e-5)
    assert e.target_name == "2"


def test_window_relevance_is_summed_per_token_and_divided_by_the_number_of_windows(tokenizer):
    model = BagOfEmbeddings().eval()
    text = "one two three four five six seven eight nine ten"  # 12 tokens with CLS/SEP
    e = explain_text(model, tokenizer, text, target=1, max_length=8, stride=2)
    ids = torch.tensor(tokenizer.encode(text).ids)
    # independent reference: windows [CLS] + 6 words + [SEP] starting at words 0, 2, 4;
    # in each the linear model gives R_t = w . e_t / 8, and the prediction is the mean logit
    contribution = (model.tokens.weight[ids] @ model.out.weight[1]).detach()
    expected, logits = torch.zeros(12), []
    for start in (1, 3, 5):
        positions = [0] + list(range(start, start + 6)) + [11]
        window = ids[positions]
        rel = contribution[positions] / 8
        expected[0] += rel[0]
        expected[start:start + 6] += rel[1:7]
        expected[11] += rel[7]
        logits.append(model(window[None])[0].detach())
    assert torch.allclose(torch.tensor(e.token_relevance), expected / 3, atol=2e-5)
    assert e.probabilities == pytest.approx(torch.softmax(torch.stack(logits).mean(0), 0).tolist())
    assert e.relevance_sum == pytest.approx(e.output_relevance, abs=1e-5)


class HFStyle(nn.Module):
    """Hugging Face calling convention: get_input_embeddings, inputs_embeds, .logits."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.word_embeddings = nn.Embedding(30522, 8)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flat = nn.Flatten()
        self.head = nn.Linear(8, 2, bias=False)
        self.config = SimpleNamespace(id2label={0: "NEG", 1: "POS"}, pad_token_id=0)

    def get_input_embeddings(self):
        return self.word_embeddings

    def forward(self, input_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        return SimpleNamespace(logits=self.head(self.flat(self.pool(inputs_embeds.transpose(1, 2)))))


def test_hugging_face_style_model_is_explained_through_inputs_embeds(tokenizer):
    model = HFStyle().eval()
    text = "great food"
    e = explain_text(model, tokenizer, text, target="POS")
    ids = torch.tensor(tokenizer.encode(text).ids)
    expected = (model.word_embeddings.weight[ids] @ model.head.weight[1]).detach() / len(ids)
    assert torch.allclose(torch.tensor(e.token_relevance), expected, atol=1e-5)
    assert e.target_name == "POS"


def test_hugging_face_bert_names_the_ops_lrp_does_not_cover(tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    from lrp_captum import NoRuleError

    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, num_labels=2)
    bert = BertForSequenceClassification(config).eval()
    with pytest.raises(NoRuleError, match="GELUActivation") as caught:
        explain_text(bert, tokenizer, "not good", composite="epsilon")
    assert "composite 'attnlrp'" in str(caught.value)


def test_hugging_face_model_in_training_mode_is_explained_in_eval_mode_and_restored(tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, num_labels=2)
    bert = BertForSequenceClassification(config).train()
    state = {k: v.clone() for k, v in bert.state_dict().items()}
    with pytest.warns(UserWarning, match="training mode"):
        got = explain_text(bert, tokenizer, "not bad at all", method="input_x_gradient")
    assert all(m.training for m in bert.modules())
    assert all(torch.equal(v, state[k]) for k, v in bert.state_dict().items())
    expected = explain_text(bert.eval(), tokenizer, "not bad at all", method="input_x_gradient")
    assert got.token_relevance == pytest.approx(expected.token_relevance, abs=1e-6)


def test_recurrent_classifier_is_refused_naming_the_lstm(tokenizer):
    from lrp_captum import NoRuleError

    class LSTMClassifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(30522, 8)
            self.lstm = nn.LSTM(8, 8, batch_first=True)
            self.out = nn.Linear(8, 2)

        def forward(self, ids):
            seq, _ = self.lstm(self.embedding(ids))
            return self.out(seq[:, -1])

    with pytest.raises(NoRuleError, match="LSTM"):
        explain_text(LSTMClassifier().eval(), tokenizer, "not good")


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def test_cli_explains_one_text_to_stdout_html_and_json(trained, tmp_path, capsys):
    from lrp_captum.cli import main

    html_path, json_path = tmp_path / "out.html", tmp_path / "out.json"
    code = main(["text", "explain", "the hotel was not clean .", "--model-dir", str(trained.dir),
                 "--html", str(html_path), "--json", str(json_path), "--device", "cpu"])
    assert code == 0
    out = capsys.readouterr().out
    assert "predicted negative" in out and "not" in out and "(special token)" in out
    assert "lrp-legend" in html_path.read_text()
    data = json.loads(json_path.read_text())
    assert data["words"] == ["the", "hotel", "was", "not", "clean", "."]


def test_cli_batch_reads_jsonl_and_writes_jsonl_and_html(trained, tmp_path, capsys):
    from lrp_captum.cli import main

    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "a", "text": "the staff was rude ."}\n\n'
                   '"the view was lovely"\n'
                   '{"id": "c", "text": "", "target": "positive"}\n', encoding="utf-8")
    out, page = tmp_path / "out.jsonl", tmp_path / "out.html"
    code = main(["text", "explain", "--input", str(src), "--output", str(out), "--html",
                 str(page), "--model-dir", str(trained.dir), "--device", "cpu"])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", 3, "c"]
    assert rows[0]["predicted_name"] == "negative" and rows[1]["predicted_name"] == "positive"
    assert rows[2]["target_name"] == "positive" and rows[2]["words"] == []
    assert "empty text" in capsys.readouterr().err
    assert page.read_text().count('class="lrp-item"') == 3


def test_cli_reports_bad_jsonl_line_with_file_and_line_number(trained, tmp_path, capsys):
    from lrp_captum.cli import main

    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "fine"}\n{"text": \n', encoding="utf-8")
    code = main(["text", "explain", "--input", str(src), "--model-dir", str(trained.dir)])
    assert code == 2
    assert f"{src}:2: not valid JSON" in capsys.readouterr().err


def test_cli_without_a_trained_model_says_to_run_train_demo(tmp_path, capsys):
    from lrp_captum.cli import main

    code = main(["text", "explain", "good", "--model-dir", str(tmp_path / "none")])
    assert code == 2
    assert "lrp-captum text train-demo" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# app page
# ---------------------------------------------------------------------------------------------
def _text_page(pages_dir: str, model_dir: str):
    # runs as a standalone script inside AppTest: imports must be local
    import importlib.util

    import streamlit as st

    spec = importlib.util.spec_from_file_location("text_page", pages_dir + "/text_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.render_text_page(st, model_dir)


def test_app_text_page_highlights_the_typed_sentences(trained):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    pages = str(Path(__file__).resolve().parents[1] / "apps" / "views")
    at = AppTest.from_function(_text_page, args=(pages, str(trained.dir)))
    at.run(timeout=120)
    assert not at.exception
    at.text_area[0].set_value("the room was not clean .").run(timeout=120)
    assert not at.exception
    html = " ".join(str(h.proto.body) for h in at.get("html"))
    assert 'aria-label="not: relevance' in html and "lrp-legend" in html


def test_app_text_page_without_a_model_says_how_to_train_one(tmp_path):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    pages = str(Path(__file__).resolve().parents[1] / "apps" / "views")
    at = AppTest.from_function(_text_page, args=(pages, str(tmp_path)))
    at.run(timeout=60)
    assert "lrp-captum text train-demo" in at.info[0].value
