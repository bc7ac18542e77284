"""Fused layer evaluation for :class:`lrp_captum.LRP` on canonized models.

The hook engine (:meth:`lrp_captum.rules.LRPRule.engine_output`) lets a layer run its own
forward pass with autograd and then attaches the rule to its output. That costs the layer's
autograd graph, a copy of the output and elementwise work on every call, and the ReLU that
follows keeps its own copy of the activation for its backward pass.

Here a layer with a rule runs as **one autograd function** that evaluates the layer without
autograd, keeps one tensor per layer for the backward pass (the per-element factor of the rule)
and computes the input gradient itself (``W^T u`` through ``convolution_backward`` / a matrix
product). When the layer's only consumer is a ReLU, the ReLU is folded in: the relevance of an
output with ``z ≤ 0`` is zero after a ReLU (the engine propagates ``c = R / a`` and ``a = 0``),
so the factor is masked and the ReLU's own backward pass disappears.

Per layer, against the input gradient's one convolution forward and one backward:

=====================  ======================  =========================  ==================
rule                   forward convolutions    backward convolutions      kept for backward
=====================  ======================  =========================  ==================
ε                      1 (``Wx + b``)          1 (``W^T u``)              ``z`` (or ``a``)
γ (textbook)           2 (``W⁺x``, ``W⁻x``)    1 (``(W + γW⁺)^T u``)      1 factor
generalised γ, + ReLU  2                       1 (negative outputs: none)  1 factor
generalised γ          2                       2                          1 signed factor
αβ / z⁺                2                       2 (z⁺: 1)                  1-2 factors
z^B (input layer)      1 + 2 on one example    3 (``W, W⁺, W⁻``)          factor and ``x``
=====================  ======================  =========================  ==================

Every function here is checked against the textbook references and the hook engine in
``tests/test_rules_reference.py`` and ``tests/test_fast_path.py``.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import MergedBatchNorm, Sum
from .linear_ops import layer_parameters, linear_forward

__all__ = ["supports_linear", "build_fast_graph", "FastLayer"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_RELU_FUNCTIONS = (F.relu, torch.relu)


# ---------------------------------------------------------------------------------------------
# linear maps: forward with given parameters, and the input gradient W^T u
# ---------------------------------------------------------------------------------------------
def _base(module: nn.Module) -> nn.Module:
    return module.linear if isinstance(module, MergedBatchNorm) else module


def supports_linear(module: nn.Module) -> bool:
    """Linear or zero-padded Conv1d/2d/3d (possibly with merged BatchNorm)."""
    base = _base(module)
    if type(base) is nn.Linear:
        return True
    return (type(base) in _CONV and base.padding_mode == "zeros"
            and not isinstance(base.padding, str))


def _channel(v: Tensor, like: Tensor, module: nn.Module) -> Tensor:
    """Per-output-channel vector shaped to broadcast against an output ``like``."""
    if isinstance(_base(module), nn.Linear):
        return v
    return v.reshape((1, -1) + (1,) * (like.dim() - 2))


def _input_grad(module: nn.Module, u: Tensor, weight: Tensor, input_shape) -> Tensor:
    """``W^T u``: the gradient of the layer's input for the output gradient ``u``."""
    base = _base(module)
    if isinstance(base, nn.Linear):
        return u.matmul(weight)
    # only the input's shape is read; an expanded placeholder would be copied to a contiguous
    # tensor inside convolution_backward, an uninitialised one costs nothing
    placeholder = u.new_empty(input_shape)
    dims = weight.dim() - 2
    return torch.ops.aten.convolution_backward(
        u, placeholder, weight, None, list(base.stride), list(base.padding),
        list(base.dilation), False, [0] * dims, base.groups, [True, False, False])[0]


def _plus(t: Tensor) -> Tensor:
    return t.clamp(min=0)


def _minus(t: Tensor) -> Tensor:
    return t.clamp(max=0)


def _with_bias(t: Tensor, b: Optional[Tensor]) -> Tensor:
    return t if b is None else t.add_(b)


def _stabilize_(d: Tensor, s: float) -> Tensor:
    """In place: ``d + s·sign(d)`` with ``sign(0) = +1``."""
    if s:
        d.add_(torch.where(d >= 0, s, -s))
    return d


def _divide_(num: Tensor, den: Tensor, check: bool = True) -> Tensor:
    """In place into ``den``: ``num / den``, 0 where ``den == 0``.

    A stabilised denominator ``d + s·sign(d)`` with ``s > 0`` is never 0: ``check=False``
    skips the test there.
    """
    if not check:
        return torch.div(num, den, out=den)
    zero = den == 0
    den.masked_fill_(zero, 1.0)
    torch.div(num, den, out=den)
    return den.masked_fill_(zero, 0.0)


