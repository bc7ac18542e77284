"""Engine equivalence: the fused layers (``LRP`` on canonized models) against the hook path
(``fused=False`` / ``canonizers=None``), which ``test_rules_reference`` checks against the
textbook references.

Single layers followed by a ReLU (folded into the layer), whole torchvision models with every
preset composite, the cases where fusing must not happen, and rules subclassed by a user. Only
the public API is used: ``rule_table(x).paths`` says how each layer runs.
"""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import lrp_captum
from lrp_captum.core.layers import Sum
from lrp_captum.core import layer_types as types
from lrp_captum.core.rules import (AlphaBetaRule, EpsilonRule, GammaRule, GeneralizedGammaRule,
                                   LRPRule, PassRule, ProportionalRule, ZBoxRule, ZPlusRule, zbox_bounds)

RULES = {
    "epsilon": lambda: EpsilonRule(0.1),
    "epsilon_relative": lambda: EpsilonRule(0.25, relative=True),
    "gamma": lambda: GammaRule(0.25),
    "gamma_captum_bias": lambda: GammaRule(0.5, modify_bias=False),
    "generalized_gamma": lambda: GeneralizedGammaRule(0.5, stabilizer=0.1),
    "alpha2_beta1": lambda: AlphaBetaRule(2.0, 1.0),
    "zplus": lambda: ZPlusRule(),
    "zbox": lambda: ZBoxRule(-4.0, 4.0),
}
LAYERS = {
    "linear": (lambda: nn.Linear(7, 5), (7,)),
    "conv1d": (lambda: nn.Conv1d(3, 4, 3, stride=2, padding=1), (3, 9)),
    "conv2d_dilated": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=2, dilation=2), (3, 8, 8)),
    "conv2d_groups": (lambda: nn.Conv2d(4, 6, 3, padding=1, groups=2), (4, 6, 6)),
    "conv3d": (lambda: nn.Conv3d(2, 3, 2), (2, 4, 4, 4)),
}


class _LayerReLU(nn.Module):
    def __init__(self, layer, how):
        super().__init__()
        self.layer, self.how = layer, how
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        z = self.layer(x)
        if self.how == "module":
            return self.relu(z)
        if self.how == "function":
            return F.relu(z)
        return z.relu()


def _layer_case(layer_name, nonnegative):
    factory, shape = LAYERS[layer_name]
    torch.manual_seed(sorted(LAYERS).index(layer_name))
    layer = factory().double().eval()
    with torch.no_grad():
        layer.bias.copy_(torch.randn_like(layer.bias) * 0.5)
    x = torch.randn((2,) + shape, dtype=torch.float64).clamp(-3.5, 3.5)
    return layer, (x.abs() if nonnegative else x)


def _attribute(model, rule_or_composite, x, canonizers, fused=True, **kwargs):
    composite = rule_or_composite if not isinstance(rule_or_composite, LRPRule) else \
        lrp_captum.Composite([(types.Linear, rule_or_composite),
                              (types.Activation + types.Identity, PassRule()),
                              ((Sum,), ProportionalRule())])
    lrp = lrp_captum.LRP(model, composite=composite, canonizers=canonizers, fused=fused)
    return lrp.attribute(x, **kwargs), lrp


def _paths(lrp, x):
    """``{layer name: how it runs}`` for the layers with a rule."""
    return lrp.rule_table(x).paths


def _fused(lrp, x):
    return {n for n, p in _paths(lrp, x).items() if p.startswith("fused")}


