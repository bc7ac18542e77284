"""For non-negative inputs the term rules evaluate all groups in one stacked layer call;
the result must equal the term-by-term evaluation."""
import pytest
import torch
from torch import nn

from lrp_captum import LRP, AlphaBetaRule, Composite, GammaRule, GeneralizedGammaRule, ZPlusRule
from lrp_captum import rules as rules_module

LAYERS = [lambda: nn.Linear(6, 5), lambda: nn.Conv2d(3, 4, 3, padding=1),
          lambda: nn.Conv1d(2, 3, 3, stride=2)]
RULES = [lambda: GeneralizedGammaRule(0.5, stabilizer=0.1), lambda: AlphaBetaRule(2, 1),
         lambda: ZPlusRule(), lambda: GammaRule(0.25)]


def _input(layer):
    shape = {nn.Linear: (2, 6), nn.Conv2d: (2, 3, 5, 5), nn.Conv1d: (2, 2, 9)}[type(layer)]
    return torch.relu(torch.randn(shape, dtype=torch.float64))  # ReLU inputs: x >= 0


@pytest.mark.parametrize("make_layer", LAYERS)
@pytest.mark.parametrize("make_rule", RULES)
def test_fused_groups_equal_term_by_term(make_layer, make_rule, monkeypatch):
    torch.manual_seed(0)
    layer = make_layer().double().eval()
    x = _input(layer)
    r_out = torch.randn_like(layer(x))
    composite = Composite([((type(layer),), make_rule())])
    fused = LRP(nn.Sequential(layer).eval(), composite=composite, canonizers=None).attribute(
        x, output_mode=r_out)
    monkeypatch.setattr(rules_module, "_fused_group_outputs", lambda *a: None)
    separate = LRP(nn.Sequential(layer).eval(), composite=composite, canonizers=None).attribute(
        x, output_mode=r_out)
    with_negative = x.clone()
    with_negative.view(-1)[0] = -1e-300  # forces the general path with x⁺/x⁻ terms
    general = make_rule().relevance(layer, (with_negative,), layer(with_negative), r_out)[0]
    assert torch.allclose(fused, separate, rtol=1e-10, atol=1e-12)
    assert torch.allclose(fused, general, rtol=1e-8, atol=1e-12)
