"""The table of kinds of declaration is the one place a declaration gets its meaning: a kind
registered in a test runs on the hook path, on Captum's path and on a family of functions, and
the conservation diagnosis reads its properties from the table."""
from __future__ import annotations

import typing
import warnings
from dataclasses import dataclass

import captum.attr
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrp_captum import LRP, EpsilonRule, LRPRule, PassRule, get_composite
from lrp_captum.core import rules
from lrp_captum.core.composites import Op
from lrp_captum.core.engine.autograd import relevance_output
from lrp_captum.core.engine.declaration_kinds import (KINDS, DeclarationKind, kind_of,
                                                      register_kind)
from lrp_captum.core.engine.functional import identity_rule, scale_gradient


@dataclass(frozen=True)
class Halve:
    """``R_in = R_out / 2`` through an elementwise layer (a test kind)."""


class HalveRule(LRPRule):
    def declaration(self):
        return Halve()


def _halve_relevance(decl, module, inputs, output, relevance_out):
    return (relevance_out.reshape(inputs[0].shape) / 2,)


def _halve_hook_output(compiled, module, inputs, output):
    def relevance(module, inputs, output, relevance_out):
        return _halve_relevance(compiled.declaration, module, inputs, output, relevance_out)
    return relevance_output(relevance, module, inputs, output)


def _halve_activation(compiled, func, args, kwargs):
    return scale_gradient(identity_rule(func, args[0], **kwargs), 0.5)


@pytest.fixture()
def halve_kind():
    register_kind(Halve, DeclarationKind(
        relevance=_halve_relevance, hook_output=_halve_hook_output,
        functions={"activation": _halve_activation},
        nonconservative="it passes half of the relevance on"))
    yield
    del KINDS[Halve]


class _Mlp(nn.Module):
    def __init__(self, functional: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc1, self.act, self.fc2 = nn.Linear(6, 8), nn.SiLU(), nn.Linear(8, 3)
        self.functional = functional

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(F.silu(h) if self.functional else self.act(h))


def test_a_registered_kind_runs_on_the_hook_path(halve_kind):
    model, x = _Mlp().eval(), torch.randn(4, 6)
    halved = LRP(model, get_composite("epsilon", layer_map={nn.SiLU: HalveRule()}),
                 canonizers=None).attribute(x, target=1)
    passed = LRP(model, get_composite("epsilon", layer_map={nn.SiLU: PassRule()}),
                 canonizers=None).attribute(x, target=1)
    torch.testing.assert_close(halved, passed / 2)


def test_a_registered_kind_runs_beside_fused_layers(halve_kind):
    model, x = _Mlp().eval(), torch.randn(4, 6)
    lrp = LRP(model, get_composite("epsilon", layer_map={nn.SiLU: HalveRule()}))
    halved = lrp.attribute(x, target=1)
    passed = LRP(model, get_composite("epsilon", layer_map={nn.SiLU: PassRule()})).attribute(
        x, target=1)
    assert lrp.rule_table(x).paths["fc1"] == "fused"
    torch.testing.assert_close(halved, passed / 2)


def test_a_registered_kind_runs_on_captums_path(halve_kind):
    def captum_relevance(rule):
        model = _Mlp().eval()
        model.fc1.rule, model.act.rule, model.fc2.rule = EpsilonRule(), rule, EpsilonRule()
        return captum.attr.LRP(model).attribute(torch.randn(4, 6, generator=torch.Generator()
                                                            .manual_seed(1)), target=1)

    torch.testing.assert_close(captum_relevance(HalveRule()), captum_relevance(PassRule()) / 2)


def test_a_registered_kind_runs_on_a_family_of_functions(halve_kind):
    model, x = _Mlp(functional=True).eval(), torch.randn(4, 6)
    halved = LRP(model, get_composite("attnlrp", layer_map={Op("activation"): HalveRule()})
                 ).attribute(x, target=1)
    passed = LRP(model, "attnlrp").attribute(x, target=1)
    torch.testing.assert_close(halved, passed / 2)


def test_a_family_the_kind_does_not_cover_is_refused_naming_the_rule(halve_kind):
    from lrp_captum.core.engine.functional import UncoveredOpError

    class Gate(nn.Module):
        def forward(self, x):
            return torch.softmax(x, dim=-1) * 2

    with pytest.raises(UncoveredOpError, match=r"'softmax' family, HalveRule\(\), does not apply"):
        LRP(Gate().eval(), get_composite("attnlrp", layer_map={Op("softmax"): HalveRule()})
            ).attribute(torch.randn(2, 5), target=0)


def test_the_diagnosis_names_layers_whose_kind_does_not_conserve_relevance(halve_kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 5), *[nn.SiLU() for _ in range(8)], nn.Linear(5, 2)).eval()
    lrp = LRP(model, get_composite("epsilon", layer_map={nn.SiLU: HalveRule()}), canonizers=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lrp.attribute(torch.rand(6, 5) + 1, target=0)
    text = " ".join(str(w.message) for w in caught)
    assert "does not add up" in text
    assert "layers whose rule does not conserve relevance by design: '1', '2'" in text


def test_a_declaration_of_an_unknown_kind_is_refused_naming_register_kind():
    class Unknown:
        pass

    with pytest.raises(TypeError, match=r"declarations of type Unknown.*register_kind"):
        kind_of(Unknown())


def test_every_kind_of_declaration_of_the_package_has_a_row():
    declared = set(typing.get_args(rules.Declaration))
    assert len(declared) == 7 and declared <= set(KINDS)


def test_the_constant_rule_on_products_passes_no_relevance_through_them():
    """docs/transformers.md: ``layer_map={Op("mul"): ConstantRule()}`` covers a product."""
    from lrp_captum.core.rules import ConstantRule

    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b, self.head = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 2)

        def forward(self, x):
            return self.head(self.a(x) * self.b(x) + self.a(x))

    model, x = Gated().eval(), torch.randn(3, 4)
    constant = LRP(model, get_composite("attnlrp", layer_map={Op("mul"): ConstantRule()}))

    class Residual(nn.Module):  # the same model without the product's relevance
        def forward(self, x):
            return model.head((model.a(x) * model.b(x)).detach() + model.a(x))

    torch.testing.assert_close(constant.attribute(x, target=0),
                               LRP(Residual().eval(), "attnlrp").attribute(x, target=0))
