"""What a Captum user does without thinking works with ``from lrp_captum import LRP``.

Untraceable forwards, optional arguments left as None, Captum's wrappers (NoiseTunnel, the
metrics, the visualisation), rules set on modules that canonization merges, and a warning when
the relevance does not add up to the output.
"""
import warnings

import matplotlib
import pytest
import torch
from captum.attr import NoiseTunnel
from captum.attr import visualization as captum_viz
from captum.metrics import infidelity, sensitivity_max
from torch import nn

import lrp_captum
from lrp_captum import LRP, GammaRule, LayerLRP, LRPRule, PassRule, get_composite
from lrp_captum.core.canonizers import CanonizationError

matplotlib.use("Agg")


def _convnet():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)).eval()


class DataDependent(nn.Module):
    """A forward torch.fx cannot trace: a Python ``if`` on a tensor value."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(5, 8), nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        if h.sum() > 0:
            h = h * 1.0
        return self.fc2(h)


def test_untraceable_forward_falls_back_to_leaf_modules_with_a_warning():
    torch.manual_seed(0)
    model = DataDependent().eval()
    x = torch.randn(3, 5)
    with pytest.warns(UserWarning, match=r"could not trace DataDependent.*leaf modules.*"
                                         r"functional ops"):
        relevance = LRP(model).attribute(x, target=1)
    expected = LRP(model, canonizers=None).attribute(x, target=1)
    torch.testing.assert_close(relevance, expected)


def test_explicit_auto_canonizers_stay_strict_on_an_untraceable_forward():
    with pytest.raises(CanonizationError, match="could not trace"):
        LRP(DataDependent().eval(), canonizers="auto").attribute(torch.randn(2, 5), target=0)


class OptionalSecondInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

    def forward(self, x1, x2=None, scale=1.0):
        out = self.a(x1)
        if x2 is not None:
            out = out + self.b(x2)
        return out * scale


def test_optional_arguments_left_as_none_take_the_branch_of_the_call():
    torch.manual_seed(0)
    model = OptionalSecondInput().eval()
    x1, x2 = torch.randn(2, 4), torch.randn(2, 4)
    lrp = LRP(model)
    alone = lrp.attribute(x1, target=0)
    both = lrp.attribute((x1, x2), target=0)
    scaled = lrp.attribute(x1, target=0, additional_forward_args=(None, 3.0))
    # the same calls on the hook path (no trace) are the reference
    hooks = LRP(model, canonizers=None)
    torch.testing.assert_close(alone, hooks.attribute(x1, target=0))
    for got, want in zip(both, hooks.attribute((x1, x2), target=0)):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(scaled, 3.0 * alone)
    # one plan per specialisation: the first one still works after the others
    torch.testing.assert_close(lrp.attribute(x1, target=0), alone)


def test_noise_tunnel_wraps_lrp_and_layer_lrp():
    model = _convnet()
    x = torch.randn(2, 3, 8, 8)
    nt = NoiseTunnel(LRP(model, composite="epsilon_plus"))
    torch.manual_seed(1)
    smooth = nt.attribute(x, nt_type="smoothgrad", nt_samples=4, stdevs=0.1, target=1)
    # SmoothGrad is the mean of LRP over the noisy copies Captum draws: x repeated 4 times per
    # example, plus normal noise of std 0.1 drawn in one call (captum's _add_noise_to_inputs)
    torch.manual_seed(1)
    noisy = x.repeat_interleave(4, dim=0) + torch.normal(0, torch.full((8, 3, 8, 8), 0.1))
    single = LRP(model, composite="epsilon_plus")
    manual = torch.stack([single.attribute(n[None], target=1)[0] for n in noisy])
    torch.testing.assert_close(smooth, manual.reshape(2, 4, 3, 8, 8).mean(1))
    assert not torch.allclose(smooth, single.attribute(x, target=1))
    layer = NoiseTunnel(LayerLRP(model, model[3])).attribute(x, nt_type="smoothgrad",
                                                            nt_samples=3, target=1)
    assert layer.shape == (2, 4, 2, 2)


def test_captum_metrics_accept_our_attributions():
    model = _convnet()
    x = torch.randn(3, 3, 8, 8)
    lrp = LRP(model, composite="epsilon")
    attributions = lrp.attribute(x, target=2)

    def perturb(inputs):
        noise = 0.01 * torch.randn_like(inputs)
        return noise, inputs - noise

    score = infidelity(model, perturb, x, attributions, target=2, n_perturb_samples=4)
    assert score.shape == (3,) and torch.isfinite(score).all()
    sens = sensitivity_max(lrp.attribute, x, target=2, n_perturb_samples=3)
    assert sens.shape == (3,) and torch.isfinite(sens).all()


def test_captum_visualization_draws_our_attributions():
    model = _convnet()
    x = torch.randn(1, 3, 8, 8)
    rel = LRP(model).attribute(x, target=0)
    fig, ax = captum_viz.visualize_image_attr(rel[0].permute(1, 2, 0).numpy(),
                                              x[0].permute(1, 2, 0).numpy(), method="heat_map",
                                              sign="all", use_pyplot=False)
    assert fig is not None and ax is not None


def test_rule_set_on_a_conv_carries_over_to_its_merged_batchnorm():
    model = _convnet()
    x = torch.randn(2, 3, 8, 8)
    plain = LRP(model, composite="epsilon").attribute(x, target=0)
    model[0].rule = GammaRule(0.5)
    try:
        lrp = LRP(model, composite="epsilon")
        table = lrp.rule_table(x)
        relevance = lrp.attribute(x, target=0)
    finally:
        del model[0].rule
    (row,) = [r for r in table.rows if r[0] == "0+1"]
    assert repr(row[2]) == "GammaRule(gamma=0.5)" and row[3] == "module.rule of '0'"
    by_name = LRP(model, composite=get_composite("epsilon", layer_map={"0+1": GammaRule(0.5)}))
    torch.testing.assert_close(relevance, by_name.attribute(x, target=0))
    assert not torch.allclose(relevance, plain)


def test_rule_set_on_an_inplace_activation_carries_over_to_its_copy():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Linear(4, 2)).eval()

    class Halve(LRPRule):
        def relevance(self, module, inputs, output, relevance_out):
            return (0.5 * relevance_out,)

    model[1].rule = Halve()
    try:
        table = LRP(model).rule_table(torch.randn(2, 4))
    finally:
        del model[1].rule
    assert [type(r).__name__ for r in table.values()] == ["EpsilonRule", "Halve", "EpsilonRule"]


class Amplify(LRPRule):
    """Not conservative: a thousand times the relevance (an imperative user rule)."""

    def relevance(self, module, inputs, output, relevance_out):
        return (1000.0 * relevance_out,)


def test_relevance_far_from_the_output_is_reported_once():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 2)).eval()
    lrp = LRP(model, composite=get_composite("epsilon", layer_map={nn.Tanh: Amplify()}))
    x = torch.randn(4, 6)
    with pytest.warns(UserWarning, match=r"does not add up.*rule is user code: '1'") as record:
        lrp.attribute(x, target=0)
        lrp.attribute(x, target=0)
    assert len([w for w in record if "does not add up" in str(w.message)]) == 1


def test_layer_norm_passed_through_without_canonizers_names_the_causes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6), nn.Linear(6, 2)).eval()
    with torch.no_grad():
        model[2].weight.mul_(1e-6)  # a head that barely responds: a tiny logit
    composite = get_composite("epsilon", layer_map={nn.LayerNorm: Amplify()})
    with pytest.warns(UserWarning, match=r"does not add up.*'1'.*without canonizers"):
        LRP(model, composite=composite, canonizers=None).attribute(torch.randn(3, 6), target=1)


def test_a_conservative_explanation_gives_no_warning():
    model = _convnet()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LRP(model, composite="epsilon_plus_flat").attribute(torch.randn(2, 3, 8, 8), target=1)


def test_an_example_whose_output_is_its_bias_gives_no_warning():
    """A blank tile or a flat epoch: the input contributes nothing, the logit is the bias, and
    LRP rightly gives the input ~0 relevance. One such example in a batch is not a fault."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 2)).eval()
    with torch.no_grad():
        model[0].bias.zero_()
        model[2].bias.fill_(0.5)
    x = torch.randn(4, 6)
    x[0] = 0.0  # a blank example: Σ relevance 0, output 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LRP(model).attribute(x, target=0)


