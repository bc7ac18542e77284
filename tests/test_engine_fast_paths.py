"""The engine's cheap forms of the transformer rules, against references written here, and what a
first call and a new batch size cost in planning.

The fast forms: normalisations run their own kernel with a constant-scale backward
(``F.layer_norm``, ``F.rms_norm``), products scale the gradient of their output instead of each
factor, elementwise activation modules under the pass rule keep one ratio. Each must give the
relevances of the rule as the papers write it (float64, matrix form), also where the model
modifies a product's output in place.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrp_captum import LRP, get_composite
from lrp_captum.core.canonizers import CANONIZATION_EXAMPLES, few_examples
from lrp_captum.core.rules import PassRule

D = 6


def _np(t):
    return t.detach().numpy().astype(np.float64)


class RMSBlock(nn.Module):
    """``head(rms_norm(x) ⊙ w)`` on token 0; no bias anywhere, so the rules conserve."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(D, dtype=torch.float64) + 0.5)
        self.head = nn.Linear(D, 3, bias=False, dtype=torch.float64)

    def forward(self, x):
        return self.head(F.rms_norm(x, (D,), self.weight, 1e-6)[:, 0])


def test_rms_norm_has_its_scale_constant_as_the_reference_writes_it():
    torch.manual_seed(0)
    model = RMSBlock().eval()
    x = torch.randn(2, 4, D, dtype=torch.float64)
    relevance = LRP(model, composite=get_composite("attnlrp")).attribute(x, target=1)
    for i in range(2):
        xi, w, W = _np(x[i, 0]), _np(model.weight), _np(model.head.weight)
        s = 1 / np.sqrt((xi ** 2).mean() + 1e-6)
        h = xi * s * w
        z = W @ h
        R_h = h * W[1] * z[1] / z[1]  # LRP-0 on the head: h_j W_1j
        M = np.diag(w) * s  # the normalisation as a linear map, its scale constant
        R_x = (xi[None, :] * M / h[:, None] * R_h[:, None]).sum(0)
        expected = np.zeros((4, D))
        expected[0] = R_x
        np.testing.assert_allclose(relevance[i].numpy(), expected, rtol=1e-9, atol=1e-12)
        assert relevance[i].sum().item() == pytest.approx(z[1], rel=1e-9)


class SquashActivation(nn.Module):
    """A hand-written activation module (found by its class name): ``x · sigmoid(x)``."""

    def forward(self, x):
        return x * torch.sigmoid(x)


class ActivationNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 5, bias=False, dtype=torch.float64)
        self.act = SquashActivation()
        self.fc2 = nn.Linear(5, 2, bias=False, dtype=torch.float64)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_an_activation_module_under_the_pass_rule_passes_relevance_unchanged():
    torch.manual_seed(1)
    model = ActivationNet().eval()
    with torch.no_grad():
        model.fc1.weight[2] = 0.0  # a unit whose input is exactly 0
    x = torch.randn(3, 4, dtype=torch.float64)
    composite = get_composite("attnlrp", layer_map={SquashActivation: PassRule()})
    relevance = LRP(model, composite=composite).attribute(x, target=0)
    W1, W2 = _np(model.fc1.weight), _np(model.fc2.weight)
    for i in range(3):
        xi = _np(x[i])
        u = W1 @ xi
        a = u / (1 + np.exp(-u))
        R_a = a * W2[0]  # LRP-0 on fc2
        R_u = R_a  # the pass rule: R_in = R_out, 0 where u = 0
        R_x = (xi[None, :] * W1 / np.where(u == 0, 1, u)[:, None] * R_u[:, None]).sum(0)
        np.testing.assert_allclose(relevance[i].numpy(), R_x, rtol=1e-9, atol=1e-12)
    assert torch.isfinite(relevance).all()


class ScoresInPlace(nn.Module):
    """Attention scores with the mask added in place to the product's output, as some models
    write it; ``ScoresOutOfPlace`` is the same computation without the in-place add."""

    in_place = True

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(D, D, bias=False, dtype=torch.float64)
        self.k = nn.Linear(D, D, bias=False, dtype=torch.float64)
        self.v = nn.Linear(D, D, bias=False, dtype=torch.float64)
        self.head = nn.Linear(D, 2, bias=False, dtype=torch.float64)

    def forward(self, x):
        mask = torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype)
        mask[:, -1] = -1e4  # no token attends to the last one
        scores = self.q(x) @ self.k(x).transpose(-1, -2)
        if self.in_place:
            scores += mask
        else:
            scores = scores + mask
        return self.head((torch.softmax(scores, -1) @ self.v(x))[:, 0])


