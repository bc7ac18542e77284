"""Ground-truth benchmark, small version: a CNN trained on planted patterns is explained by LRP
composites and by the gradient; the relevant pixels are known."""
import pytest
import torch

from lrp_captum.demos import planted_patterns as G
from lrp_captum.evaluation import metrics as M
from lrp_captum.evaluation import ranking as S


@pytest.fixture(scope="module")
def trained():
    train = G.make_planted_patterns(600, size=24, n_classes=2, seed=0)
    model, losses = G.train_planted_cnn(train, n_classes=2, width=8, epochs=5, lr=3e-3, seed=0)
    test = G.make_planted_patterns(48, size=24, n_classes=2, seed=1)
    return model, test


def test_small_model_learns_the_planted_pattern(trained):
    model, test = trained
    assert G.accuracy(model, test) >= 0.9


def test_composite_lrp_puts_positive_relevance_on_the_pattern_far_above_chance(trained):
    model, test = trained
    a = S.lrp_explainer("epsilon_gamma_box", low=torch.zeros(3), high=torch.ones(3))(
        model, test.images, test.labels)
    rma = M.relevance_mass_accuracy(a, test.masks).mean().item()
    assert rma > 3 * test.mask_fraction


def test_composite_lrp_beats_the_gradient_on_relevance_mass_accuracy(trained):
    model, test = trained
    lrp = S.lrp_explainer("epsilon_plus_flat")(model, test.images, test.labels)
    grad = S.captum_explainers(["saliency"])["saliency"](model, test.images, test.labels)
    assert (M.relevance_mass_accuracy(lrp, test.masks).mean()
            > M.relevance_mass_accuracy(grad, test.masks).mean())


def test_composite_lrp_beats_random_attribution_on_aopc(trained):
    model, test = trained
    a = S.lrp_explainer("epsilon_plus_flat")(model, test.images, test.labels)
    kw = dict(patch_size=6, baseline="mean")
    lrp_aopc = M.aopc(M.perturbation_curve(model, test.images, a, test.labels, **kw)).mean()
    chance = M.random_order_aopc(model, test.images, test.labels, n_random=2, **kw).mean()
    assert lrp_aopc > chance

