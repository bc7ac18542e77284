"""Where a transformer's logit goes: the words, the special tokens, the position/type embeddings
and the biases. AttnLRP is not conservative by design and BERT adds position and token-type
embeddings to the words: the explanation reports that split instead of warning that relevance
"does not add up" (and naming GELU as the cause)."""
import warnings

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from lrp_captum.text.explain import explain_text
from lrp_captum.text.transformer import transformer_lrp
from test_text_cli import bert_dir  # noqa: F401  (module fixture: a small BERT folder)


def _small_bert(zero=()) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, num_labels=2, max_position_embeddings=64)
    model = BertForSequenceClassification(config).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(z in name for z in zero):
                p.zero_()
    return model


@pytest.fixture(scope="module")
def tokenizer(bert_dir):  # noqa: F811
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(bert_dir), local_files_only=True)


def test_without_biases_cp_lrp_splits_the_logit_between_tokens_and_position_embeddings(tokenizer):
    # CP-LRP conserves the logit when no bias absorbs any: what the word embeddings do not get,
    # the position and token-type embeddings get
    model = _small_bert(zero=("bias",))
    e = explain_text(model, tokenizer, "the sequel is never boring .", composite="cp_lrp")
    split = e.logit_split
    logit = model(**tokenizer("the sequel is never boring .", return_tensors="pt")).logits[0, e.target].item()
    assert split["output"] == pytest.approx(logit, rel=1e-6)
    assert split["biases"] == pytest.approx(0.0, abs=1e-6 * abs(logit))
    # independent reference: relevance of the word embeddings alone (LRP at inputs_embeds)
    ids = torch.tensor([e.token_ids])
    at_words = transformer_lrp(model, ids, torch.tensor([e.target]), "cp_lrp").sum().item()
    assert split["words"] + split["special_tokens"] == pytest.approx(at_words, rel=1e-6)
    assert split["position_type_embeddings"] == pytest.approx(logit - at_words, rel=1e-6)
    assert abs(split["position_type_embeddings"]) > 1e-3 * abs(logit)


def test_without_position_embeddings_their_share_is_zero(tokenizer):
    model = _small_bert(zero=("position_embeddings", "token_type_embeddings"))
    split = explain_text(model, tokenizer, "not bad at all", composite="cp_lrp").logit_split
    assert split["position_type_embeddings"] == pytest.approx(0.0, abs=1e-12)
    parts = split["words"] + split["special_tokens"] + split["position_type_embeddings"] + split["biases"]
    assert parts == pytest.approx(split["output"], rel=1e-9)


def test_words_and_special_tokens_are_the_token_relevance(tokenizer):
    e = explain_text(_small_bert(), tokenizer, "I didn't like it.")
    assert e.logit_split["words"] == pytest.approx(sum(e.word_relevance), rel=1e-9)
    assert e.logit_split["special_tokens"] == pytest.approx(sum(s["relevance"] for s in e.special_tokens), rel=1e-9)


def test_attnlrp_on_a_transformer_reports_the_split_and_does_not_warn(tokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        e = explain_text(_small_bert(), tokenizer, "the sequel is never boring .")
    assert e.composite == "attnlrp" and set(e.logit_split) == {
        "output", "words", "special_tokens", "position_type_embeddings", "biases"}
    assert not any("add up" in w for w in e.warnings)


def test_the_html_and_the_command_line_show_the_split(bert_dir, tmp_path, capsys):  # noqa: F811
    from lrp_captum.cli import main
    from lrp_captum.text.render import explanation_html

    model = _small_bert()
    from transformers import AutoTokenizer

    e = explain_text(model, AutoTokenizer.from_pretrained(str(bert_dir), local_files_only=True), "great")
    page = explanation_html(e)
    assert "position/type embeddings" in page and "biases" in page
    assert main(["text", "explain", "great", "--model", str(bert_dir)]) == 0
    out = capsys.readouterr().out
    assert "position/type embeddings" in out and "biases" in out and "words" in out


def test_the_word_cnn_has_no_position_share(tokenizer):
    from lrp_captum.text.embeddings import load_tokenizer, load_word_embeddings
    from lrp_captum.text.models import WordCNN

    torch.manual_seed(0)
    model = WordCNN(n_filters=4, embedding_weights=load_word_embeddings()).eval()
    e = explain_text(model, load_tokenizer(), "not bad at all")
    assert e.logit_split["position_type_embeddings"] == 0.0
    assert e.logit_split["words"] + e.logit_split["special_tokens"] + e.logit_split["biases"] == \
        pytest.approx(e.logit_split["output"], rel=1e-9)


def test_warnings_of_the_call_reach_every_explanation(tokenizer):
    # a model left in training mode is explained in evaluation mode, with one warning: the
    # explanation carries it too, so a page shows it (not only a server log)
    model = _small_bert().train()
    with pytest.warns(UserWarning, match="training mode"):
        explanations = explain_text(model, tokenizer, ["good", "bad"])
    assert all(any("training mode" in w for w in e.warnings) for e in explanations)
