"""Fused layers: a rule-carrying layer of a canonized model as one autograd function.

The hook path lets a layer run its own forward pass with autograd and then attaches the rule to
its output. That costs the layer's autograd graph, a copy of the output and elementwise work on
every call, and the ReLU that follows keeps its own copy of the activation for its backward.

Here a layer runs as **one autograd function** that evaluates the layer without autograd, keeps
one or two tensors for the backward pass (the per-output factors of the rule) and computes the
input gradient itself (``W^T u`` through ``convolution_backward`` / a matrix product). When the
layer's only consumer is a ReLU the ReLU is folded in: after a ReLU an output with ``z ≤ 0``
carries no relevance (the engine propagates ``c = R / a`` and ``a = 0``), so the factors are
masked and the ReLU's own backward pass disappears.

The kernel is compiled from the rule's declaration (:class:`lrp_captum.core.rules.Terms`), never
from its class:

* a *proportional* declaration (LRP-ε) runs :class:`_Proportional` (one forward and one
  backward product, the output itself kept);
* every other declaration runs :class:`_Terms`. Terms whose weight modifiers are
  :class:`~lrp_captum.core.rules.Mix` numbers are all evaluated from the two products ``P = W⁺x``
  and ``N = W⁻x``, so γ, generalised γ, αβ and z⁺ cost two forward products whatever their
  number of terms; the backward pass needs one product with ``Σ ρ(W)`` per group, or two
  (``W⁺``, ``W⁻``) for any number of groups. Terms with other modifiers (a user's own
  ``w + γ|w|``) cost one product each. Terms on ones or on the input bounds (flat, w², z^B)
  are evaluated on one example and broadcast.

Rules whose terms split the input by sign run fused on non-negative inputs (``x⁻`` terms
vanish, ``x⁺ = x``); on inputs of both signs the layer takes the hook path for that call.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import Tensor, nn

from lrp_captum.core.layers import Sum
from lrp_captum.core.rules import DIRECT_INPUTS, Input, Mix, Term, Terms
from lrp_captum.core.linear_ops import (channel_vector, has_dense_kernel, input_gradient, layer_parameters,
                                        linear_forward)
from lrp_captum.core.engine.numerics import safe_divide, stabilize
from lrp_captum.core.engine.reference import broadcast_bound, stabilizer_for

__all__ = ["TermKernel", "compile_terms", "fused_forward", "FusedLayer", "build_fused_graph"]

_RELU_FUNCTIONS = (F.relu, torch.relu)


# ---------------------------------------------------------------------------------------------
# compiling a declaration: which evaluations, which factors, which backward products
# ---------------------------------------------------------------------------------------------
@dataclass
class _GroupKernel:
    coefficient: float
    select: Optional[str]
    x_terms: list  # terms on x (x⁺ = x here)
    direct_terms: list  # terms on ones or the bounds
    #: Σ coefficient · (positive, negative) of the Mix weights of the x terms
    mix: tuple = (0.0, 0.0)
    #: +1 / -1: the denominator has this sign wherever the numerator is not 0; 0: unknown
    den_sign: int = 0

    @property
    def biases(self) -> list:
        return [t for t in self.x_terms + self.direct_terms if t.bias is not None]


@dataclass
class TermKernel:
    """A :class:`~lrp_captum.core.rules.Terms` declaration compiled for one layer situation.

    ``mode``: how the terms on x are evaluated, from ``W⁺x`` and ``W⁻x`` (``"mix"``), as
    multiples of ``Wx`` (``"scaled"``) or one product per weight modifier (``"modified"``).
    ``storage``: what the backward pass keeps, one factor and one product with the group's
    ``Σ ρ(W)`` (``"single"``), the factors of two groups of opposite output signs in one signed
    tensor (``"signed"``), factors for ``W⁺`` and ``W⁻`` (``"pair"``) or one per group.
    """
    declaration: Terms
    groups: list
    mode: str
    storage: str = "per_group"

    @property
    def direct(self) -> bool:
        return any(g.direct_terms for g in self.groups)


def compile_terms(decl: Terms, relu: bool, nonnegative: bool) -> Optional[TermKernel]:
    """The fused kernel of ``decl``; ``relu``: the following ReLU is folded in;
    ``nonnegative``: the input is known to be ``≥ 0``. None where no kernel applies (terms
    split by sign on an input of both signs)."""
    if decl.sign_split and not nonnegative:
        return None
    groups = []
    for g in decl.groups:
        if relu and g.select == "negative":
            continue  # after the ReLU, outputs z < 0 carry no relevance
        terms = [t for t in g.terms if t.input is not Input.NEGATIVE]  # x⁻ = 0
        group = _GroupKernel(g.coefficient, None if relu else g.select,
                             [t for t in terms if t.input not in DIRECT_INPUTS],
                             [t for t in terms if t.input in DIRECT_INPUTS])
        if terms:  # a group without terms passes nothing
            groups.append(group)
    weights = [t.weight for g in groups for t in g.x_terms]
    if not groups:
        return None
    if not all(isinstance(w, Mix) for w in weights):
        return TermKernel(decl, groups, "modified")
    for g in groups:
        g.mix = (sum(t.coefficient * t.weight.positive for t in g.x_terms),
                 sum(t.coefficient * t.weight.negative for t in g.x_terms))
    kernel = TermKernel(decl, groups, "scaled" if all(
        w.positive == w.negative for w in weights) else "mix")
    if nonnegative:
        for g in groups:
            g.den_sign = _denominator_sign(g, relu)
    if len(groups) == 1:
        kernel.storage = "single"
    elif not kernel.direct:
        kernel.storage = "signed" if nonnegative and all(
            g.coefficient >= 0 and _keeps_sign(g) for g in groups) \
            and sorted(g.select for g in groups) == ["negative", "positive"] else "pair"
    return kernel


def _denominator_sign(group: _GroupKernel, relu: bool) -> int:
    """For ``x ≥ 0``: the sign the group's denominator ``A·P + B·N + α·b⁺ + β·b⁻`` has wherever
    its numerator is not 0 (0: not provable from the declaration)."""
    if group.direct_terms or not all(isinstance(t.bias, Mix) for t in group.biases):
        return 0
    a, b = group.mix
    alpha = sum(t.coefficient * t.bias.positive for t in group.biases)
    beta = sum(t.coefficient * t.bias.negative for t in group.biases)
    if a >= 0 and b <= 0 and alpha >= 0 and beta <= 0:
        return 1  # non-negative everywhere
    if a <= 0 and b >= 0 and alpha <= 0 and beta >= 0:
        return -1
    served = "positive" if relu else group.select  # after a ReLU only z > 0 carries relevance
    if served is not None and _keeps_sign(group, served):
        return 1 if served == "positive" else -1
    return 0


def _keeps_sign(group: _GroupKernel, served: Optional[str] = None) -> bool:
    """For ``x ≥ 0`` (so ``P = W⁺x ≥ 0 ≥ N = W⁻x``): the group's denominator has the sign of
    the outputs it serves, so its factor is ``≥ 0`` there and two such groups of opposite
    signs can share one signed tensor.

    With ``den = A·P + B·N + α·b⁺ + β·b⁻`` and ``z = P + N + b⁺ + b⁻``, ``den − z`` is ``≥ 0``
    when ``A ≥ 1, B ≤ 1, α ≥ 1, β ≤ 1`` (the group serves ``z > 0``) and ``≤ 0`` with the
    inequalities reversed (``z < 0``).
    """
    if not all(isinstance(t.bias, Mix) for t in group.biases):
        return False
    a, b = group.mix
    alpha = sum(t.coefficient * t.bias.positive for t in group.biases)
    beta = sum(t.coefficient * t.bias.negative for t in group.biases)
    if (served or group.select) == "positive":
        return a >= 1 and b <= 1 and alpha >= 1 and beta <= 1
    return a <= 1 and b >= 1 and alpha <= 1 and beta >= 1


# ---------------------------------------------------------------------------------------------
# LRP-ε (proportional declarations) on a dense layer or a Sum
# ---------------------------------------------------------------------------------------------
def _proportional_factor(z: Tensor, eps: Union[float, Tensor], relu: bool) -> Tensor:
    """``z / (z + ε·sign z) = |z| / (|z| + ε)``; after a ReLU ``a / (a + ε)`` (0 where a = 0)."""
    a = z if relu else z.abs()
    return safe_divide(a, a + eps, inplace=True, check=torch.is_tensor(eps))


class _Proportional(torch.autograd.Function):
    """``z = layer(x)`` (or the sum of the inputs); backward ``W^T (g · z/(z ± ε))``."""

    @staticmethod
    def forward(ctx, decl, module, relu, *inputs):  # type: ignore[override]
        if isinstance(module, Sum):
            z = inputs[0] + inputs[1]
            for s in inputs[2:]:
                z.add_(s)
        else:
            weight, bias = layer_parameters(module)
            z = linear_forward(module, inputs[0], weight, bias)
            ctx.weight, ctx.shape = weight, inputs[0].shape
        eps = stabilizer_for(decl, z)
        if relu:
            z.clamp_min_(0)
        ctx.save_for_backward(z, *([eps] if torch.is_tensor(eps) else []))
        ctx.eps = None if torch.is_tensor(eps) else eps
        ctx.module, ctx.relu, ctx.n = module, relu, len(inputs)
        return z

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        z, *eps = ctx.saved_tensors
        u = _proportional_factor(z, eps[0] if eps else ctx.eps, ctx.relu).mul_(g)
        if isinstance(ctx.module, Sum):
            return (None, None, None) + (u,) * ctx.n
        return None, None, None, input_gradient(ctx.module, u, ctx.weight, ctx.shape)


# ---------------------------------------------------------------------------------------------
# every other declaration
# ---------------------------------------------------------------------------------------------
def _direct_value(term: Term, decl: Terms, example: Tensor) -> Tensor:
    if term.input is Input.ONES:
        return torch.ones_like(example)
    bound = decl.bounds[0 if term.input is Input.LOW else 1]
    return broadcast_bound(bound, example).contiguous()


def _bias_vector(group: _GroupKernel, bias: Optional[Tensor]) -> Optional[Tensor]:
    """``Σ_t c_t β_t(b)`` over the group's terms that keep the bias."""
    if bias is None or not group.biases:
        return None
    return sum(t.bias(bias) * t.coefficient for t in group.biases)


