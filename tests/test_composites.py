"""Composites: rule assignment by type, name, position; presets; registry; tables."""
import pytest
import torch
import torchvision
from torch import nn

from lrp_captum import (LRP, AlphaBetaRule, Composite, EpsilonRule, FlatRule, GammaRule,
                        GeneralizedGammaRule, NoRuleError, PassRule, ZBoxRule, ZeroRule,
                        ZPlusRule, get_composite, list_composites, zbox_bounds)
from lrp_captum.core import layer_types as types
from lrp_captum.core.composites import First, Name, Position

LOW, HIGH = zbox_bounds((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def vgg():
    return torchvision.models.vgg16().eval()


def _rules(resolved):
    return {name: rule for name, rule in resolved.items()}


def test_registry_lists_the_presets():
    names = set(list_composites())
    assert {"epsilon_gamma_box", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
            "epsilon_alpha2_beta1_flat", "seeds", "epsilon", "zero"} <= names
    with pytest.raises(KeyError, match="choose from"):
        get_composite("no_such_composite")


def test_epsilon_gamma_box_layer_assignment_on_vgg16(vgg):
    rules = _rules(get_composite("epsilon_gamma_box", low=LOW, high=HIGH).resolve(vgg))
    assert isinstance(rules["features.0"], ZBoxRule)
    assert isinstance(rules["features.2"], GeneralizedGammaRule)
    assert isinstance(rules["features.28"], GeneralizedGammaRule)
    assert isinstance(rules["features.1"], PassRule)
    assert isinstance(rules["features.4"], ZeroRule)  # max-pool: winner takes all
    assert all(isinstance(rules[f"classifier.{i}"], EpsilonRule) for i in (0, 3, 6))


def test_seeds_composite_zb_input_gamma_lower_epsilon_middle_zero_dense(vgg):
    rules = _rules(get_composite("seeds", low=LOW, high=HIGH).resolve(vgg))
    convs = [n for n, m in vgg.named_modules() if isinstance(m, nn.Conv2d)]
    assert isinstance(rules[convs[0]], ZBoxRule)
    lower = [n for n in convs[1:] if isinstance(rules[n], GammaRule)]
    middle = [n for n in convs if isinstance(rules[n], EpsilonRule)]
    assert lower == convs[1:7] and middle == convs[7:]  # lower half of 13 convs, as in seed 002
    assert all(type(rules[f"classifier.{i}"]) is ZeroRule for i in (0, 3, 6))
    # boundaries are configurable
    rules = _rules(get_composite("seeds", low=LOW, high=HIGH, lower=0.25).resolve(vgg))
    assert [n for n in convs[1:] if isinstance(rules[n], GammaRule)] == convs[1:4]


def test_flat_presets_put_flat_on_the_first_layer_only(vgg):
    for name, conv_rule in (("epsilon_plus_flat", ZPlusRule),
                            ("epsilon_alpha2_beta1_flat", AlphaBetaRule)):
        rules = _rules(get_composite(name).resolve(vgg))
        assert isinstance(rules["features.0"], FlatRule)
        assert isinstance(rules["features.2"], conv_rule)


def test_box_composites_require_bounds():
    with pytest.raises(ValueError, match="zbox_bounds"):
        get_composite("epsilon_gamma_box")


def test_first_match_wins_and_name_globs_and_positions(vgg):
    composite = Composite([
        (Name("classifier.6"), ZeroRule()),
        ("features.1?", EpsilonRule(0.5)),
        (First(), FlatRule()),
        (Position(0.0, 0.5, types.Convolution), GammaRule(0.1)),
        (types.Linear, EpsilonRule(0.01)),
        (types.Activation + types.Identity + types.MaxPool + types.AvgPool, PassRule()),
    ])
    rules = _rules(composite.resolve(vgg))
    assert type(rules["classifier.6"]) is ZeroRule
    assert rules["features.10"].epsilon == 0.5  # glob beats the position selector below it
    assert isinstance(rules["features.0"], FlatRule)
    assert isinstance(rules["features.5"], GammaRule)
    assert rules["features.28"].epsilon == 0.01


def test_each_layer_gets_a_fresh_rule_instance(vgg):
    resolved = get_composite("epsilon_plus").resolve(vgg)
    rules = [r for r in resolved.values() if isinstance(r, ZPlusRule)]
    assert len(rules) == 13 and len({id(r) for r in rules}) == 13


def test_printed_table_names_layers_and_rules(vgg):
    text = str(get_composite("epsilon_gamma_box", low=LOW, high=HIGH).resolve(vgg))
    assert "features.0" in text and "ZBoxRule" in text and "classifier.6" in text
    assert "GeneralizedGammaRule(gamma=0.25)" in text


def test_table_on_a_canonized_resnet_shows_merged_layers():
    model = torchvision.models.resnet18().eval()
    table = LRP(model, composite=get_composite("epsilon_gamma_box", low=LOW, high=HIGH)) \
        .rule_table(torch.randn(1, 3, 32, 32))
    assert isinstance(table["conv1+bn1"], ZBoxRule)
    assert isinstance(table["layer1.0.conv1+layer1.0.bn1"], GeneralizedGammaRule)
    assert any(name.endswith("sum@add") and isinstance(r, EpsilonRule)
               for name, r in table.items())


def test_layer_map_extends_a_preset_for_custom_modules():
    class Square(nn.Module):
        def forward(self, x):
            return x * x

    model = nn.Sequential(nn.Linear(3, 4), Square(), nn.Linear(4, 2)).eval()
    with pytest.raises(NoRuleError, match="Square"):
        get_composite("epsilon").resolve(model)
    resolved = get_composite("epsilon", layer_map={Square: PassRule()}).resolve(model)
    assert isinstance(resolved["1"], PassRule)


def test_a_module_rule_set_the_captum_way_takes_precedence(vgg):
    vgg.features[2].rule = EpsilonRule(0.3)
    try:
        rules = _rules(get_composite("epsilon_plus").resolve(vgg))
        assert rules["features.2"].epsilon == 0.3
    finally:
        del vgg.features[2].rule


def test_alpha_beta_validation():
    with pytest.raises(ValueError, match="alpha - beta"):
        AlphaBetaRule(2.0, 0.5)
    with pytest.raises(ValueError, match=">= 0"):
        AlphaBetaRule(-1.0, -2.0)


def test_unknown_composite_names_the_registered_ones():
    from lrp_captum import UnknownCompositeError
    with pytest.raises(UnknownCompositeError, match=r"unknown composite 'bogus'; choose from .*epsilon_gamma_box"):
        get_composite("bogus")


def test_bounds_are_derived_from_mean_and_std_for_composites_that_need_them():
    from lrp_captum import IMAGENET_MEAN, IMAGENET_STD, composite_needs_bounds
    assert composite_needs_bounds("epsilon_gamma_box") and composite_needs_bounds("seeds")
    assert not composite_needs_bounds("epsilon_plus")
    derived = get_composite("epsilon_gamma_box", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    box = derived.rules[0][1]
    expected_low = (0.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(box.low, expected_low)
    torch.testing.assert_close(box.high, (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD))
    # composites without bounds accept (and ignore) the normalisation
    assert get_composite("epsilon_plus", mean=IMAGENET_MEAN, std=IMAGENET_STD).name == "epsilon_plus"
    with pytest.raises(ValueError, match="mean=..., std=..."):
        get_composite("epsilon_gamma_box")