# ---------------------------------------------------------------------------------------------
# LRP-ε on a linear layer or a Sum
# ---------------------------------------------------------------------------------------------
def _save_epsilon(ctx, z: Tensor, eps: Union[float, Tensor], relu: bool) -> None:
    """Keep the output (after the folded ReLU) and ε for :func:`_epsilon_factor`."""
    ctx.save_for_backward(z, *([eps] if torch.is_tensor(eps) else []))
    ctx.eps = None if torch.is_tensor(eps) else eps
    ctx.relu = relu


def _saved_epsilon_factor(ctx) -> Tensor:
    z, *eps = ctx.saved_tensors
    return _epsilon_factor(z, eps[0] if eps else ctx.eps, ctx.relu)


class _EpsilonLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, module, epsilon_for, relu):  # type: ignore[override]
        weight, bias = layer_parameters(module)
        z = linear_forward(module, x, weight, bias)
        eps = epsilon_for(z)
        if relu:
            z.clamp_min_(0)
        _save_epsilon(ctx, z, eps, relu)
        ctx.module, ctx.weight, ctx.shape = module, weight, x.shape
        return z

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        u = _saved_epsilon_factor(ctx).mul_(g)
        return _input_grad(ctx.module, u, ctx.weight, ctx.shape), None, None, None


def _epsilon_factor(z: Tensor, eps: Union[float, Tensor], relu: bool) -> Tensor:
    """``z / (z + ε·sign z) = |z| / (|z| + ε)``; after a ReLU ``a / (a + ε)`` (0 where a = 0)."""
    a = z if relu else z.abs()
    return _divide_(a, a + eps, check=torch.is_tensor(eps))


class _EpsilonSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, epsilon_for, relu, *summands):  # type: ignore[override]
        z = summands[0] + summands[1]
        for s in summands[2:]:
            z.add_(s)
        eps = epsilon_for(z)
        if relu:
            z.clamp_min_(0)
        _save_epsilon(ctx, z, eps, relu)
        ctx.n = len(summands)
        return z

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        u = _saved_epsilon_factor(ctx).mul_(g)
        return (None, None) + (u,) * ctx.n


def epsilon_forward(module: nn.Module, inputs: tuple, epsilon_for: Callable[[Tensor], Union[
        float, Tensor]], relu: bool) -> Optional[Tensor]:
    """LRP-ε layer output (ReLU applied if ``relu``) with the rule in its backward pass.

    ``epsilon_for(z)`` gives ε for the layer output (the rule's ``_epsilon_for``).
    """
    if isinstance(module, Sum):
        if len(inputs) < 2 or any(
                not torch.is_tensor(t) or t.shape != inputs[0].shape for t in inputs):
            return None
        return _EpsilonSum.apply(epsilon_for, relu, *inputs)
    if len(inputs) != 1 or not supports_linear(module):
        return None
    return _EpsilonLinear.apply(inputs[0], module, epsilon_for, relu)