def _mix_weight(mix: tuple, wp: Tensor, wn: Tensor) -> Tensor:
    a, b = mix
    if a == b:
        return (wp + wn) if a == 1.0 else (wp + wn) * a
    out = wp * a if a != 1.0 else wp.clone()
    if b:
        out.add_(wn, alpha=b)
    return out


class _Terms(torch.autograd.Function):
    """Output of a layer (ReLU folded in or not) whose backward pass applies a term rule.

    Per group ``g``: ``den_g = Σ_t c_t·layer(ι_t; ρ_t(W)) + Σ_t c_t·β_t(b)`` and the factor
    ``k_g = c_g · σ_g(z) · a / (den_g ± s)`` (``a`` the output after the folded ReLU). The
    backward pass is ``Σ_g Σ_t c_t ρ_t(W)^T (k_g · g)`` for terms on ``x``; terms on ones or on
    the bounds add ``c_t ι_t ⊙ ρ_t(W)^T (k_g · g)`` to the relevance itself.
    """

    @staticmethod
    def forward(ctx, x, module, kernel: TermKernel, relu, sink):  # type: ignore[override]
        decl = kernel.declaration
        weight, bias = layer_parameters(module)
        if kernel.mode == "mix":
            products = [linear_forward(module, x, weight.clamp(min=0), None),
                        linear_forward(module, x, weight.clamp(max=0), None)]
            z = products[0] + products[1]
            if bias is not None:
                z.add_(channel_vector(bias, z, module))
        else:
            products = [linear_forward(module, x, weight, None)]
            z = products[0] + channel_vector(bias, products[0], module) if bias is not None \
                else products[0].clone()
        dens = []
        for i, group in enumerate(kernel.groups):
            # the products are not needed after the last group: its denominator reuses them
            den, from_z = _x_part(kernel, group, products, i == len(kernel.groups) - 1,
                                  module, x, weight, z)
            b_g = _bias_vector(group, bias)
            if from_z and bias is not None:  # den started from z = P + N + b: take b back out
                b_g = -bias if b_g is None else b_g - bias
            if b_g is not None:
                den.add_(channel_vector(b_g, den, module))
            for t in group.direct_terms:
                value = _direct_value(t, decl, x[:1])
                den.add_(linear_forward(module, value, t.weight(weight), None),
                         alpha=t.coefficient)
            dens.append(den)
        if relu:
            z.clamp_min_(0)
        factors = []
        for group, den in zip(kernel.groups, dens):
            if group.select == "positive":
                num = z.clamp(min=0)
            elif group.select == "negative":
                num = z.clamp(max=0)
            else:
                num = z
            s = stabilizer_for(decl, den)
            if group.den_sign and not torch.is_tensor(s) and s:
                # the denominator has this sign wherever the numerator is not 0: clamping the
                # rest and moving away from 0 is d + s·sign(d) without a sign tensor
                den.clamp_min_(0).add_(s) if group.den_sign > 0 else den.clamp_max_(0).sub_(s)
            else:
                stabilize(den, s, inplace=True)
            k = safe_divide(num, den, inplace=True, check=torch.is_tensor(s) or not s)
            if group.coefficient != 1.0:
                k.mul_(group.coefficient)
            factors.append(k)
        saved = _combine_factors(kernel, factors)
        ctx.save_for_backward(*saved, *([x] if kernel.direct else []))
        ctx.module, ctx.weight, ctx.shape, ctx.kernel, ctx.sink = module, weight, x.shape, \
            kernel, sink
        return z

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        kernel, module, w, shape = ctx.kernel, ctx.module, ctx.weight, ctx.shape
        saved = ctx.saved_tensors
        x = saved[-1] if kernel.direct else None
        factors = saved[:-1] if kernel.direct else saved
        grad = _x_gradient(kernel, factors, g, module, w, shape)
        if not kernel.direct:
            return grad, None, None, None, None
        relevance = grad.mul_(x) if grad is not None else torch.zeros(shape, dtype=g.dtype,
                                                                      device=g.device)
        example = x[:1]
        for group, k in zip(kernel.groups, factors):
            for t in group.direct_terms:
                value = _direct_value(t, kernel.declaration, example)
                part = input_gradient(module, k * g, t.weight(w), shape).mul_(value)
                relevance.add_(part, alpha=t.coefficient)
        if ctx.sink is not None:
            ctx.sink((x,), (relevance,))
        zero = x == 0
        ratio = (relevance / torch.where(zero, 1.0, x)).masked_fill_(zero, 0.0)
        return ratio, None, None, None, None


