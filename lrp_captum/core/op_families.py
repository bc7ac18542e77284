"""Functions called in ``forward``: the family each belongs to, and those that need no rule.

Transformers compute attention, normalisation and activations in functions (``torch.softmax``,
``q @ k.transpose(-1, -2)``, ``F.layer_norm``, ``F.gelu``), not in leaf modules. A composite
gives a *family* of such functions a rule with the selector ``Op(family)``
(:class:`lrp_captum.core.composites.Op`); the engine applies it during a call
(:mod:`lrp_captum.core.engine.functional`). Functions through which the plain gradient already
propagates relevance correctly (routing, reshaping, sums, piecewise-linear maps through the
origin) are *neutral*: they need no rule, in a traced graph (:mod:`lrp_captum.core.canonizers`)
as in a call.

This table is shared by the declarations (composites, canonizers) and the engine, so it lives
below both.
"""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

__all__ = ["FAMILIES", "OP_FAMILIES", "NEUTRAL", "DIVISION", "neutral", "function_name"]

T = torch.Tensor

#: function → family; a composite gives a family a rule with the selector ``Op(family)``
FAMILIES: dict = {}
for _family, _functions in {
    "softmax": (F.softmax, torch.softmax, T.softmax),
    # (operator.* as torch.fx records `a @ b`, `a * b` in a traced graph)
    "matmul": (torch.matmul, T.matmul, T.__matmul__, T.__rmatmul__, torch.bmm, T.bmm,
               torch.mm, T.mm, torch.einsum, operator.matmul),
    "mul": (torch.mul, T.mul, T.__mul__, T.__rmul__, operator.mul),
    "norm": (F.layer_norm, F.rms_norm, F.group_norm),
    "activation": (F.gelu, F.silu, F.mish, F.elu, F.selu, F.celu, F.softplus, F.hardswish,
                   F.hardsigmoid, F.logsigmoid, F.softsign, F.tanhshrink, torch.tanh, T.tanh,
                   F.tanh, torch.sigmoid, T.sigmoid, F.sigmoid),
    "linear": (F.linear, torch.addmm, T.addmm),
    "attention": (F.scaled_dot_product_attention, F.multi_head_attention_forward),
}.items():
    for _fn in _functions:
        FAMILIES[_fn] = _family

#: the families a composite gives rules to; "attention" (``F.scaled_dot_product_attention``,
#: ``F.multi_head_attention_forward``) is covered by the rules of "softmax" and "matmul"
OP_FAMILIES = ("softmax", "matmul", "mul", "norm", "activation", "linear")

#: functions through which the plain gradient propagates relevance correctly whatever their
#: inputs (routing, reshaping, sums, piecewise-linear maps through the origin); torch.fx
#: canonization uses the same set
NEUTRAL = {
    T.view, T.reshape, torch.reshape, T.permute, torch.permute, T.transpose, torch.transpose,
    T.contiguous, T.expand, T.expand_as, T.view_as, T.reshape_as, T.flatten, torch.flatten,
    T.unflatten, T.squeeze, torch.squeeze, T.unsqueeze, torch.unsqueeze, T.__getitem__, T.split,
    torch.split, T.chunk, torch.chunk, T.unbind, torch.unbind, torch.cat, torch.concat,
    torch.stack, T.narrow, torch.narrow, T.select, T.index_select, torch.index_select, T.gather,
    torch.gather, T.repeat, T.repeat_interleave, T.roll, T.movedim, torch.movedim, T.t, T.clone,
    torch.clone, T.to, T.type, T.type_as, T.float, T.double, T.half, T.bfloat16, T.detach,
    T.__add__, T.__radd__, T.add, torch.add, T.__iadd__, T.add_, T.__sub__, T.__rsub__, T.sub,
    T.__isub__, T.sub_, T.masked_fill_,
    torch.sub, T.__neg__, T.neg, torch.neg, T.sum, torch.sum, T.mean, torch.mean, F.dropout,
    F.dropout1d, F.dropout2d, F.dropout3d, F.pad, F.relu, torch.relu, T.relu, F.leaky_relu,
    F.hardtanh, T.abs, torch.abs, T.max, torch.max, T.amax, torch.amax, F.max_pool1d,
    F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
    F.adaptive_max_pool3d, F.interpolate, T.masked_fill, torch.masked_fill, torch.where,
    T.where, F.embedding, T.__setitem__, T.masked_select, T.flip, torch.flip, T.tile,
    F.pixel_shuffle, F.pixel_unshuffle, T.mT.__get__, T.T.__get__, F.conv1d, F.conv2d, F.conv3d,
    T.__truediv__, T.div, torch.div, T.__itruediv__, T.unfold, T.new_zeros, T.floor_divide,
    torch.floor_divide, operator.getitem, operator.neg, operator.truediv, operator.floordiv,
    T.requires_grad_, T.size, T.dim, F.prelu, F.relu6, F.threshold, T.min, torch.min, T.amin,
    torch.amin, T.long, T.int, T.bool, T.new_ones, T.new_empty, T.split_with_sizes, operator.eq,
    operator.ne, operator.lt, operator.le, operator.gt, operator.ge, T.__eq__, T.__ne__,
    T.__lt__, T.__le__, T.__gt__, T.__ge__,
    # more routing (Swin's shifted windows, MaxViT's partitions) and linear maps
    torch.roll, T.swapaxes, torch.swapaxes, T.swapdims, torch.swapdims, torch.broadcast_to,
    T.broadcast_to, torch.tile, torch.repeat_interleave, torch.hstack, torch.vstack,
    torch.dstack, torch.column_stack, torch.t, torch.adjoint, T.adjoint, F.unfold, F.fold,
    T.cumsum, torch.cumsum, torch.fliplr, torch.flipud, T.rot90, torch.rot90, T.diagonal,
    torch.diagonal, T.triu, torch.triu, T.tril, torch.tril, T.masked_scatter, T.index_add,
    T.index_copy, T.scatter, T.scatter_add, torch.scatter, torch.scatter_add, T.index_put,
    T.nan_to_num, F.channel_shuffle, torch.channel_shuffle,
    # an eval-mode BatchNorm is a per-channel affine map: LRP-0 is its gradient
    F.batch_norm,
}
#: division is linear in the numerator only
DIVISION = {T.__truediv__, T.div, torch.div, T.__itruediv__}


def neutral(func) -> bool:
    """Functions whose gradient is already the right propagation: routing and linear maps,
    and autograd functions (their backward is defined by the engine or the user)."""
    if func is None:
        return False
    if func in NEUTRAL:
        return True
    owner = getattr(func, "__self__", None)
    return isinstance(owner, type) and issubclass(owner, torch.autograd.Function)


def function_name(func) -> str:
    """``torch.exp``, ``Tensor.sigmoid``, ``torch.nn.functional.gelu``: how users write it."""
    qualname = getattr(func, "__qualname__", "") or ""
    name = getattr(func, "__name__", None) or repr(func)
    if qualname.startswith("_VariableFunctionsClass."):
        return f"torch.{name}"
    if qualname.startswith(("TensorBase.", "Tensor.")):
        return f"Tensor.{name}"
    module = getattr(func, "__module__", None)
    return f"{module}.{name}" if module else name