# ---------------------------------------------------------------------------------------------
# rules built from W⁺x and W⁻x: γ, generalised γ, αβ (z⁺)
# ---------------------------------------------------------------------------------------------
class _TermLinear(torch.autograd.Function):
    """``kind`` is "gamma" (textbook), "ggamma" (sign-aware, x ≥ 0) or "alphabeta" (x ≥ 0).

    With ``P = W⁺x`` and ``N = W⁻x`` (both computed directly, no cancellation), ``z = P + N + b``:

    * gamma:     den = z + γ(P + ρ(b⁺))                      backward ``(W + γW⁺)^T (g·z/den)``
    * ggamma:    den⁺ = z + γ(P + b⁺) for z > 0, den⁻ = z + γ(N + b⁻) for z < 0;
                 one signed factor ``k = z/den⁺ − z/den⁻``   backward
                 ``(W + γW⁺)^T (g·k⁺) + (W + γW⁻)^T (g·k⁻)``
    * alphabeta: ``α z/(P + b⁺)`` and ``β z/(N + b⁻)``         backward
                 ``W⁺^T (g·k_α) − W⁻^T (g·k_β)``
    """

    @staticmethod
    def forward(ctx, x, module, kind, params, stabilizer, relu):  # type: ignore[override]
        weight, bias = layer_parameters(module)
        wp, wn = _plus(weight), _minus(weight)
        pos = linear_forward(module, x, wp, None)
        neg = linear_forward(module, x, wn, None)
        z = pos + neg
        if bias is not None:
            b = _channel(bias, z, module)
            z.add_(b)
            bp, bn = _plus(b), _minus(b)
        else:
            b = bp = bn = None
        factors = []
        if relu:
            # only outputs z > 0 carry relevance after the ReLU, and there a = z: every
            # denominator below may use a instead of z
            z.clamp_min_(0)
        if kind == "gamma":
            gamma, modify_bias = params
            den = pos.mul_(gamma).add_(z)
            if bp is not None and modify_bias:
                den.add_(bp, alpha=gamma)
            factors.append(_divide_(z, _stabilize_(den, stabilizer), not stabilizer))
        elif kind == "ggamma":
            (gamma,) = params
            # z > 0: den⁺ = z + γ(P + b⁺) > 0 (x ≥ 0), stabilised to den⁺ + s. Elsewhere the
            # numerator is 0 and the clamp only keeps the denominator away from 0.
            den_up = torch.add(z, _with_bias(pos, bp), alpha=gamma, out=pos)
            if relu:
                k = _divide_(z, den_up.add_(stabilizer), not stabilizer)
            else:
                k = _divide_(z.clamp(min=0), den_up.clamp_min_(0).add_(stabilizer),
                             not stabilizer)
                den_down = torch.add(z, _with_bias(neg, bn), alpha=gamma, out=neg)
                k.sub_(_divide_(z.clamp(max=0), den_down.clamp_max_(0).sub_(stabilizer),
                                not stabilizer))
            factors.append(k)
        else:  # alphabeta
            alpha, beta = params
            den_a = _with_bias(pos, bp)
            factors.append(_divide_(z, _stabilize_(den_a, stabilizer), not stabilizer)
                           .mul_(alpha))
            if beta:
                den_b = _with_bias(neg, bn)
                factors.append(_divide_(z, _stabilize_(den_b, stabilizer), not stabilizer)
                               .mul_(beta))
        ctx.save_for_backward(*factors)
        ctx.module, ctx.weight, ctx.shape = module, weight, x.shape
        ctx.kind, ctx.params, ctx.relu = kind, params, relu
        return z

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        factors = ctx.saved_tensors
        w, module, shape = ctx.weight, ctx.module, ctx.shape
        if ctx.kind == "gamma":
            grad = _input_grad(module, factors[0] * g, w + ctx.params[0] * _plus(w), shape)
        elif ctx.kind == "ggamma":
            gamma = ctx.params[0]
            k = factors[0]
            if ctx.relu:
                grad = _input_grad(module, k * g, w + gamma * _plus(w), shape)
            else:
                grad = _input_grad(module, k.clamp(min=0).mul_(g), w + gamma * _plus(w), shape)
                grad.add_(_input_grad(module, k.clamp(max=0).mul_(g).neg_(),
                                      w + gamma * _minus(w), shape))
        else:
            grad = _input_grad(module, factors[0] * g, _plus(w), shape)
            if len(factors) > 1:
                grad.sub_(_input_grad(module, factors[1] * g, _minus(w), shape))
        return grad, None, None, None, None, None


def term_forward(module: nn.Module, x: Tensor, kind: str, params: tuple, stabilizer: float,
                 relu: bool) -> Optional[Tensor]:
    """Output of a γ / generalised-γ / αβ layer with the rule in its backward pass, or None
    where this path does not apply (layer type, or negative inputs for the sign-aware rules)."""
    if not supports_linear(module) or x.numel() == 0:
        return None
    if kind != "gamma" and bool(x.detach().amin() < 0):
        return None  # x⁻ terms: the general path handles them
    return _TermLinear.apply(x, module, kind, params, stabilizer, relu)


# ---------------------------------------------------------------------------------------------
# z^B on the input layer
# ---------------------------------------------------------------------------------------------
class _ZBoxLinear(torch.autograd.Function):
    """``R = x·W^T s − l·W⁺^T s − h·W⁻^T s`` with ``s = R_out / (Wx − W⁺l − W⁻h)``.

    The bound terms are the same for every example: they are evaluated on one example and
    broadcast. The backward pass returns ``R / x`` (the engine multiplies by ``x``) and hands
    ``R`` itself to the rule's sink for the elements where ``x == 0``.
    """

    @staticmethod
    def forward(ctx, x, module, rule, low, high, relu):  # type: ignore[override]
        weight, bias = layer_parameters(module)
        wx = linear_forward(module, x, weight, None)
        den = wx - linear_forward(module, low, _plus(weight), None) \
            - linear_forward(module, high, _minus(weight), None)
        z = wx if bias is None else wx.add_(_channel(bias, wx, module))
        num = z.clamp(min=0) if relu else z
        k = _divide_(num, _stabilize_(den, rule.stabilizer), not rule.stabilizer)
        if relu:
            z.clamp_min_(0)
        ctx.save_for_backward(x, k, low, high)
        ctx.module, ctx.weight, ctx.rule = module, weight, rule
        return z

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        x, k, low, high = ctx.saved_tensors
        w, module, shape = ctx.weight, ctx.module, x.shape
        s = k * g
        relevance = _input_grad(module, s, w, shape).mul_(x)
        relevance.sub_(_input_grad(module, s, _plus(w), shape).mul_(low))
        relevance.sub_(_input_grad(module, s, _minus(w), shape).mul_(high))
        if ctx.rule._direct_sink is not None:
            ctx.rule._direct_sink((x,), (relevance,))
        zero = x == 0
        ratio = (relevance / torch.where(zero, 1.0, x)).masked_fill_(zero, 0.0)
        return ratio, None, None, None, None, None


