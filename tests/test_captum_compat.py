"""Our rules inside Captum's engine, and our engine against Captum where Captum is correct."""

import pytest
import torch
from captum.attr import LRP as CaptumLRP
from captum.attr import LayerLRP as CaptumLayerLRP
from captum.attr._utils import lrp_rules as captum_rules
from torch import nn

from lrp_captum import (LRP, AlphaBetaRule, Composite, EpsilonRule, FlatRule, GammaRule,
                        GeneralizedGammaRule, LayerLRP, PassRule, ZBoxRule, ZPlusRule)
from lrp_captum.core import layer_types as types


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 5),
    ).eval().double()


X = torch.randn(3, 3, 16, 16, dtype=torch.float64)
TARGET = [0, 2, 4]

OUR_RULES = {
    "epsilon": lambda: EpsilonRule(0.01),
    "gamma": lambda: GammaRule(0.25),
    "generalized_gamma": lambda: GeneralizedGammaRule(0.25),
    "alpha2beta1": lambda: AlphaBetaRule(2, 1),
    "zplus": lambda: ZPlusRule(),
}


def _set_rules(model, conv_rule, first_rule=None):
    for i, m in enumerate(model):
        if isinstance(m, nn.Conv2d):
            m.rule = conv_rule()
        elif isinstance(m, (nn.Linear, nn.AvgPool2d, nn.MaxPool2d)):
            m.rule = EpsilonRule(1e-9)
        elif isinstance(m, nn.Flatten):
            m.rule = PassRule()  # Captum has no default for Flatten
    if first_rule is not None:
        model[0].rule = first_rule()


@pytest.mark.parametrize("rule", sorted(OUR_RULES))
def test_our_rule_inside_captum_lrp_equals_our_lrp(rule):
    model = _net()
    _set_rules(model, OUR_RULES[rule])
    captum_result = CaptumLRP(model).attribute(X, target=TARGET)
    _set_rules(model, OUR_RULES[rule])  # Captum deletes module.rule after every call
    ours = LRP(model, canonizers=None).attribute(X, target=TARGET)
    assert torch.allclose(captum_result, ours, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("first", [lambda: ZBoxRule(-3.0, 3.0), lambda: FlatRule()])
def test_input_layer_rules_inside_captum_lrp(first):
    model = _net()
    _set_rules(model, lambda: EpsilonRule(1e-9), first)
    captum_result = CaptumLRP(model).attribute(X, target=TARGET)
    _set_rules(model, lambda: EpsilonRule(1e-9), first)
    ours = LRP(model, canonizers=None).attribute(X, target=TARGET)
    assert torch.allclose(captum_result, ours, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("captum_rule", [lambda: captum_rules.EpsilonRule(),
                                         lambda: captum_rules.EpsilonRule(0.1),
                                         lambda: captum_rules.GammaRule(0.5),
                                         lambda: captum_rules.Alpha1_Beta0_Rule()])
def test_our_lrp_equals_captum_with_captums_own_rules(captum_rule):
    model = _net()
    _set_rules(model, captum_rule)
    expected = CaptumLRP(model).attribute(X, target=TARGET)
    _set_rules(model, captum_rule)
    ours = LRP(model, canonizers=None).attribute(X, target=TARGET)
    assert torch.allclose(expected, ours, rtol=1e-6, atol=1e-10)


def test_our_lrp_equals_captum_defaults_on_a_sequential_net():
    model = _net()
    model[6].rule = PassRule()  # Captum has no default for Flatten
    expected = CaptumLRP(model).attribute(X, target=TARGET)
    # Captum's defaults: EpsilonRule(1e-9) on conv, linear and pooling layers; ReLU passes
    captum_defaults = Composite([(types.Linear + types.AvgPool + types.MaxPool, EpsilonRule(1e-9)),
                                 (types.Activation + types.Identity, PassRule())])
    ours = LRP(model, composite=captum_defaults).attribute(X, target=TARGET)
    assert torch.allclose(expected, ours, rtol=1e-6, atol=1e-10)


def test_composite_attach_makes_plain_captum_use_it():
    model = _net()
    composite = Composite([(types.Convolution, GammaRule(0.25)),
                           ((nn.Linear, nn.AvgPool2d, nn.MaxPool2d), EpsilonRule(1e-9)),
                           (types.Activation, None), (types.Identity, PassRule())])
    ours = LRP(model, composite=composite, canonizers=None).attribute(X, target=TARGET)
    composite.attach(model)
    assert isinstance(model[0].rule, GammaRule)
    via_captum = CaptumLRP(model).attribute(X, target=TARGET)
    assert torch.allclose(ours, via_captum, rtol=1e-6, atol=1e-10)


def test_our_rules_in_captum_layer_lrp():
    model = _net()
    _set_rules(model, lambda: GammaRule(0.25))
    expected = CaptumLayerLRP(model, model[3]).attribute(X, target=TARGET)
    _set_rules(model, lambda: GammaRule(0.25))
    ours = LayerLRP(model, model[3], canonizers=None).attribute(X, target=TARGET)
    assert torch.allclose(expected, ours, rtol=1e-6, atol=1e-10)


def test_rules_survive_repeated_calls_and_results_repeat():
    model = _net()
    _set_rules(model, lambda: GammaRule(0.25))
    rules_before = {i: m.rule for i, m in enumerate(model) if hasattr(m, "rule")}
    lrp = LRP(model, canonizers=None)
    first = lrp.attribute(X, target=TARGET)
    second = lrp.attribute(X, target=TARGET)
    assert torch.equal(first, second)
    assert {i: m.rule for i, m in enumerate(model) if hasattr(m, "rule")} == rules_before


def test_attribute_signature_matches_captum():
    import inspect
    ours = inspect.signature(LRP.attribute).parameters
    theirs = inspect.signature(CaptumLRP.attribute).parameters
    assert list(theirs)[:6] == list(ours)[:6]
    lours = inspect.signature(LayerLRP.attribute).parameters
    ltheirs = inspect.signature(CaptumLayerLRP.attribute).parameters
    assert list(ltheirs)[:7] == list(lours)[:7]