def _x_part(kernel: TermKernel, group: _GroupKernel, products: list, reuse: bool, module,
            x: Tensor, weight: Tensor, z: Tensor) -> tuple[Tensor, bool]:
    """``Σ_t c_t layer(x; ρ_t(W))`` of the group's terms on ``x``, written into the shared
    products if ``reuse``; and whether it was built from ``z`` (then it includes the bias).

    With ``P = W⁺x``, ``N = W⁻x`` and ``z = P + N + b``, ``a·P + b·N`` is built in the fewer
    elementwise passes of ``a·P (+ b·N)`` and ``z + (a−1)·P (+ (b−1)·N)``: for ``w + γw⁺``
    (γ) the second is one pass instead of two.
    """
    if kernel.mode == "modified":
        return sum((linear_forward(module, x, t.weight(weight), None) * t.coefficient
                    for t in group.x_terms), torch.zeros_like(z)), False
    a, b = group.mix
    if kernel.mode == "scaled":
        den = (products[0].mul_(a) if a != 1.0 else products[0]) if reuse else products[0] * a
        return den, False
    pos, neg = products
    from_products = int(a != 1.0 or not reuse) + int(b != 0.0)
    from_z = 1 + int(b != 1.0)
    if from_z < from_products:
        den = torch.add(z, pos, alpha=a - 1.0, out=pos if reuse else None)
        if b != 1.0:
            den.add_(neg, alpha=b - 1.0)
        return den, True
    den = (pos.mul_(a) if a != 1.0 else pos) if reuse else pos * a
    if b:
        den.add_(neg, alpha=b)
    return den, False