class ScoresOutOfPlace(ScoresInPlace):
    in_place = False


@pytest.mark.parametrize("rule", ["attnlrp", "cp_lrp"])
def test_a_product_modified_in_place_afterwards_keeps_its_rule(rule):
    torch.manual_seed(2)
    in_place, out_of_place = ScoresInPlace().eval(), ScoresOutOfPlace().eval()
    out_of_place.load_state_dict(in_place.state_dict())
    x = torch.randn(2, 4, D, dtype=torch.float64)
    got = LRP(in_place, composite=rule, canonizers=None).attribute(x, target=1)
    expected = LRP(out_of_place, composite=rule, canonizers=None).attribute(x, target=1)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    # and the share of the product rule is in it: AttnLRP differs from CP-LRP on the same model
    other = LRP(out_of_place, composite="cp_lrp" if rule == "attnlrp" else "attnlrp",
                canonizers=None).attribute(x, target=1)
    assert not torch.allclose(got, other, rtol=1e-3)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def _trained_statistics(model):
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_a_new_batch_size_reuses_the_plan_and_gives_what_a_fresh_plan_gives():
    torch.manual_seed(3)
    model = _trained_statistics(SmallCNN())
    lrp = LRP(model, composite="epsilon_plus")
    lrp.attribute(torch.randn(8, 3, 8, 8), target=1)
    x = torch.randn(3, 3, 8, 8)
    again = lrp.attribute(x, target=1)
    assert len(lrp._plans._plans) == 1  # planned once, for both batch sizes
    fresh = LRP(model, composite="epsilon_plus").attribute(x, target=1)
    torch.testing.assert_close(again, fresh)


def test_a_new_image_size_is_planned_anew():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2)).eval()
    lrp = LRP(model, composite="epsilon")
    lrp.attribute(torch.randn(2, 3, 8, 8), target=0)
    lrp.attribute(torch.randn(2, 3, 12, 12), target=0)
    assert len(lrp._plans._plans) == 2


def test_canonization_runs_on_the_first_examples_of_the_batch_only():
    x, mask, table = torch.randn(10, 3), torch.ones(10, 4), torch.randn(7, 3)
    cut = few_examples((x, mask, table, None, 5))
    assert [t.shape[0] for t in cut[:3]] == [CANONIZATION_EXAMPLES, CANONIZATION_EXAMPLES, 7]
    assert cut[3:] == (None, 5)
    small = (torch.randn(CANONIZATION_EXAMPLES, 3),)
    assert few_examples(small)[0] is small[0]


def test_a_non_finite_example_beyond_the_canonized_ones_is_still_named():
    model = _trained_statistics(SmallCNN())
    x = torch.randn(6, 3, 8, 8)
    x[4, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"first at \(4, 1, 2, 3\)"):
        LRP(model, composite="epsilon").attribute(x, target=0)


class Swap(nn.Module):
    """Not elementwise: swaps the two halves of the features."""

    def forward(self, x):
        return torch.cat([x[:, 2:], x[:, :2]], 1)


def test_the_conservation_diagnosis_suspects_a_reordering_layer_not_an_activation_module():
    from lrp_captum.core.engine.conservation import likely_causes

    model = nn.Sequential(nn.Linear(4, 4), SquashActivation(), Swap(), nn.Linear(4, 2)).eval()
    composite = get_composite("attnlrp", layer_map={SquashActivation: PassRule(), Swap: PassRule()})
    lrp = LRP(model, composite=composite, canonizers=None)
    lrp.attribute(torch.randn(2, 4), target=0)
    (plan,) = lrp._plans._plans.values()
    suspects = [c for c in likely_causes(plan) if c.startswith("layers that are not elementwise")]
    assert suspects == ["layers that are not elementwise but pass relevance unchanged: '2'"]


def test_a_target_outside_the_outputs_is_named():
    model = nn.Linear(4, 5).eval()
    with pytest.raises(ValueError, match=r"target 7 is out of range: the model has 5 outputs"):
        LRP(model, composite="epsilon").attribute(torch.randn(2, 4), target=7)


