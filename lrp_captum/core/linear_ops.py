"""Layers seen as linear maps ``z = W x + b`` that can be re-evaluated with modified parameters.

LRP rules modify the weights (``w + γw⁺``, ``w⁺``, ``w²``, ...) and the inputs (``x⁺``, bounds,
ones) of a layer and evaluate it again. This module answers one question for every supported
layer type: *how do I evaluate this layer with other parameters?* -- without touching the
module's own parameters, so the user's model is never modified.

Average pooling is linear with weight ``1/d_k`` from every input of window ``k`` (``d_k`` its
divisor); a weight modifier is applied to that weight, e.g. ``w² = 1/d_k²`` or ``ones = 1``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lrp_captum.core import layer_types as types

ParamModifier = Callable[[Tensor], Tensor]



class UnsupportedLayerError(TypeError):
    """A rule was asked to treat a layer as a linear map, but the layer is not one."""


def batchnorm_affine(module: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor]:
    """Per-channel ``(scale, shift)`` of a BatchNorm layer in evaluation mode.

    ``y = scale * x + shift`` with ``scale = γ / sqrt(var + eps)``, ``shift = β - mean * scale``.
    """
    if module.training or module.running_var is None:
        raise UnsupportedLayerError(
            f"{type(module).__name__} is in training mode or has no running statistics; LRP "
            "explains a fixed function: call model.eval() before attribute()")
    scale = torch.rsqrt(module.running_var + module.eps)
    if module.weight is not None:
        scale = scale * module.weight
    shift = -module.running_mean * scale
    if module.bias is not None:
        shift = shift + module.bias
    return scale, shift


def is_linear_layer(module: nn.Module) -> bool:
    """True if :func:`evaluate_linear` can evaluate ``module`` with modified parameters."""
    return (isinstance(module, types.Linear + types.BatchNorm + types.AvgPool)
            or hasattr(module, "lrp_linear"))


def layer_parameters(module: nn.Module) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """``(weight, bias)`` of a linear layer as used by :func:`evaluate_linear`.

    Returns ``(None, None)`` for parameter-free layers (pooling).
    """
    if hasattr(module, "lrp_linear"):
        return module.lrp_parameters()
    if isinstance(module, types.BatchNorm):
        return batchnorm_affine(module)
    if isinstance(module, types.AvgPool):
        return None, None
    if isinstance(module, types.Linear):
        return module.weight, module.bias
    raise UnsupportedLayerError(
        f"{type(module).__name__} is not a linear layer this rule can modify; supported: Linear, "
        "Conv1d/2d/3d, ConvTranspose1d/2d/3d, BatchNorm, AvgPool/AdaptiveAvgPool, or a module "
        "defining lrp_linear(x, weight, bias) and lrp_parameters()")


def evaluate_linear(module: nn.Module, x: Tensor,
                    weight_mod: Optional[ParamModifier] = None,
                    bias_mod: Optional[ParamModifier] = None,
                    use_bias: bool = True) -> Tensor:
    """Evaluate ``module`` on ``x`` with its weight/bias passed through the given modifiers.

    Parameters
    ----------
    module : nn.Module
        A linear layer (see :func:`is_linear_layer`).
    x : Tensor
        Input of the shape the layer expects, e.g. ``(N, C, H, W)`` for Conv2d.
    weight_mod, bias_mod : callable, optional
        Functions applied to the weight and bias tensors (identity if ``None``).
    use_bias : bool
        If False the bias is left out entirely.

    Returns
    -------
    Tensor
        The layer output computed with modified parameters, same shape as ``module(x)``.
    """
    weight, bias = layer_parameters(module)
    if weight is None:
        return _evaluate_pooling(module, x, weight_mod)
    weight_mod = weight_mod or (lambda t: t)
    bias_mod = bias_mod or (lambda t: t)
    w = weight_mod(weight)
    b = bias_mod(bias) if (use_bias and bias is not None) else None
    return linear_forward(module, x, w, b)


def _evaluate_pooling(module: nn.Module, x: Tensor,
                      weight_mod: Optional[ParamModifier]) -> Tensor:
    """Average pooling with its weights ``1/d_k`` passed through ``weight_mod``.

    All inputs of output ``k`` share the weight ``1/d_k`` (``d_k`` the divisor), so the
    modified layer is ``sum_pool(x)_k · ρ(1/d_k)``. ``forward`` (not ``__call__``) is used so
    that hooks on the module do not fire again.
    """
    if weight_mod is None:
        return module.forward(x)
    ones = torch.ones_like(x[:1])
    divisor = _sum_pool(module, ones) / module.forward(ones)
    rho = weight_mod(1.0 / divisor)
    return _sum_pool(module, x) * rho


_POOL_DIMS = {nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3, nn.AdaptiveAvgPool1d: 1,
              nn.AdaptiveAvgPool2d: 2, nn.AdaptiveAvgPool3d: 3}


def _as_tuple(value, n: int) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _sum_pool(module: nn.Module, x: Tensor) -> Tensor:
    """Sum of the inputs in each pooling window (padding excluded)."""
    dims = next(d for t, d in _POOL_DIMS.items() if isinstance(module, t))
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        kernel = _as_tuple(module.kernel_size, dims)
        stride = _as_tuple(module.stride or module.kernel_size, dims)
        padding = _as_tuple(module.padding, dims)
        if dims == 1:  # avg_pool1d has no divisor_override: go through 2-D
            return F.avg_pool2d(x.unsqueeze(-2), (1,) + kernel, (1,) + stride, (0,) + padding,
                                module.ceil_mode, True, divisor_override=1).squeeze(-2)
        fn = F.avg_pool2d if dims == 2 else F.avg_pool3d
        return fn(x, kernel, stride, padding, module.ceil_mode, True, divisor_override=1)
    # adaptive: window i along an axis spans floor(i·n/m) .. ceil((i+1)·n/m)
    out = module.forward(x)
    counts = torch.ones((), dtype=x.dtype, device=x.device)
    for axis, (n_in, n_out) in enumerate(zip(x.shape[-dims:], out.shape[-dims:])):
        i = torch.arange(n_out, device=x.device)
        size = (torch.div((i + 1) * n_in + n_out - 1, n_out, rounding_mode="floor")
                - torch.div(i * n_in, n_out, rounding_mode="floor")).to(x.dtype)
        shape = [1] * dims
        shape[axis] = n_out
        counts = counts * size.reshape(shape)
    return out * counts


def linear_forward(module: nn.Module, x: Tensor, weight: Tensor,
                   bias: Optional[Tensor]) -> Tensor:
    """Apply the linear map of ``module`` to ``x`` with the given ``weight`` and ``bias``."""
    if hasattr(module, "lrp_linear"):
        return module.lrp_linear(x, weight, bias)
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, bias)
    if isinstance(module, types.PlainConvolution):
        return module._conv_forward(x, weight, bias)
    if isinstance(module, types.TransposedConvolution):
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[x.dim() - 2]
        return fn(x, weight, bias, module.stride, module.padding, module.output_padding,
                  module.groups, module.dilation)
    if isinstance(module, types.BatchNorm):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        out = x * weight.reshape(shape)
        return out + bias.reshape(shape) if bias is not None else out
    raise UnsupportedLayerError(type(module).__name__)


def underlying_layer(module: nn.Module) -> nn.Module:
    """The layer whose weight ``module`` evaluates (a merged conv + BatchNorm: its conv)."""
    inner = getattr(module, "linear", None)
    return inner if hasattr(module, "lrp_linear") and isinstance(inner, nn.Module) else module


def has_dense_kernel(module: nn.Module) -> bool:
    """Linear or zero-padded Conv1d/2d/3d (possibly with merged BatchNorm): the layers whose
    input gradient ``W^T u`` the fused engine computes itself."""
    base = underlying_layer(module)
    if type(base) is nn.Linear:
        return True
    return (type(base) in types.PlainConvolution and base.padding_mode == "zeros"
            and not isinstance(base.padding, str))


def input_gradient(module: nn.Module, u: Tensor, weight: Tensor, input_shape) -> Tensor:
    """``W^T u``: the input gradient of a :func:`has_dense_kernel` layer for the output
    gradient ``u``, with ``weight`` in place of the layer's own."""
    base = underlying_layer(module)
    if isinstance(base, nn.Linear):
        return u.matmul(weight)
    # only the input's shape is read; an expanded placeholder would be copied to a contiguous
    # tensor inside convolution_backward, an uninitialised one costs nothing
    placeholder = u.new_empty(input_shape)
    dims = weight.dim() - 2
    return torch.ops.aten.convolution_backward(
        u, placeholder, weight, None, list(base.stride), list(base.padding),
        list(base.dilation), False, [0] * dims, base.groups, [True, False, False])[0]


def channel_vector(v: Tensor, like: Tensor, module: nn.Module) -> Tensor:
    """A per-output-channel vector shaped to broadcast against the output ``like``."""
    if isinstance(underlying_layer(module), nn.Linear):
        return v
    return v.reshape((1, -1) + (1,) * (like.dim() - 2))
