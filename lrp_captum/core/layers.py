"""Modules that canonizers put into a model so every operation is a layer with a rule.

* :class:`Sum` -- a residual ``a + b (+ ...)``; relevance is split in proportion to the summands.
* :class:`GatedProduct` -- ``value * gate`` where the gate (e.g. squeeze-excitation's sigmoid
  branch) is treated as a constant: all relevance goes to ``value``.
* :class:`FunctionalActivation` -- an activation written as a function call
  (``F.silu(x)``, ``torch.sigmoid(x)``), so the pass rule can be attached to it.
* :class:`MergedBatchNorm` -- a convolution / linear layer followed by BatchNorm, evaluated as
  one linear layer whose parameters are computed on the fly from the original modules (which
  are shared, not copied, so later weight updates are seen).
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from lrp_captum.core.linear_ops import batchnorm_affine, layer_parameters, linear_forward


class Sum(nn.Module):
    """``torch.add`` / ``+`` of tensors (broadcasting allowed), as a layer."""

    def forward(self, *summands: Tensor) -> Tensor:
        out = summands[0]
        for s in summands[1:]:
            out = out + s
        return out


class GatedProduct(nn.Module):
    """``value * gate`` with the gate treated as a constant for relevance propagation."""

    def forward(self, value: Tensor, gate: Tensor) -> Tensor:
        return value * gate.detach()


class FunctionalActivation(nn.Module):
    """Wraps an elementwise function (``torch.sigmoid``, ``F.silu``, ...) as a layer."""

    def __init__(self, fn: Callable, name: str, kwargs: dict | None = None) -> None:
        super().__init__()
        self.fn, self.fn_name, self.kwargs = fn, name, dict(kwargs or {})
        self.kwargs.pop("inplace", None)

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x, **self.kwargs)

    def extra_repr(self) -> str:
        return self.fn_name


class MergedBatchNorm(nn.Module):
    """``batchnorm(linear(x))`` evaluated as a single linear layer.

    Parameters are derived on every call from the wrapped modules; nothing is copied.
    """

    def __init__(self, linear: nn.Module, batchnorm: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        self.linear = linear
        self.batchnorm = batchnorm

    def lrp_parameters(self) -> tuple[Tensor, Tensor]:
        weight, bias = layer_parameters(self.linear)
        scale, shift = batchnorm_affine(self.batchnorm)
        # the output channel is dim 0 for Linear/Conv, dim 1 for ConvTranspose
        channel_dim = 1 if isinstance(self.linear, (nn.ConvTranspose1d, nn.ConvTranspose2d,
                                                    nn.ConvTranspose3d)) else 0
        shape = [1] * weight.dim()
        shape[channel_dim] = -1
        if channel_dim == 1 and getattr(self.linear, "groups", 1) != 1:
            raise NotImplementedError("merging BatchNorm into a grouped ConvTranspose")
        merged_w = weight * scale.reshape(shape)
        merged_b = shift if bias is None else bias * scale + shift
        return merged_w, merged_b

    def lrp_linear(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return linear_forward(self.linear, x, weight, bias)

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.lrp_parameters()
        return self.lrp_linear(x, weight, bias)
