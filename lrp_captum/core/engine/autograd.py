"""Autograd functions that put a rule into a layer's backward pass.

Two engines propagate relevance as a gradient:

* Captum's: the gradient *is* the relevance (``mode="relevance"``);
* ours: the gradient is the relevance per unit of value, ``c = R / a`` (``mode="ratio"``), so
  that LRP-0 is the plain gradient and most rules are a local rescaling of it.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from captum.attr._utils.lrp_rules import PropagationRule
from torch import Tensor

from lrp_captum.core.engine.numerics import safe_divide

__all__ = ["ReplaceValue", "ScaleGradient", "ScaleGradientOfUse", "scale_output_gradient",
           "PassRatio",
           "RelevanceFunction", "captum_relevance_output"]


class ReplaceValue(torch.autograd.Function):
    """Forward: the value of ``value``. Backward: the incoming gradient goes to ``surrogate``.

    Lets a rule return the layer's true output while its gradient follows a modified graph.
    """

    @staticmethod
    def forward(ctx, value: Tensor, surrogate: Tensor) -> Tensor:  # type: ignore[override]
        return value.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return None, grad


class ScaleGradient(torch.autograd.Function):
    """Forward: a copy of ``x`` (a view could be modified in place later, which autograd
    forbids for custom functions). Backward: the gradient times ``scale`` (LRP-ε's
    ``z/(z±ε)``)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(scale)
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (scale,) = ctx.saved_tensors
        return grad * scale, None


class ScaleGradientOfUse(torch.autograd.Function):
    """Forward: ``x`` itself (a view). Backward: the gradient times ``scale``. For an argument
    passed straight to a function that does not modify it in place (the factors of an
    attention): no copy, where :class:`ScaleGradient` copies."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad * ctx.scale, None


class PassRatio(torch.autograd.Function):
    """An elementwise layer under ``R_in = R_out``: forward, a copy of its output; backward,
    the gradient times ``output / x`` (0 where ``x = 0``), kept from the forward pass."""

    @staticmethod
    def forward(ctx, output: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(torch.div(output, x).nan_to_num_(0.0, 0.0, 0.0))
        return output.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (ratio,) = ctx.saved_tensors
        return None, grad * ratio


def scale_output_gradient(out: Tensor, scale: float) -> Tensor:
    """``out``, a tensor a function has just returned, with the gradient that reaches it
    multiplied by ``scale`` (a tensor hook: nothing copied, nothing kept)."""
    if scale == 1.0 or not out.requires_grad:
        return out
    if scale == 0.0:
        return out.detach()
    out.register_hook(lambda grad: grad * scale)
    return out


class RelevanceFunction(torch.autograd.Function):
    """Apply ``relevance_fn(module, inputs, output, R_out) -> R_in`` in the backward pass.

    ``sink(inputs, relevances)``, if given, receives the input relevances themselves (ratio
    mode): where an input is 0 the ratio ``R / x`` cannot carry them.
    """

    @staticmethod
    def forward(ctx, relevance_fn, module, mode, sink, output, *inputs):  # type: ignore[override]
        ctx.relevance_fn, ctx.module, ctx.mode, ctx.sink = relevance_fn, module, mode, sink
        ctx.save_for_backward(output, *inputs)
        return output.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        output, *inputs = ctx.saved_tensors
        relevance_out = grad * output if ctx.mode == "ratio" else grad
        relevance_in = ctx.relevance_fn(ctx.module, tuple(inputs), output, relevance_out)
        if ctx.mode == "ratio":
            grads = tuple(safe_divide(r, x) for r, x in zip(relevance_in, inputs))
            if ctx.sink is not None:
                ctx.sink(tuple(inputs), relevance_in)
        else:
            grads = relevance_in
            _record_captum_relevance(ctx.relevance_fn, grad, relevance_in)
        return (None, None, None, None, None) + tuple(grads)


def relevance_output(relevance_fn: Callable, module, inputs: Sequence, output: Tensor,
                     mode: str = "ratio", sink: Optional[Callable] = None) -> Tensor:
    """``output`` routed through :class:`RelevanceFunction`."""
    tensors = tuple(x for x in inputs if torch.is_tensor(x))
    return RelevanceFunction.apply(relevance_fn, module, mode, sink, output.detach(), *tensors)


def captum_relevance_output(rule, module, inputs, outputs) -> Tensor:
    """Captum's second forward pass: the backward pass applies ``rule.relevance``."""
    inputs = tuple(inputs if isinstance(inputs, tuple) else (inputs,))
    return relevance_output(rule.relevance, module, inputs, outputs, mode="relevance")


def _record_captum_relevance(relevance_fn, relevance_out: Tensor,
                             relevance_in: Sequence[Tensor]) -> None:
    """Fill the attributes Captum's ``LayerLRP`` reads (normalised relevances per device)."""
    rule = getattr(relevance_fn, "__self__", None)
    if not isinstance(rule, PropagationRule):
        return
    device = relevance_out.device
    if not isinstance(getattr(rule, "relevance_output", None), dict) or \
            rule.relevance_output is PropagationRule.relevance_output:
        rule.relevance_output = {}
    if not isinstance(getattr(rule, "relevance_input", None), dict) or \
            rule.relevance_input is PropagationRule.relevance_input:
        rule.relevance_input = {}
    rule.relevance_output[device] = relevance_out.detach()
    if len(relevance_in) == 1:
        rule.relevance_input[device] = relevance_in[0].detach()
    else:
        rule.relevance_input[device] = [r.detach() for r in relevance_in]