@pytest.mark.parametrize("nonnegative", [False, True], ids=["signed_x", "nonnegative_x"])
@pytest.mark.parametrize("how", ["module", "function", "method"])
@pytest.mark.parametrize("layer_name", sorted(LAYERS))
@pytest.mark.parametrize("rule_name", sorted(RULES))
def test_layer_with_relu_folded_in_matches_hook_engine(rule_name, layer_name, how, nonnegative):
    layer, x = _layer_case(layer_name, nonnegative)
    model = _LayerReLU(layer, how).eval()
    with torch.no_grad():
        relevance_out = torch.randn_like(model(x))
    fused, lrp = _attribute(model, RULES[rule_name](), x, "auto", output_mode=relevance_out)
    reference, _ = _attribute(model, RULES[rule_name](), x, None, output_mode=relevance_out)
    assert _paths(lrp, x)["layer"] == "fused, ReLU folded in"
    torch.testing.assert_close(fused, reference, rtol=1e-7, atol=1e-9 * reference.abs().max())
    assert model.relu.inplace  # the user's module is untouched


def test_relu_with_several_consumers_is_not_folded():
    torch.manual_seed(0)

    class Fork(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            z = self.conv(x)
            return (F.relu(z) + z).flatten(1)

    model = Fork().double().eval()
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    fused, lrp = _attribute(model, GeneralizedGammaRule(0.25), x, "auto", target=3)
    reference, hooks = _attribute(model, GeneralizedGammaRule(0.25), x, "auto", fused=False,
                                  target=3)
    assert set(_paths(hooks, x).values()) == {"hooks"}
    assert _paths(lrp, x)["conv"] == "fused"  # not folded: the ReLU has two consumers
    torch.testing.assert_close(fused, reference, rtol=1e-8, atol=1e-12)


def test_layer_with_a_user_hook_runs_unfused_and_its_hook_fires():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(36, 3))
    model = model.double().eval()
    calls = []
    handle = model[0].register_forward_hook(lambda m, i, o: calls.append(o.shape))
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    try:
        _, lrp = _attribute(model, EpsilonRule(0.1), x, "auto", target=1)
    finally:
        handle.remove()
    assert _fused(lrp, x) == {"3"}
    assert calls  # the hook saw the attribution's forward pass
    # a hook registered after the plan was made fires too (that layer falls back to hooks)
    later = []
    handle = model[3].register_forward_hook(lambda m, i, o: later.append(o.shape))
    try:
        relevance = lrp.attribute(x, target=1)
    finally:
        handle.remove()
    assert later == [torch.Size([2, 3])]
    torch.testing.assert_close(relevance, lrp.attribute(x, target=1))


MODELS = {
    "vgg11": lambda: torchvision.models.vgg11(weights=None),
    "resnet18": lambda: torchvision.models.resnet18(weights=None),
    "densenet121": lambda: torchvision.models.densenet121(weights=None),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(weights=None),
}
LOW, HIGH = zbox_bounds(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
COMPOSITES = {
    "epsilon": lambda: "epsilon",
    "epsilon_gamma_box": lambda: lrp_captum.get_composite("epsilon_gamma_box", low=LOW,
                                                          high=HIGH),
    "epsilon_plus_flat": lambda: "epsilon_plus_flat",
    "epsilon_alpha2_beta1": lambda: "epsilon_alpha2_beta1",
    "seeds": lambda: lrp_captum.get_composite("seeds", low=LOW, high=HIGH),
}


@pytest.fixture(scope="module")
def images(make_images):
    return make_images(2, 64, torch.float64, seed=3)


@pytest.mark.parametrize("composite", sorted(COMPOSITES))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_models_fused_equal_hook_engine(model_name, composite, images):
    torch.manual_seed(0)
    model = MODELS[model_name]().double().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    target = torch.tensor([1, 7])
    fused, lrp = _attribute(model, COMPOSITES[composite](), images, "auto", target=target)
    assert _fused(lrp, images)
    reference, _ = _attribute(model, COMPOSITES[composite](), images, "auto", fused=False,
                              target=target)
    scale = reference.abs().max()
    torch.testing.assert_close(fused, reference, rtol=1e-7, atol=1e-9 * scale)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("to_input", [False, True])
@pytest.mark.parametrize("layer_name,fused_graph", [("maxpool", True), ("avgpool", True),
                                                    ("fc", False), ("relu", False)])
def test_layer_lrp_runs_fused_unless_a_requested_layer_is_fused(images, layer_name, fused_graph,
                                                                to_input):
    """Probing a fused layer (fc) or a ReLU folded at some call sites needs the hook engine;
    other layers are probed on the fused graph. Both give the same relevances."""
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).double().eval()
    layer = model.get_submodule(layer_name)
    composite = COMPOSITES["epsilon_gamma_box"]()
    hooks = lrp_captum.LayerLRP(model, layer, composite=composite, fused=False)
    reference = hooks.attribute(images, target=1, attribute_to_layer_input=to_input)
    lrp = lrp_captum.LayerLRP(model, layer, composite=composite)
    relevance = lrp.attribute(images, target=1, attribute_to_layer_input=to_input)
    assert bool(_fused(lrp, images)) == fused_graph
    torch.testing.assert_close(relevance, reference, rtol=1e-7,
                               atol=1e-9 * reference.abs().max())


