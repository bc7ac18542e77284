"""Evidence methods for MIL heads and the measures that compare them (tile AUROC, patch dropping)."""
import itertools

import numpy as np
import pytest
import torch

from lrp_captum import list_composites
from lrp_captum.evaluation.metrics import aopc
from lrp_captum.wsi.mil.evidence import XMIL_COMPOSITE, TileEvidence, tile_evidence
from lrp_captum.wsi.mil.faithfulness import compare_methods, patch_dropping_curve, tile_auroc
from lrp_captum.wsi.mil.heads import GatedAttentionMIL, make_head
from lrp_captum.wsi.mil.training import fit_head


@pytest.fixture(scope="module", params=["abmil", "transmil"])
def head_and_bag(request):
    torch.manual_seed(2)
    return make_head(request.param, 10).double().eval(), torch.randn(25, 10, dtype=torch.float64)


def _logit(head, bag, target=1):
    with torch.no_grad():
        return float(head(bag.unsqueeze(0))[0, target])


def test_single_is_the_target_logit_of_each_tile_as_its_own_bag(head_and_bag):
    head, bag = head_and_bag
    ev = tile_evidence("single", head, bag, 1)
    np.testing.assert_allclose(ev.scores.numpy(), [_logit(head, bag[i:i + 1]) for i in range(len(bag))], rtol=1e-10)
    assert ev.per_dimension is None


def test_leave_one_out_is_the_logit_drop_without_each_tile(head_and_bag):
    head, bag = head_and_bag
    full = _logit(head, bag)
    expected = [full - _logit(head, torch.cat([bag[:i], bag[i + 1:]])) for i in range(len(bag))]
    np.testing.assert_allclose(tile_evidence("leave_one_out", head, bag, 1).scores.numpy(), expected,
                               rtol=1e-9, atol=1e-12)


def test_gradient_matches_finite_differences_times_the_embedding(head_and_bag):
    head, bag = head_and_bag
    ev = tile_evidence("gradient", head, bag, 1)
    h = 1e-6
    for i, d in [(0, 0), (7, 3), (24, 9)]:
        up, down = bag.clone(), bag.clone()
        up[i, d] += h
        down[i, d] -= h
        slope = (_logit(head, up) - _logit(head, down)) / (2 * h)
        assert float(ev.per_dimension[i, d]) == pytest.approx(slope * float(bag[i, d]), rel=1e-5, abs=1e-9)
    torch.testing.assert_close(ev.scores, ev.per_dimension.sum(-1))


def test_integrated_gradients_add_up_to_the_logit_change_from_the_empty_embedding(head_and_bag):
    head, bag = head_and_bag
    ev = tile_evidence("integrated_gradients", head, bag, 1, n_steps=128)
    change = _logit(head, bag) - _logit(head, torch.zeros_like(bag))
    assert float(ev.scores.sum()) == pytest.approx(change, rel=2e-2, abs=1e-3)


def test_abmil_attention_evidence_is_its_pooling_weights_and_their_norm_product():
    torch.manual_seed(0)
    head, bag = GatedAttentionMIL(10).eval(), torch.randn(25, 10)
    with torch.no_grad():
        h = head.project(bag)
        a = head.attention_w(torch.tanh(head.attention_v(h)) * torch.sigmoid(head.attention_u(h)))[:, 0]
    alpha = torch.softmax(a, 0)
    torch.testing.assert_close(tile_evidence("attention", head, bag, 0).scores, alpha)
    torch.testing.assert_close(tile_evidence("attention_norm", head, bag, 1).scores, alpha * h.norm(dim=1))


def test_a_custom_method_plugs_in_and_a_wrong_shape_is_refused(head_and_bag):
    head, bag = head_and_bag
    assert tile_evidence(lambda h, b, t: TileEvidence(b[:, 0]), head, bag, 1).scores.shape == (25,)
    with pytest.raises(ValueError, match=r"returned scores of shape \(24,\), expected \(25,\)"):
        tile_evidence(lambda h, b, t: TileEvidence(b[1:, 0]), head, bag, 1)
    with pytest.raises(ValueError, match="unknown evidence method 'occlusion'"):
        tile_evidence("occlusion", head, bag, 1)


def test_an_empty_bag_is_refused(head_and_bag):
    head, _ = head_and_bag
    with pytest.raises(ValueError, match="the bag is empty"):
        tile_evidence("gradient", head, torch.zeros(0, 10, dtype=torch.float64), 1)


def _pairwise_auroc(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_tile_auroc_counts_ordered_pairs_and_leaves_partial_tiles_out():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=60), 1)  # ties on purpose
    frac = rng.choice([0.0, 0.0, 0.2, 0.6, 1.0], size=60)
    keep = (frac >= 0.5) | (frac == 0)
    assert tile_auroc(scores, frac) == pytest.approx(_pairwise_auroc(scores[keep], frac[keep] >= 0.5))
    assert np.isnan(tile_auroc(scores, np.zeros(60)))


def test_patch_dropping_removes_the_top_tiles_in_evidence_order(head_and_bag):
    head, bag = head_and_bag
    scores = np.arange(len(bag))[::-1].astype(float)  # tile 0 first
    curve = patch_dropping_curve(head, bag, scores, 1, max_drop=3)
    expected = [_logit(head, bag[k:]) for k in range(4)]
    np.testing.assert_allclose(curve.numpy(), expected, rtol=1e-10)
    assert len(patch_dropping_curve(head, bag[:3], scores[:3], 1, max_drop=20)) == 3  # one tile stays


def test_on_a_trained_head_single_finds_the_witnesses_far_better_than_chance():
    gen = torch.Generator().manual_seed(0)
    bags, labels = [], []
    for i in range(16):
        bag = torch.randn(30, 8, generator=gen)
        if i % 2:
            bag[:4, 2] += 3.0
        bags.append(bag)
        labels.append(i % 2)
    head = make_head("abmil", 8)
    fit_head(head, bags, labels, epochs=25, lr=3e-3, subsample=1.0)
    positives = [b for b, y in zip(bags, labels) if y]
    frac = [np.r_[np.ones(4), np.zeros(26)]] * len(positives)
    table = compare_methods(head, positives, ["single", "gradient", "attention", "xmil_lrp"],
                            targets=[1] * len(positives), lesion_fractions=frac, max_drop=6)
    means = table.groupby("method")[["auroc", "aopc"]].mean()
    assert means.loc["single", "aopc"] > means.loc["random", "aopc"] + 0.1
    assert means.loc["single", "auroc"] > 0.8 and means.loc["random", "auroc"] < 0.7
    available = table.groupby("method")["available"].all()
    assert available["xmil_lrp"] == (XMIL_COMPOSITE in list_composites())


def test_aopc_of_a_curve_is_the_mean_drop_including_the_unperturbed_step():
    assert float(aopc(torch.tensor([[3.0, 2.0, 0.0]]))[0]) == pytest.approx((0 + 1 + 3) / 3)


@pytest.mark.parametrize("method", ["attention", "attention_norm"])
def test_attention_methods_on_a_head_without_attention_weights_say_so(method):
    from lrp_captum.wsi.mil.evidence import MethodUnavailableError

    head = torch.nn.Sequential(torch.nn.Linear(8, 2))  # a user's head: no attention_and_values
    with pytest.raises(MethodUnavailableError, match=f"{method}.*attention_and_values.*xmil_lrp"):
        tile_evidence(method, head, torch.randn(5, 8), 0)
