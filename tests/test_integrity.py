"""The user's model comes back exactly as it was, after success and after an error."""
import gc
import weakref

import pytest
import torch
import torchvision
from torch import nn

from lrp_captum import LRP, LayerLRP, NoRuleError, get_composite
from lrp_captum.core.canonizers import CanonizationError
from lrp_captum.core.rules import LRPRule


def _snapshot(model):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    per_module = {}
    for name, m in model.named_modules():
        hooks = {k: len(v) for k, v in m.__dict__.items() if "hooks" in k and isinstance(v, dict)}
        attrs = {k: (v if isinstance(v, (bool, int, float, str, tuple)) else type(v).__name__)
                 for k, v in m.__dict__.items() if not k.startswith("_")}
        per_module[name] = (hooks, attrs)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    return state, per_module, flags


def _assert_same(model, snap):
    state, per_module, flags = _snapshot(model)
    assert state.keys() == snap[0].keys()
    for k in state:
        assert torch.equal(state[k], snap[0][k]), k
    assert per_module == snap[1]
    assert flags == snap[2]


@pytest.fixture()
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


def test_model_unchanged_after_successful_calls(resnet):
    snap = _snapshot(resnet)
    x = torch.randn(1, 3, 32, 32)
    for composite in ("epsilon", "epsilon_plus_flat"):
        for canonizers in ("auto", None):
            LRP(resnet, composite=composite, canonizers=canonizers).attribute(x, target=1)
    LayerLRP(resnet, resnet.layer2).attribute(x, target=1)
    _assert_same(resnet, snap)
    assert resnet.relu.inplace is True  # in-place flags restored


class _Boom(LRPRule):
    def relevance(self, module, inputs, output, relevance_out):
        raise RuntimeError("boom")


@pytest.mark.parametrize("canonizers", ["auto", None])
def test_model_unchanged_after_a_failure_inside_backward(resnet, canonizers):
    snap = _snapshot(resnet)
    composite = get_composite("epsilon", layer_map={nn.MaxPool2d: _Boom()})
    with pytest.raises(RuntimeError, match="boom"):
        LRP(resnet, composite=composite, canonizers=canonizers).attribute(
            torch.randn(1, 3, 32, 32), target=0)
    _assert_same(resnet, snap)


def test_model_unchanged_after_a_bad_target(resnet):
    snap = _snapshot(resnet)
    with pytest.raises(Exception):
        LRP(resnet).attribute(torch.randn(1, 3, 32, 32), target=5000)
    _assert_same(resnet, snap)


def test_unsupported_module_raises_before_anything_changes():
    class Weird(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return x * self.w

    model = nn.Sequential(nn.Linear(3, 4), Weird(), nn.Linear(4, 2)).eval()
    snap = _snapshot(model)
    with pytest.raises(NoRuleError, match=r"'1' \(Weird\).*layer_map"):
        LRP(model).attribute(torch.randn(2, 3), target=0)
    _assert_same(model, snap)


def test_unsupported_op_is_named_before_anything_changes():
    class Attention(nn.Module):
        def forward(self, x):
            return torch.softmax(x @ x.transpose(1, 2), -1) @ x

    model = nn.Sequential(nn.Linear(4, 4), Attention(), nn.Flatten(), nn.Linear(12, 2)).eval()
    snap = _snapshot(model)
    with pytest.raises(CanonizationError, match="softmax|matmul"):
        LRP(model).attribute(torch.randn(2, 3, 4), target=0)
    _assert_same(model, snap)


def test_results_are_detached_and_nothing_stays_referenced(resnet):
    x = torch.randn(2, 3, 32, 32)
    lrp = LRP(resnet, composite="epsilon_plus_flat")
    relevance, delta = lrp.attribute(x, target=[1, 2], return_convergence_delta=True)
    assert not relevance.requires_grad and relevance.grad_fn is None
    assert not delta.requires_grad
    # no tensors of the call stay on the rules or modules
    for rule in lrp.rule_table(x).values():
        assert not any(torch.is_tensor(v) for k, v in vars(rule).items()
                       if k not in ("low", "high"))
    assert not any(hasattr(m, "activations") for m in resnet.modules())
    ref = weakref.ref(relevance)
    del relevance
    gc.collect()
    assert ref() is None


def test_repeated_calls_are_identical(resnet):
    # float64: bitwise. float32 convolutions (oneDNN) are not bitwise reproducible on every CPU
    # -- the plain input gradient is not either -- so there: equal up to float32 rounding
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    lrp = LRP(resnet.double(), composite="epsilon_plus_flat")
    assert torch.equal(lrp.attribute(x, target=3), lrp.attribute(x, target=3))
    lrp32 = LRP(resnet.float(), composite="epsilon_plus_flat")
    first, second = (lrp32.attribute(x.float(), target=3) for _ in range(2))
    torch.testing.assert_close(first, second, rtol=1e-5, atol=1e-6 * first.abs().max())


def test_model_unchanged_after_a_failure_inside_a_fused_layer(resnet, monkeypatch):
    from lrp_captum.core.engine import fused

    resnet = resnet.double()  # bitwise reproducible kernels (see test_repeated_calls_...)
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    snap = _snapshot(resnet)
    lrp = LRP(resnet, composite="epsilon_plus_flat")
    expected = lrp.attribute(x, target=0)

    def boom(*args, **kwargs):
        raise RuntimeError("boom in a fused backward")

    with monkeypatch.context() as patch:
        patch.setattr(fused, "input_gradient", boom)
        with pytest.raises(RuntimeError, match="fused backward"):
            lrp.attribute(x, target=0)
    _assert_same(resnet, snap)
    assert torch.equal(lrp.attribute(x, target=0), expected)  # the same object still works
