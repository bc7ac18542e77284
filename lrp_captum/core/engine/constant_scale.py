"""Normalisations whose scale is a constant for relevance (AttnLRP, CP-LRP).

``y = (x − μ(x)) · s(x) · w + b`` with the scale ``s(x)`` (``1/σ``, ``1/RMS``) held constant is
linear in ``x``: relevance follows its gradient × input. Used by the hook path on normalisation
modules, by Captum's path, and by the rule of the "norm" family of functions.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from lrp_captum.core.engine.autograd import ReplaceValue, ScaleGradient
from lrp_captum.core.engine.numerics import stabilize

__all__ = ["CONSTANT_SCALE", "constant_scale_function", "constant_scale_output", "norm_arguments",
           "without_shift"]

T = torch.Tensor


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    dims = tuple(range(-len(normalized_shape), 0))
    mean = x.mean(dims, keepdim=True)
    centred = x - mean
    scale = torch.rsqrt(centred.pow(2).mean(dims, keepdim=True) + eps).detach()
    y = centred * scale
    if weight is not None:
        y = y * weight
    return y + bias if bias is not None else y


def _rms_norm(x, normalized_shape, weight=None, eps=None):
    dims = tuple(range(-len(normalized_shape), 0))
    eps = torch.finfo(x.dtype).eps if eps is None else eps
    y = x * torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps).detach()
    return y * weight if weight is not None else y


def _group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    n, c = x.shape[:2]
    g = x.reshape(n, num_groups, -1)
    centred = g - g.mean(-1, keepdim=True)
    y = (centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps).detach())
    y = y.reshape(x.shape)
    shape = (1, c) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.reshape(shape)
    return y + bias.reshape(shape) if bias is not None else y


#: the normalisation functions, recomputed with their scale detached
CONSTANT_SCALE = {F.layer_norm: _layer_norm, F.rms_norm: _rms_norm, F.group_norm: _group_norm}


class _ConstantScaleNorm(torch.autograd.Function):
    """``y = (x − μ) · s · w + b`` by the function's own kernel, with the gradient of a constant
    scale ``s``: ``g_x = s · (g w − mean(g w))`` (layer norm; without the mean for RMS norm,
    which does not centre). One pass forward, as the model runs it, and only ``s``
    (one number per normalised row) kept for the backward pass, where recomputing the
    normalisation from its pieces would run and keep several activation-sized tensors."""

    @staticmethod
    def forward(ctx, func, x, normalized_shape, weight, bias, eps):  # type: ignore[override]
        dims = tuple(range(-len(normalized_shape), 0))
        if func is F.layer_norm:
            out, _, scale = torch.native_layer_norm(x, normalized_shape, weight, bias, eps)
        else:
            out = F.rms_norm(x, normalized_shape, weight, eps)
            eps = torch.finfo(x.dtype).eps if eps is None else eps
            scale = torch.rsqrt(x.pow(2).mean(dims, keepdim=True) + eps)
        ctx.dims, ctx.centred = dims, func is F.layer_norm
        ctx.save_for_backward(scale, weight)
        return out

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        scale, weight = ctx.saved_tensors
        gw = g if weight is None else g * weight
        if ctx.centred:
            gw = gw - gw.mean(ctx.dims, keepdim=True)
        return None, gw * scale, None, None, None, None


#: the parameters of the normalisation functions, in order
_NORM_ARGS = {F.layer_norm: ("input", "normalized_shape", "weight", "bias", "eps"),
              F.rms_norm: ("input", "normalized_shape", "weight", "eps"),
              F.group_norm: ("input", "num_groups", "weight", "bias", "eps")}
#: the functions _ConstantScaleNorm runs by their own kernel, with their default eps
_KERNEL_EPS = {F.layer_norm: 1e-5, F.rms_norm: None}


def norm_arguments(func, args: tuple, kwargs: dict) -> dict:
    """``{name: value}`` of a call of a normalisation function (``F.layer_norm``,
    ``F.rms_norm``, ``F.group_norm``)."""
    return dict(zip(_NORM_ARGS[func], args), **kwargs)


def constant_scale_function(func, args: tuple, kwargs: dict) -> Tensor:
    """``func(*args, **kwargs)`` (a normalisation function) with its scale held constant for
    the gradient."""
    given = norm_arguments(func, args, kwargs)
    weight, bias = given.get("weight"), given.get("bias")
    if func in _KERNEL_EPS and not any(torch.is_tensor(t) and t.requires_grad
                                          for t in (weight, bias)):
        shape = given["normalized_shape"]
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return _ConstantScaleNorm.apply(func, given["input"], shape, weight, bias,
                                        given.get("eps", _KERNEL_EPS[func]))
    # affine parameters that carry relevance (computed ones, e.g. adaptive norms), or group
    # norm: the normalisation recomputed from its pieces, its value the kernel's
    return ReplaceValue.apply(func(*args, **kwargs).detach(), CONSTANT_SCALE[func](*args, **kwargs))
#: scale statistics a hand-written normalisation computes; detached under ConstantScale
_SCALE_STATISTICS = {torch.rsqrt, T.rsqrt, torch.sqrt, T.sqrt, T.std, torch.std, T.var,
                     torch.var, T.norm, torch.norm, torch.linalg.vector_norm}


class _DetachScale(TorchFunctionMode):
    """Inside a normalisation module's forward: its scale statistics are constants."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in CONSTANT_SCALE:
            return CONSTANT_SCALE[func](*args, **kwargs)
        out = func(*args, **kwargs)
        if func in _SCALE_STATISTICS and torch.is_tensor(out):
            return out.detach()
        return out


def constant_scale_output(module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
    """``output`` of a normalisation module, with a gradient that treats its scale as a
    constant: the module's forward is run again with ``F.layer_norm`` / ``rms_norm`` /
    ``group_norm`` decomposed and ``rsqrt`` / ``sqrt`` / ``std`` / ``var`` / ``norm`` detached,
    so hand-written RMSNorm modules are covered too."""
    with torch.enable_grad(), _DetachScale():
        recomputed = module.forward(*inputs)
    return ReplaceValue.apply(output.detach(), recomputed)


def without_shift(out: Tensor, value: Tensor, shift: Optional[Tensor], epsilon: float = 1e-8) -> Tensor:
    """``out`` with its gradient scaled by ``y / (y − b ± ε)``: the shift ``b`` of a
    normalisation out of the denominator (``shift`` broadcasts over ``value``'s last dimension,
    or over the channels of a group norm)."""
    if shift is None or not out.requires_grad:
        return out
    b = shift.detach().to(value.dtype)
    if value.dim() > 2 and b.numel() == value.shape[1] and b.numel() != value.shape[-1]:
        b = b.view(1, -1, *([1] * (value.dim() - 2)))  # group norm: one shift per channel
    return ScaleGradient.apply(out, value / stabilize(value - b, epsilon))