def test_one_example_far_above_its_output_gives_no_warning_but_most_do():
    class AmplifyFirst(LRPRule):
        def relevance(self, module, inputs, output, relevance_out):
            factor = torch.ones(len(relevance_out), 1)
            factor[:examples] = 1000.0
            return (factor * relevance_out,)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 2)).eval()
    x = torch.randn(4, 6)
    examples = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LRP(model, composite=get_composite("epsilon", layer_map={nn.Tanh: AmplifyFirst()})
            ).attribute(x, target=0)
    examples = 3
    with pytest.warns(UserWarning, match=r"does not add up.*example 0 .*user code: '1'"):
        LRP(model, composite=get_composite("epsilon", layer_map={nn.Tanh: AmplifyFirst()})
            ).attribute(x, target=0)


def test_relevance_absorbed_in_most_examples_is_reported():
    torch.manual_seed(0)

    class Shrink(LRPRule):
        def relevance(self, module, inputs, output, relevance_out):
            return (1e-4 * relevance_out,)

    model = nn.Sequential(nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 2)).eval()
    lrp = LRP(model, composite=get_composite("epsilon", layer_map={nn.Tanh: Shrink()}))
    with pytest.warns(UserWarning, match=r"does not add up.*rule is user code: '1'"):
        lrp.attribute(torch.randn(4, 6), target=0)


