"""Canonizers rewrite a copy of the graph; the model itself is never touched."""
import torch
import torch.nn.functional as F
from torch import nn

from lrp_captum import LRP, canonize
from lrp_captum.core.layers import FunctionalActivation, GatedProduct, MergedBatchNorm, Sum


class Block(nn.Module):
    """Functional activations, in-place ops, a gate, a residual sum and a concatenation."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(8 * 4, 3)

    def forward(self, x):
        h = F.silu(self.bn(self.conv(x)))
        gate = torch.sigmoid(self.fc(h.mean((2, 3), keepdim=True)))
        h = h * gate
        h = F.relu(h + x, inplace=True)
        h = torch.cat([h, x], 1)
        return self.head(F.adaptive_avg_pool2d(h, 2).flatten(1))


def _model():
    torch.manual_seed(0)
    m = Block().eval()
    m.bn.running_mean.uniform_(-1, 1)
    m.bn.running_var.uniform_(0.5, 2)
    return m


def test_rewrites_each_pattern_into_a_layer():
    model = _model()
    x = torch.randn(2, 4, 6, 6)
    canonized = canonize(model, (x,))
    kinds = [type(m) for _, m in canonized.layers()]
    assert MergedBatchNorm in kinds and Sum in kinds and GatedProduct in kinds
    assert sum(k is FunctionalActivation for k in kinds) == 2  # silu and sigmoid
    with torch.no_grad():
        assert torch.allclose(canonized.module(x), model(x), atol=1e-5)


def test_merged_batchnorm_follows_later_weight_changes():
    model = _model()
    x = torch.randn(2, 4, 6, 6)
    canonized = canonize(model, (x,))
    with torch.no_grad():
        model.conv.weight.mul_(2.0)
        model.bn.running_var.mul_(0.5)
        assert torch.allclose(canonized.module(x), model(x), atol=1e-5)


def test_gate_gets_no_relevance_and_value_path_conserves():
    model = _model().double()
    for m in (model.fc, model.head):
        nn.init.zeros_(m.bias)
    model.bn.running_mean.zero_()
    model.bn.bias.data.zero_()
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    r, delta = LRP(model, composite="zero").attribute(x, target=1, return_convergence_delta=True)
    assert delta.abs().max() < 1e-9 * model(x).abs().max()


def test_the_users_model_is_not_modified():
    model = _model()
    before = {n: type(m) for n, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    canonize(model, (torch.randn(1, 4, 6, 6),))
    assert {n: type(m) for n, m in model.named_modules()} == before
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_untraceable_model_gets_advice():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow
                return self.lin(x)
            return -self.lin(x)

    import pytest
    from lrp_captum import CanonizationError
    with pytest.raises(CanonizationError, match="canonizers=None"):
        LRP(Dynamic().eval(), canonizers="auto").attribute(torch.randn(1, 3), target=0)
    # and it works without canonizers
    r = LRP(Dynamic().eval(), canonizers=None).attribute(torch.ones(1, 3), target=0)
    assert r.shape == (1, 3)


def test_untraceable_submodule_is_named():
    import pytest
    from lrp_captum import CanonizationError

    class Gate(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # data-dependent control flow

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.gate = nn.Linear(3, 3), Gate()

        def forward(self, x):
            return self.gate(self.lin(x))

    model = nn.Sequential(nn.Linear(3, 3), Block(), nn.Linear(3, 2)).eval()
    with pytest.raises(CanonizationError, match=r"module '1\.gate' \(Gate\)"):
        LRP(model, canonizers="auto").attribute(torch.randn(2, 3), target=0)
    # the default canonizers fall back to the leaf modules and name the module in a warning;
    # there the Gate module has no rule, and the error names it
    from lrp_captum import NoRuleError
    with pytest.warns(UserWarning, match=r"module '1\.gate' \(Gate\)"), \
            pytest.raises(NoRuleError, match=r"'1\.gate' \(Gate\)"):
        LRP(model).attribute(torch.randn(2, 3), target=0)


def test_a_conv_with_a_bias_merges_into_a_trained_batchnorm_as_the_textbook_affine_map():
    """``BN(Wx + b) = s·W x + (s·b + t)`` with ``s = γ/√(var+eps)``, ``t = β − mean·s``: the
    merged parameters in float64, against the formula, on non-identity statistics."""
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(3, 5, 3), nn.BatchNorm2d(5)
    with torch.no_grad():
        conv.bias.uniform_(-2, 2)
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.3, 3)
    conv, bn = conv.double().eval(), bn.double().eval()
    weight, bias = MergedBatchNorm(conv, bn).lrp_parameters()
    s = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy()
    t = bn.bias.detach().numpy() - bn.running_mean.numpy() * s
    expected_w = conv.weight.detach().numpy() * s[:, None, None, None]
    expected_b = conv.bias.detach().numpy() * s + t
    assert abs(weight.detach().numpy() - expected_w).max() < 1e-12
    assert abs(bias.detach().numpy() - expected_b).max() < 1e-12
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(MergedBatchNorm(conv, bn)(x), bn(conv(x)))


class _Scaled(nn.Module):
    """A product with a constant (``x * 0.5``) and a Python number among the outputs."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 5, bias=False), nn.Linear(5, 2, bias=False)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)) * 0.5), x.shape[-1] / 8


def test_a_product_with_a_constant_and_a_number_among_the_outputs_canonize_as_they_are():
    torch.manual_seed(0)
    model = _Scaled().double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    canonized = canonize(model, (x,))
    assert canonized.module(x)[1] == 0.5 and not canonized.changes
    relevance = LRP(model, composite="zero", canonizers="auto").attribute(x, target=1)
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(model(xg)[0][:, 1].sum(), xg)
    torch.testing.assert_close(relevance, x * grad)  # LRP-0 on a ReLU network: gradient × input


class _MethodPow(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(self.fc1(x).pow(2))


def test_a_tensor_method_no_rule_covers_is_refused_by_name():
    import pytest
    from lrp_captum import CanonizationError

    with pytest.raises(CanonizationError, match="call_method 'pow'"):
        LRP(_MethodPow().eval(), composite="epsilon", canonizers="auto").attribute(torch.randn(2, 4), target=0)


def test_a_transposed_convolution_merges_its_batchnorm_per_output_channel():
    torch.manual_seed(5)
    model = nn.Sequential(nn.ConvTranspose2d(3, 4, 3, stride=2), nn.BatchNorm2d(4)).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
        model[1].weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 5, 5)
    canonized = canonize(model, (x,))
    assert any("BatchNorm" in c for c in canonized.changes)
    torch.testing.assert_close(canonized.module(x), model(x), rtol=1e-5, atol=1e-5)