def _combine_factors(kernel: TermKernel, factors: list) -> list:
    """What the backward pass keeps, by the kernel's storage."""
    if kernel.storage == "signed":
        (k_pos, k_neg) = factors if kernel.groups[0].select == "positive" else factors[::-1]
        return [k_pos.sub_(k_neg)]
    if kernel.storage != "pair" or kernel.direct:
        return factors
    k_p = k_n = None
    for group, k in zip(kernel.groups, factors):
        a, b = group.mix
        if a:
            k_p = k * a if k_p is None else k_p.add_(k, alpha=a)
        if b:
            k_n = k * b if k_n is None else k_n.add_(k, alpha=b)
    zeros = torch.zeros_like(factors[0])
    return [k_p if k_p is not None else zeros, k_n if k_n is not None else zeros]


def _group_weight(kernel: TermKernel, group: _GroupKernel, w: Tensor) -> Tensor:
    """``Σ_t c_t ρ_t(W)`` over the group's terms on ``x``."""
    if kernel.mode == "modified":
        return sum(t.weight(w) * t.coefficient for t in group.x_terms)
    return _mix_weight(group.mix, w.clamp(min=0), w.clamp(max=0)) if kernel.mode == "mix" \
        else w * group.mix[0] if group.mix[0] != 1.0 else w


