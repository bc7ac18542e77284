"""Layers seen as linear maps ``z = W x + b`` that can be re-evaluated with modified parameters.

LRP rules modify the weights (``w + γw⁺``, ``w⁺``, ``w²``, ...) and the inputs (``x⁺``, bounds,
ones) of a layer and evaluate it again. This module answers one question for every supported
layer type: *how do I evaluate this layer with other parameters?* -- without touching the
module's own parameters, so the user's model is never modified.

Parameter-free linear layers (average pooling) are treated as having one implicit, positive
weight: ``scale`` (a Python float) multiplies their output. A weight modifier applied to that
implicit weight gives e.g. ``w⁺ = 1``, ``w⁻ = 0``, ``w + γw⁺ = 1 + γ``.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ParamModifier = Callable[[Tensor], Tensor]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
            nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)


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
    return (isinstance(module, (nn.Linear,) + _CONV + _CONV_T + _BATCHNORM + _AVGPOOL)
            or hasattr(module, "lrp_linear"))


def layer_parameters(module: nn.Module) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """``(weight, bias)`` of a linear layer as used by :func:`evaluate_linear`.

    Returns ``(None, None)`` for parameter-free layers (pooling).
    """
    if hasattr(module, "lrp_linear"):
        return module.lrp_parameters()
    if isinstance(module, _BATCHNORM):
        return batchnorm_affine(module)
    if isinstance(module, _AVGPOOL):
        return None, None
    if isinstance(module, (nn.Linear,) + _CONV + _CONV_T):
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
    weight_mod = weight_mod or (lambda t: t)
    bias_mod = bias_mod or (lambda t: t)
    if weight is None:  # parameter-free positive linear map (average pooling)
        scale = float(weight_mod(torch.ones(())).item())
        out = module(x)
        return out * scale if scale != 1.0 else out
    w = weight_mod(weight)
    b = bias_mod(bias) if (use_bias and bias is not None) else None
    return linear_forward(module, x, w, b)


def linear_forward(module: nn.Module, x: Tensor, weight: Tensor,
                   bias: Optional[Tensor]) -> Tensor:
    """Apply the linear map of ``module`` to ``x`` with the given ``weight`` and ``bias``."""
    if hasattr(module, "lrp_linear"):
        return module.lrp_linear(x, weight, bias)
    if isinstance(module, nn.Linear):
        return F.linear(x, weight, bias)
    if isinstance(module, _CONV):
        return module._conv_forward(x, weight, bias)
    if isinstance(module, _CONV_T):
        fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[x.dim() - 2]
        return fn(x, weight, bias, module.stride, module.padding, module.output_padding,
                  module.groups, module.dilation)
    if isinstance(module, _BATCHNORM):
        shape = (1, -1) + (1,) * (x.dim() - 2)
        out = x * weight.reshape(shape)
        return out + bias.reshape(shape) if bias is not None else out
    raise UnsupportedLayerError(type(module).__name__)