def test_lrp_rule_is_exported_for_user_rules():
    assert lrp_captum.LRPRule is LRPRule and "LRPRule" in lrp_captum.__all__


class _BagHead(nn.Module):
    """A user's own attention-MIL head (CLAM-SB style) on a bag ``(N, D)``: one output row."""

    def __init__(self, d=12, h=8):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(d, h), nn.ReLU())
        self.a, self.b = nn.Sequential(nn.Linear(h, 4), nn.Tanh()), nn.Sequential(nn.Linear(h, 4), nn.Sigmoid())
        self.c, self.cls = nn.Linear(4, 1), nn.Linear(h, 2)

    def forward(self, x):
        h = self.fc(x)
        weights = torch.softmax(self.c(self.a(h) * self.b(h)).t(), dim=1)  # (1, N)
        return self.cls(torch.mm(weights, h))


def test_a_bag_model_with_one_output_row_is_one_example_as_in_captum():
    """Captum's LRP runs on a model that maps N input rows to one output row; ours failed with
    an IndexError there. The relevance of all rows together is that one output's."""
    from captum.attr import LRP as CaptumLRP

    torch.manual_seed(0)
    head = _BagHead().double().eval()
    with torch.no_grad():
        for name, p in head.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    bag = torch.randn(30, 12, dtype=torch.float64)
    # ε = 0 (the composite's default is the xMIL authors' 1e-8): exact conservation is checked
    relevance, delta = LRP(head, composite=get_composite("xmil", epsilon=0.0)).attribute(
        bag, target=1, return_convergence_delta=True)
    assert relevance.shape == bag.shape and delta.shape == (1,)
    torch.testing.assert_close(relevance.sum(), head(bag)[0, 1], rtol=1e-9, atol=1e-12)
    assert abs(float(delta)) < 1e-9
    # a set model (mean over rows): Captum's LRP runs on it, and so does ours; LRP-0 on a ReLU
    # network is gradient x input, of the one output, over all rows
    plain = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 2)).double().eval()
    set_model = _Lambda(lambda x: plain(x).mean(0, keepdim=True), plain)
    assert CaptumLRP(set_model).attribute(bag.clone().requires_grad_(), target=0).shape == bag.shape
    ours = LRP(set_model, composite="zero").attribute(bag, target=0)
    x = bag.clone().requires_grad_()
    (grad,) = torch.autograd.grad(set_model(x)[0, 0], x)
    torch.testing.assert_close(ours, grad * bag, rtol=1e-9, atol=1e-12)


class _Lambda(nn.Module):
    def __init__(self, fn, inner):
        super().__init__()
        self.fn, self.inner = fn, inner

    def forward(self, x):
        return self.fn(x)


def test_attention_ops_in_a_cnn_composite_name_the_composites_that_cover_them():
    with pytest.raises(CanonizationError, match="'xmil' \\(attention-MIL heads\\)"):
        LRP(_BagHead().eval(), composite="epsilon").attribute(torch.randn(5, 12), target=0)
