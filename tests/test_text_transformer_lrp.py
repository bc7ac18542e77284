"""LRP for Hugging Face text classifiers through the text adapter: AttnLRP by default, CP-LRP
conserving the logit with the additive parts zeroed, long texts over windows, the CLI."""
import json

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from lrp_captum.cli import main
from lrp_captum.text.attribute import default_composite
from lrp_captum.text.explain import explain_text
from lrp_captum.text.transformer import transformer_lrp
from test_text_cli import bert_dir  # noqa: F401  (module fixture: a small BERT folder)


def _small_bert(**overrides) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=200, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, num_labels=2,
                        max_position_embeddings=64, **overrides)
    return BertForSequenceClassification(config).eval()


def test_default_composite_of_a_transformer_is_attnlrp():
    assert default_composite(_small_bert()) == "attnlrp"


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_transformer_lrp_runs_and_leaves_the_model_as_it_was(composite):
    model = _small_bert()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]
    ids = torch.randint(5, 200, (2, 7))
    relevance = transformer_lrp(model, ids, torch.tensor([0, 1]), composite)
    assert relevance.shape == (2, 7, 16) and torch.isfinite(relevance).all()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert hooks == [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()]


def test_cp_lrp_on_the_word_embeddings_conserves_the_logit():
    model = _small_bert().double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "position_embeddings" in name or \
                    "token_type_embeddings" in name:
                p.zero_()
    ids = torch.randint(5, 200, (3, 9))
    target = torch.tensor([1, 0, 1])
    relevance = transformer_lrp(model, ids, target, "cp_lrp")
    logits = model(ids).logits.gather(1, target[:, None])[:, 0]
    torch.testing.assert_close(relevance.flatten(1).sum(1), logits, rtol=1e-6, atol=1e-9)


def test_a_long_text_is_explained_with_lrp_over_windows(bert_dir):  # noqa: F811
    from lrp_captum.text.model_folders import load_text_model
    model, tokenizer = load_text_model(bert_dir)[:2]
    text = " ".join(["the plot was great but the actors were not"] * 6)
    e = explain_text(model, tokenizer, text, max_length=24)
    assert e.method == "lrp" and e.composite == "attnlrp"
    assert len(e.windows) > 1 and all(r == r for r in e.word_relevance)


def test_cli_explains_a_hugging_face_folder_with_the_default_lrp(bert_dir, tmp_path):  # noqa: F811
    out = tmp_path / "words.json"
    assert main(["text", "explain", "I didn't like it.", "--model-dir", str(bert_dir),
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["method"] == "lrp" and data["composite"] == "attnlrp"
    assert data["words"] == ["I", "didn't", "like", "it", "."]