def test_imperative_subclass_runs_its_own_relevance_on_the_hook_path():
    """A subclass that overrides ``relevance`` is imperative: its own code must run, so the
    layer takes the hook path (the parent's declaration is not used)."""

    class CountingEpsilon(EpsilonRule):
        calls = 0

        def relevance(self, module, inputs, output, relevance_out):
            type(self).calls += 1
            return super().relevance(module, inputs, output, relevance_out)

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(36, 3)).double().eval()
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    composite = lrp_captum.Composite([(nn.Conv2d, CountingEpsilon(0.1)), (nn.Linear, ZPlusRule()),
                                      (types.Activation + types.Identity, PassRule())])
    relevance, lrp = _attribute(model, composite, x, "auto", target=1)
    assert _paths(lrp, x) == {"0": "hooks", "1": "hooks", "2": "hooks", "3": "fused"}
    assert CountingEpsilon.calls == 1  # the subclass's own code ran
    plain = lrp_captum.Composite([(nn.Conv2d, EpsilonRule(0.1)), (nn.Linear, ZPlusRule()),
                                  (types.Activation + types.Identity, PassRule())])
    reference, _ = _attribute(model, plain, x, "auto", fused=False, target=1)
    torch.testing.assert_close(relevance, reference)


def test_subclass_declaring_other_groups_runs_its_own_declaration_fused():
    """A subclass that declares other groups needs no other code: every path runs its own
    declaration (here only the positive-output group of the generalised γ)."""

    class PositiveOutputsOnly(GeneralizedGammaRule):
        def groups(self):
            return super().groups()[:1]

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    model = nn.Sequential(conv, nn.Flatten(), nn.Linear(36, 3)).double().eval()
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    composite = lrp_captum.Composite([(nn.Conv2d, PositiveOutputsOnly(0.5)),
                                      (nn.Linear, EpsilonRule(0.1)),
                                      (types.Identity, PassRule())])
    fused, lrp = _attribute(model, composite, x, "auto", target=1)
    assert _paths(lrp, x)["0"] == "fused"
    hooks, _ = _attribute(model, composite, x, "auto", fused=False, target=1)
    torch.testing.assert_close(fused, hooks, rtol=1e-10, atol=1e-12)
    # it differs from the parent rule: negative outputs of the conv pass no relevance
    parent = lrp_captum.Composite([(nn.Conv2d, GeneralizedGammaRule(0.5))] + composite.rules[1:])
    full, _ = _attribute(model, parent, x, "auto", target=1)
    assert not torch.allclose(fused, full)
    # and equals the textbook rule restricted to positive outputs (Captum's path, by hand)
    with torch.no_grad():
        z = conv(x)
    seed = torch.zeros_like(z)
    lin_rel = EpsilonRule(0.1).relevance(model[2], (z.flatten(1),), model[2](z.flatten(1)),
                                         torch.eye(3, dtype=torch.float64)[[1, 1]] *
                                         model[2](z.flatten(1)))[0].reshape(z.shape)
    (expected,) = PositiveOutputsOnly(0.5).relevance(conv, (x,), z, lin_rel + seed)
    torch.testing.assert_close(fused, expected, rtol=1e-8, atol=1e-12)