def test_the_diagnosis_suspects_user_code_only_where_a_rule_is_user_code():
    from lrp_captum.core.engine.conservation import likely_causes

    lrp = LRP(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).eval(), composite="epsilon")
    lrp.attribute(torch.randn(2, 4), target=0)
    (plan,) = lrp._plans._plans.values()
    assert not [c for c in likely_causes(plan) if "user code" in c]


class WrappedLayerNorm(nn.Module):
    """A library's LayerNorm that calls ``F.layer_norm`` itself (found by its class name)."""

    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(d, dtype=torch.float64) + 0.5)
        self.bias = nn.Parameter(torch.randn(d, dtype=torch.float64))

    def forward(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, 1e-5)


class NormHead(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.norm, self.head = norm, nn.Linear(D, 2, dtype=torch.float64)

    def forward(self, x):
        return self.head(self.norm(x))


@pytest.mark.parametrize("rule", ["attnlrp", "cp_lrp"])
def test_a_hand_written_layer_norm_gets_the_rule_of_nn_layernorm(rule):
    torch.manual_seed(4)
    wrapped = NormHead(WrappedLayerNorm(D)).eval()
    native = NormHead(nn.LayerNorm(D, dtype=torch.float64)).eval()
    native.load_state_dict(wrapped.state_dict())
    x = torch.randn(3, D, dtype=torch.float64)
    got = LRP(wrapped, composite=rule, canonizers=None).attribute(x, target=1)
    expected = LRP(native, composite=rule, canonizers=None).attribute(x, target=1)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_a_scalar_tensor_argument_is_left_whole_and_does_not_set_the_batch():
    scale, x = torch.tensor(3.0), torch.randn(10, 3)
    cut = few_examples((scale, x))
    assert cut[0] is scale and cut[1].shape[0] == CANONIZATION_EXAMPLES


@pytest.mark.parametrize("positive, negative, formula", [(1, 1, "w"), (2, 2, "2w"), (1.25, 1, "w + 0.25w⁺"),
                                                         (1, 0, "w⁺"), (0, 1, "w⁻"), (1, 1.5, "w + 0.5w⁻"),
                                                         (2, 3, "2w⁺ + 3w⁻")])
def test_a_parameter_modifier_writes_its_formula(positive, negative, formula):
    from lrp_captum.core.rules import Mix

    assert repr(Mix(positive, negative)) == formula


def test_a_modifier_scaling_both_signs_alike_scales_the_parameters():
    from lrp_captum.core.rules import Mix

    t = torch.tensor([-2.0, 0.0, 3.0])
    torch.testing.assert_close(Mix(2, 2)(t), 2 * t)
    torch.testing.assert_close(Mix(1.5, 0.5)(t), torch.tensor([-1.0, 0.0, 4.5]))


def test_every_declaration_is_an_immutable_hashable_value():
    import dataclasses
    import inspect

    from lrp_captum.core import rules

    declarations = [c for _, c in inspect.getmembers(rules, inspect.isclass)
                    if dataclasses.is_dataclass(c) and c.__module__ == rules.__name__]
    assert len(declarations) >= 10
    for cls in declarations:
        assert cls.__dataclass_params__.frozen, cls.__name__
        assert cls.__hash__ is not None, cls.__name__


class Shifted(nn.Module):
    """``head(relu(fc(x + b)))`` with the shift ``b`` an argument of shape ``(features,)``."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4, bias=False, dtype=torch.float64)
        self.head = nn.Linear(4, 2, bias=False, dtype=torch.float64)

    def forward(self, x, b):
        return self.head(torch.relu(self.fc(x + b)))


def test_an_argument_whose_first_dimension_only_equals_the_batch_size_is_not_cut():
    torch.manual_seed(6)
    model = Shifted().eval()
    x, b = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)  # N = 3 = b's length
    got = LRP(model, composite="zero", canonizers="auto").attribute(x, target=0, additional_forward_args=(b,))
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(model(xg, b)[:, 0].sum(), xg)
    h = x + b  # LRP-0 on a ReLU network: gradient × input at x + b, shared with b in proportion
    torch.testing.assert_close(got, x / h * (h * grad))
