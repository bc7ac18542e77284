"""A layer's input relevance computed from its rule's declaration: relevance in, relevance out.

This is the general, readable evaluation of each kind of declaration: every term of a term
rule is one evaluation of the layer (:func:`lrp_captum.core.linear_ops.evaluate_linear`, which
works on every linear layer type) and the redistribution is an autograd gradient through it.
Every function here has the signature ``(declaration, module, inputs, output, relevance_out)
-> input relevances``; the table of kinds (:mod:`lrp_captum.core.engine.declaration_kinds`)
says which one a declaration uses. Captum's engine calls them through
:meth:`lrp_captum.core.rules.LRPRule.relevance`, the hook path in the backward pass of a layer's
output. The fused layers (:mod:`lrp_captum.core.engine.fused`) compute the same quantities
faster and are checked against this path.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor, nn

from lrp_captum.core.engine.constant_scale import constant_scale_output, without_shift
from lrp_captum.core.engine.numerics import safe_divide, stabilize
from lrp_captum.core.linear_ops import (UnsupportedLayerError, evaluate_linear, layer_parameters,
                                        linear_forward, underlying_layer)
from lrp_captum.core.rules import DIRECT_INPUTS, Input, Term, Terms

__all__ = ["terms_relevance", "pass_relevance", "no_relevance", "gradient_relevance",
           "uniform_relevance", "constant_scale_relevance", "stabilizer_for", "selection",
           "broadcast_bound"]


def stabilizer_for(decl: Terms, d: Tensor) -> Union[float, Tensor]:
    """The stabiliser of denominator ``d``: absolute, or relative to ``RMS(d)`` per example."""
    if not decl.relative:
        return decl.stabilizer
    rms = d.detach().pow(2).flatten(1).mean(1).sqrt()
    return decl.stabilizer * rms.reshape((-1,) + (1,) * (d.dim() - 1))


def selection(z: Tensor, select: Optional[str]) -> Union[float, Tensor]:
    """``σ(z)``: 1, or the indicator of positive / negative outputs."""
    if select is None:
        return 1.0
    return (z > 0).to(z.dtype) if select == "positive" else (z < 0).to(z.dtype)


def broadcast_bound(bound: Tensor, x: Tensor) -> Tensor:
    """A z^B bound (scalar, per channel ``(C,)`` or per element) expanded to ``x``'s shape."""
    bound = torch.as_tensor(bound).to(device=x.device, dtype=x.dtype)
    if bound.dim() == 1 and x.dim() > 2 and bound.numel() == x.shape[1]:
        bound = bound.reshape((1, -1) + (1,) * (x.dim() - 2))
    return bound.expand_as(x)


def _masked(x: Tensor, which: Input) -> Tensor:
    if which is Input.POSITIVE:
        return x * (x > 0)
    if which is Input.NEGATIVE:
        return x * (x < 0)
    return x


def direct_inputs(decl: Terms, x: Tensor) -> dict:
    """Leaf tensors (requiring grad) for the terms evaluated on ones or on the bounds."""
    leaves = {}
    for term in decl.terms:
        if term.input in leaves or term.input not in DIRECT_INPUTS:
            continue
        if term.input is Input.ONES:
            value = torch.ones_like(x)
        else:
            if decl.bounds is None:
                raise ValueError("a rule with bound terms must declare its bounds")
            value = broadcast_bound(decl.bounds[0 if term.input is Input.LOW else 1], x)
        leaves[term.input] = value.detach().clone().requires_grad_()
    return leaves


def _term_output(module: nn.Module, term: Term, x: Tensor, leaves: dict,
                 nonnegative: bool) -> Tensor:
    if term.input in DIRECT_INPUTS:
        value = leaves[term.input]
    elif term.input is Input.X or (nonnegative and term.input is Input.POSITIVE):
        value = x
    else:
        value = _masked(x, term.input)
    z = evaluate_linear(module, value, term.weight, term.bias, use_bias=term.bias is not None)
    return z if term.coefficient == 1.0 else z * term.coefficient


# ---------------------------------------------------------------------------------------------
# relevance in -> relevance out
# ---------------------------------------------------------------------------------------------
#: the proportional declaration without a stabiliser (``s = R / z``, 0 where ``z = 0``)
_PLAIN = Terms((), 0.0)


def pass_relevance(decl, module: nn.Module, inputs: tuple, output: Tensor,
                   relevance_out: Tensor) -> tuple:
    """``R_in = R_out`` for the first input (an elementwise or reshaping layer)."""
    (x,) = inputs[:1]
    if relevance_out.numel() != x.numel():
        raise UnsupportedLayerError(
            f"PassRule needs an elementwise or reshaping layer, but {type(module).__name__} "
            f"maps {tuple(x.shape)} to {tuple(relevance_out.shape)}")
    return (relevance_out.reshape(x.shape),) + tuple(torch.zeros_like(t) for t in inputs[1:])


def no_relevance(decl, module: nn.Module, inputs: tuple, output: Tensor,
                 relevance_out: Tensor) -> tuple:
    """Nothing flows through the layer: its output is a constant."""
    return tuple(torch.zeros_like(x) for x in inputs)


def gradient_relevance(decl, module: nn.Module, inputs: tuple, output: Tensor,
                       relevance_out: Tensor) -> tuple:
    """Gradient × input of the layer with ``s = R / z``: the first-order Taylor decomposition
    at the input."""
    return _proportional_relevance(_PLAIN, module, inputs, relevance_out)


