"""Token deletion curves (MoRF / LeRF) and their areas."""
import pytest
import torch
from torch import nn

from lrp_captum.text.deletion import (DeletionResult, curve_auc, deletion_curves,
                                      format_deletion_table, replacement_id)
from lrp_captum.text.explain import explain_text

TEXTS = ["the staff was friendly but the room was dirty and the food was cold",
         "not bad at all , i would come back", "great"]


class LinearBag(nn.Module):
    """logit_c = mean_t w_c . e_t, with the [UNK] embedding zero: deleting a token (replacing it
    by [UNK]) removes exactly its contribution w_c . e_t / L."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.embedding = nn.Embedding(30522, 8)
        with torch.no_grad():
            self.embedding.weight[100].zero_()  # [UNK]
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.flat = nn.Flatten()
        self.out = nn.Linear(8, 2, bias=False)

    def forward(self, ids):
        return self.out(self.flat(self.pool(self.embedding(ids).transpose(1, 2))))


@pytest.fixture(scope="module")
def tokenizer():
    from lrp_captum.text.embeddings import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="module")
def model():
    return LinearBag().eval()


def _curves(model, tokenizer, method, **kw):
    explanations = explain_text(model, tokenizer, TEXTS, method=method)
    return explanations, deletion_curves(model, tokenizer, explanations, **kw)


def test_first_point_is_the_explained_probability_and_last_deletes_every_word(model,
                                                                               tokenizer):
    explanations, result = _curves(model, tokenizer, "input_x_gradient", n_steps=4)
    first = [e.probabilities[e.target] for e in explanations]
    assert result.morf[:, 0].tolist() == pytest.approx(first, abs=1e-6)
    assert torch.allclose(result.morf[:, -1], result.lerf[:, -1])
    assert result.fractions.tolist() == [0, 0.25, 0.5, 0.75, 1]


def test_curve_equals_a_hand_computed_deletion(model, tokenizer):
    explanations, result = _curves(model, tokenizer, "input_x_gradient", n_steps=2)
    e = explanations[1]
    ids = torch.tensor(e.token_ids)
    contribution = (model.embedding.weight[ids] @ model.out.weight.T).detach() / len(ids)
    words = [i for i, w in enumerate(e.token_word) if w is not None]
    # independent reference: remove the ceil-half most relevant word tokens' contributions
    top = sorted(words, key=lambda i: -e.token_relevance[i])[:round(len(words) / 2)]
    logits = contribution.sum(0) - contribution[top].sum(0)
    assert float(result.morf[1, 1]) == pytest.approx(float(torch.softmax(logits, 0)[e.target]),
                                                     abs=1e-5)


def test_exact_contributions_give_the_lowest_morf_and_highest_lerf_curve(model, tokenizer):
    _, exact = _curves(model, tokenizer, "input_x_gradient", n_steps=5)
    _, random = _curves(model, tokenizer, "random", n_steps=5)
    assert torch.all(exact.morf <= random.morf + 1e-6)
    assert torch.all(exact.lerf >= random.lerf - 1e-6)
    assert exact.abpc > random.abpc


def test_long_text_is_deleted_over_the_same_windows_it_was_explained_with(model, tokenizer):
    text = " ".join(["good", "room", "bad", "food"] * 30)
    explanations = explain_text(model, tokenizer, [text], method="input_x_gradient",
                                max_length=32)
    assert len(explanations[0].windows) > 1
    result = deletion_curves(model, tokenizer, explanations, max_length=32, n_steps=3)
    assert float(result.morf[0, 0]) == pytest.approx(
        explanations[0].probabilities[explanations[0].target], abs=1e-6)


def test_area_is_the_trapezoid_rule():
    fractions = torch.tensor([0.0, 0.5, 1.0])
    curves = torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]])
    assert curve_auc(fractions, curves).tolist() == [0.5, 1.0]
    result = DeletionResult(fractions, curves[:1], curves[1:])
    assert result.abpc == pytest.approx(0.5)
    table = format_deletion_table([{"method": "x", "result": result, "seconds": 1.0},
                                   {"method": "attnlrp", "result": None, "note": "n/a"}])
    assert "| x | 0.500 | 1.000 | +0.500 | 1.0 |" in table and "| attnlrp | – |" in table


def test_replacement_tokens_come_from_the_vocabulary(tokenizer):
    assert [replacement_id(tokenizer, r) for r in ("unk", "mask", "pad")] == [100, 103, 0]
    with pytest.raises(ValueError, match="replacement must be one of unk, mask, pad"):
        replacement_id(tokenizer, "blank")