def _x_gradient(kernel: TermKernel, factors, g: Tensor, module, w: Tensor, shape):
    """``Σ_g Σ_t c_t ρ_t(W)^T (k_g · g)`` over the terms on ``x`` (None if there are none)."""
    if kernel.storage == "signed" and not kernel.direct:
        (k,) = factors  # k⁺ on the outputs the positive group serves, −k⁻ on the others
        pos, neg = kernel.groups if kernel.groups[0].select == "positive" \
            else kernel.groups[::-1]
        grad = input_gradient(module, k.clamp(min=0).mul_(g), _group_weight(kernel, pos, w),
                              shape)
        return grad.add_(input_gradient(module, k.clamp(max=0).neg_().mul_(g),
                                        _group_weight(kernel, neg, w), shape))
    if kernel.storage == "pair" and not kernel.direct:
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        return input_gradient(module, factors[0] * g, wp, shape).add_(
            input_gradient(module, factors[1] * g, wn, shape))
    grad = None
    for group, k in zip(kernel.groups, factors):
        if group.x_terms:
            part = input_gradient(module, k * g, _group_weight(kernel, group, w), shape)
            grad = part if grad is None else grad.add_(part)
    return grad


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
def fusable(decl: Terms, module: nn.Module) -> bool:
    """True if a layer with the term rule ``decl`` runs fused (for some inputs)."""
    if decl.proportional:
        if decl.stabilizer == 0 and not decl.relative:
            return False  # LRP-0: the plain gradient is the rule already
        return isinstance(module, Sum) or has_dense_kernel(module)
    return has_dense_kernel(module)


def fused_forward(decl: Terms, kernels: dict, module: nn.Module, inputs: tuple, relu: bool,
                  sink: Optional[Callable]) -> Optional[Tensor]:
    """The layer's output from its fused function, or None where the fused path does not
    apply to these inputs (the caller then takes the hook path).

    ``kernels`` caches the compiled :class:`TermKernel` per ``(relu, nonnegative)``.
    """
    if decl.proportional:
        if isinstance(module, Sum):
            if len(inputs) < 2 or any(not torch.is_tensor(t) or t.shape != inputs[0].shape
                                      for t in inputs):
                return None
        elif len(inputs) != 1:
            return None
        return _Proportional.apply(decl, module, relu, *inputs)
    if len(inputs) != 1 or inputs[0].numel() == 0:
        return None
    x = inputs[0]
    nonnegative = decl.sign_split and not bool(x.detach().amin() < 0)
    key = (relu, nonnegative)
    if key not in kernels:
        kernels[key] = compile_terms(decl, relu, nonnegative)
    kernel = kernels[key]
    if kernel is None:
        return None
    return _Terms.apply(x, module, kernel, relu, sink)