def uniform_relevance(decl, module: nn.Module, inputs: tuple, output: Tensor,
                      relevance_out: Tensor) -> tuple:
    """Gradient × input, each of ``n`` inputs taking ``1/n`` of it (a product of factors)."""
    relevance = gradient_relevance(decl, module, inputs, output, relevance_out)
    if len(inputs) > 1:
        relevance = tuple(r / len(inputs) for r in relevance)
    return relevance


def constant_scale_relevance(decl, module: nn.Module, inputs: tuple, output: Tensor,
                             relevance_out: Tensor) -> tuple:
    """Gradient × input of a normalisation with its scale held constant (``bias=False``: with
    its shift out of the denominator)."""
    shift = getattr(module, "bias", None)
    if getattr(decl, "bias", True) or not torch.is_tensor(shift):
        return _proportional_relevance(_PLAIN, module, inputs, relevance_out, constant_scale=True)
    xs = tuple(x.detach().requires_grad_() for x in inputs)
    with torch.enable_grad():
        z = module.forward(*xs)
        z = without_shift(constant_scale_output(module, xs, z), z.detach(), shift)
    s = safe_divide(relevance_out, z.detach())
    grads = torch.autograd.grad(z, xs, s, allow_unused=True)
    return tuple(x.detach() * (g if g is not None else torch.zeros_like(x)) for x, g in zip(xs, grads))


def _proportional_relevance(decl: Terms, module, inputs, relevance_out,
                            constant_scale: bool = False) -> tuple:
    """Gradient × input of the layer with ``s = R / (z ± ε)`` (LRP-0/ε, and gradient ×
    input for the rules that are the plain gradient of some version of the layer)."""
    xs = tuple(x.detach().requires_grad_() for x in inputs)
    with torch.enable_grad():
        z = module.forward(*xs)
        if constant_scale:
            z = constant_scale_output(module, xs, z)
    # safe division: with s = 0 (LRP-0) an output of exactly 0 carries no relevance
    s = safe_divide(relevance_out, stabilize(z.detach(), stabilizer_for(decl, z)))
    grads = torch.autograd.grad(z, xs, s, allow_unused=True)
    return tuple(x.detach() * (g if g is not None else torch.zeros_like(x))
                 for x, g in zip(xs, grads))


def _group_outputs(decl: Terms, module: nn.Module, x: Tensor, leaves: dict) -> list:
    """``(group, z_group)`` pairs, each ``z_group`` with its autograd graph to ``x`` and to
    the ``leaves`` of direct terms.

    For ``x ≥ 0`` (ReLU inputs) terms on ``x⁻`` vanish and ``x⁺ = x``; groups of one plain
    term each are then one layer call with stacked weights where stacking along the output
    dimension is the same map (dense layers, ungrouped convolutions).
    """
    nonnegative = decl.sign_split and not bool((x < 0).any())
    groups = [(g, [t for t in g.terms if not (nonnegative and t.input is Input.NEGATIVE)])
              for g in decl.groups]
    groups = [(g, terms) for g, terms in groups if terms]
    base = underlying_layer(module)
    if nonnegative and len(groups) > 1 and all(
            len(ts) == 1 and ts[0].input not in DIRECT_INPUTS and ts[0].coefficient == 1.0
            for _, ts in groups) and (isinstance(base, nn.Linear) or (isinstance(
                base, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and base.groups == 1)):
        weight, bias = layer_parameters(module)
        zero = torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
        stacked = linear_forward(
            module, x, torch.cat([ts[0].weight(weight) for _, ts in groups]),
            torch.cat([ts[0].bias(bias) if bias is not None and ts[0].bias is not None
                       else zero for _, ts in groups]))
        return list(zip((g for g, _ in groups), stacked.chunk(len(groups), dim=1)))
    return [(g, sum(_term_output(module, t, x, leaves, nonnegative) for t in terms))
            for g, terms in groups]


def _term_relevance(decl: Terms, module, inputs, output, relevance_out) -> tuple:
    if len(inputs) != 1:
        raise UnsupportedLayerError(
            f"{type(module).__name__} has {len(inputs)} inputs; rules with modified terms "
            "apply to single-input linear layers")
    (x,) = inputs
    x = x.detach().requires_grad_()
    leaves = direct_inputs(decl, x)
    z_ref = output.detach()
    with torch.enable_grad():
        total = 0
        for group, z_group in _group_outputs(decl, module, x, leaves):
            d = z_group.detach()
            s = group.coefficient * selection(z_ref, group.select) * safe_divide(
                relevance_out, stabilize(d, stabilizer_for(decl, d)))
            total = total + (z_group * s).sum()
    wrt = [x] + list(leaves.values())
    grads = torch.autograd.grad(total, wrt, allow_unused=True)
    parts = [value.detach() * g for value, g in zip(wrt, grads) if g is not None]
    return (sum(parts[1:], parts[0]) if parts else torch.zeros_like(x),)


def terms_relevance(decl: Terms, module: nn.Module, inputs: tuple, output: Tensor,
                    relevance_out: Tensor) -> tuple:
    """Input relevances of ``module`` under the term rule ``decl``.

    Parameters
    ----------
    decl : Terms
    module : nn.Module
    inputs : tuple of Tensor
        The layer's inputs, e.g. ``(N, C_in, H, W)``.
    output : Tensor
        The layer's output.
    relevance_out : Tensor
        Relevance of the output, same shape as ``output``.

    Returns
    -------
    tuple of Tensor
        One relevance tensor per input, shaped like it.
    """
    if decl.proportional:
        return _proportional_relevance(decl, module, inputs, relevance_out)
    return _term_relevance(decl, module, inputs, output, relevance_out)