def zbox_forward(module: nn.Module, x: Tensor, rule, low: Tensor, high: Tensor,
                 relu: bool) -> Optional[Tensor]:
    if not supports_linear(module):
        return None
    return _ZBoxLinear.apply(x, module, rule, low, high, relu)


# ---------------------------------------------------------------------------------------------
# graph rewrite
# ---------------------------------------------------------------------------------------------
class FastLayer(nn.Module):
    """Runs ``layer`` (and, if ``relu``, the ReLU after it) through its rule's fused path.

    Falls back to the layer's own forward plus the rule's hook formulation where the fused
    path does not apply to the input at hand, or where hooks were registered on the layer
    after the plan was made (they must fire).
    """

    def __init__(self, layer: nn.Module, rule, relu: bool) -> None:
        super().__init__()
        object.__setattr__(self, "layer", layer)  # not a submodule: parameters stay single
        self.rule, self.relu = rule, relu

    def forward(self, *inputs):
        out = None
        if torch.is_grad_enabled() and not _has_hooks(self.layer) and any(
                torch.is_tensor(t) and t.requires_grad for t in inputs):
            out = self.rule.fast_forward(self.layer, inputs, self.relu)
        if out is None:
            out = self.layer(*inputs)
            if torch.is_grad_enabled() and out.requires_grad:
                replaced = self.rule.engine_output(self.layer, inputs, out)
                out = out if replaced is None else replaced
            if self.relu:
                out = torch.relu(out)
        return out

    def extra_repr(self) -> str:
        return f"{type(self.layer).__name__}, {self.rule!r}, relu={self.relu}"


def _has_hooks(module: nn.Module) -> bool:
    from torch.nn.modules import module as module_mod
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or getattr(module, "_backward_pre_hooks", None)
                or module_mod._global_forward_hooks or module_mod._global_forward_pre_hooks)


def _is_plain_relu(node: fx.Node, gm: fx.GraphModule, rules: dict) -> bool:
    from .rules import PassRule
    if len(node.args) != 1 or node.kwargs.get("inplace"):
        return False
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    if node.op == "call_method":
        return node.target == "relu"
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        rule = rules.get(mod)
        return type(mod) is nn.ReLU and not _has_hooks(mod) and (
            rule is None or type(rule) is PassRule)
    return False


def build_fast_graph(gm: fx.GraphModule,
                     rules: dict) -> tuple[Optional[fx.GraphModule], set, set]:
    """A copy of the canonized ``gm`` whose rule-carrying layers run as :class:`FastLayer`.

    Parameters
    ----------
    gm : fx.GraphModule
        The canonized model (not changed).
    rules : dict
        ``{module: rule}`` as resolved by the composite.

    Returns
    -------
    (GraphModule or None, set of modules, set of modules)
        None if no layer has a fused path; the modules that run fused (the engine must not
        also hook them); the ReLU modules of which a call was folded into a fused layer (a
        probe on them would miss that call).
    """
    graph = fx.Graph()
    value_map: dict = {}
    result = graph.graph_copy(gm.graph, value_map)
    graph.output(result)
    fast = fx.GraphModule(gm, graph, class_name=type(gm).__name__)
    holder = nn.Module()
    wrapped: set = set()
    folded: set = set()
    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        module = fast.get_submodule(node.target)
        rule = rules.get(module)
        if rule is None or _has_hooks(module) or not rule.supports_fast(module):
            continue
        users = list(node.users)
        relu = len(users) == 1 and users[0].args == (node,) and _is_plain_relu(
            users[0], fast, rules)
        key = f"m{len(holder._modules)}"
        holder.add_module(key, FastLayer(module, rule, relu))
        node.target = f"_lrp_fast.{key}"
        if relu:
            if users[0].op == "call_module":
                folded.add(fast.get_submodule(users[0].target))
            users[0].replace_all_uses_with(node)
            graph.erase_node(users[0])
        wrapped.add(module)
    if not wrapped:
        return None, set(), set()
    fast.add_module("_lrp_fast", holder)
    graph.eliminate_dead_code()
    graph.lint()
    fast.recompile()
    return fast, wrapped, folded