# ---------------------------------------------------------------------------------------------
# graph rewrite
# ---------------------------------------------------------------------------------------------
class FusedLayer(nn.Module):
    """Runs ``layer`` (and, if ``relu``, the ReLU after it) through its rule's fused kernel.

    Falls back to the layer's own forward plus the rule's hook path where the fused kernel
    does not apply to the input at hand, or where hooks were registered on the layer after
    the plan was made (they must fire).
    """

    def __init__(self, layer: nn.Module, compiled, relu: bool) -> None:
        super().__init__()
        object.__setattr__(self, "layer", layer)  # not a submodule: parameters stay single
        self.compiled, self.relu = compiled, relu

    def forward(self, *inputs):
        out = None
        if torch.is_grad_enabled() and not has_hooks(self.layer) and any(
                torch.is_tensor(t) and t.requires_grad for t in inputs):
            out = self.compiled.fused_forward(self.layer, inputs, self.relu)
        if out is None:
            out = self.layer(*inputs)
            if torch.is_grad_enabled() and out.requires_grad:
                replaced = self.compiled.hook_output(self.layer, inputs, out)
                out = out if replaced is None else replaced
            if self.relu:
                out = torch.relu(out)
        return out

    def extra_repr(self) -> str:
        return f"{type(self.layer).__name__}, {self.compiled.rule!r}, relu={self.relu}"


def has_hooks(module: nn.Module) -> bool:
    """True if ``module`` (or every module, globally) has forward or backward hooks."""
    from torch.nn.modules import module as module_mod
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or getattr(module, "_backward_pre_hooks", None)
                or module_mod._global_forward_hooks or module_mod._global_forward_pre_hooks)


def _is_plain_relu(node: fx.Node, gm: fx.GraphModule, compiled: dict) -> bool:
    if len(node.args) != 1 or node.kwargs.get("inplace"):
        return False
    if node.op == "call_function":
        return node.target in _RELU_FUNCTIONS
    if node.op == "call_method":
        return node.target == "relu"
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        c = compiled.get(mod)
        return type(mod) is nn.ReLU and not has_hooks(mod) and (
            c is None or c.kind.passes_unchanged)
    return False


def build_fused_graph(gm: fx.GraphModule,
                      compiled: dict) -> tuple[Optional[fx.GraphModule], set, set]:
    """A copy of the canonized ``gm`` whose rule-carrying layers run as :class:`FusedLayer`.

    Parameters
    ----------
    gm : fx.GraphModule
        The canonized model (not changed).
    compiled : dict
        ``{module: CompiledRule}`` as resolved by the composite.

    Returns
    -------
    (GraphModule or None, set of modules, set of modules)
        None if no layer has a fused form; the modules that run fused (the engine must not
        also hook them); the ReLU modules of which a call was folded into a fused layer (a
        probe on them would miss that call).
    """
    graph = fx.Graph()
    value_map: dict = {}
    result = graph.graph_copy(gm.graph, value_map)
    graph.output(result)
    fused = fx.GraphModule(gm, graph, class_name=type(gm).__name__)
    holder = nn.Module()
    wrapped: set = set()
    folded: set = set()
    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        module = fused.get_submodule(node.target)
        c = compiled.get(module)
        if c is None or has_hooks(module) or not c.fusable(module):
            continue
        users = list(node.users)
        relu = len(users) == 1 and users[0].args == (node,) and _is_plain_relu(
            users[0], fused, compiled)
        key = f"m{len(holder._modules)}"
        holder.add_module(key, FusedLayer(module, c, relu))
        node.target = f"_lrp_fused.{key}"
        if relu:
            if users[0].op == "call_module":
                folded.add(fused.get_submodule(users[0].target))
            users[0].replace_all_uses_with(node)
            graph.erase_node(users[0])
        wrapped.add(module)
    if not wrapped:
        return None, set(), set()
    fused.add_module("_lrp_fused", holder)
    graph.eliminate_dead_code()
    graph.lint()
    fused.recompile()
    return fused, wrapped, folded
