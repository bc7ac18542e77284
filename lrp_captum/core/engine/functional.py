"""Rules on functions: softmax, matrix products, normalisations, activations, attention.

Transformers compute most of what matters for relevance in functions called from ``forward``
(``torch.softmax``, ``q @ k.transpose(-1, -2)``, ``F.scaled_dot_product_attention``,
``F.layer_norm``, ``F.gelu``), not in leaf modules, and most of them cannot be traced by
torch.fx. :class:`OpRules` is a ``TorchFunctionMode`` active during the forward pass of one
attribution call: it sees every such call and applies the composite's rule for its *family*
(:data:`FAMILIES`), without changing the model. Calls inside a leaf module that carries a
rule are left alone (the module's rule applies), as are calls without gradient.

In the engine's convention (the gradient is the relevance per unit of value, ``c = R / a``):

* ``Gradient`` is the plain gradient (AttnLRP's softmax rule is gradient × input);
* ``Constant`` detaches the output (CP-LRP's attention probabilities);
* ``Uniform`` divides the gradient into each of ``n`` non-constant factors by ``n``;
* ``Pass`` returns ``f(x)`` with gradient ``f(x) / x`` (the identity rule);
* ``ConstantScale`` recomputes the normalisation with its scale detached;
* a :class:`~lrp_captum.core.rules.Terms` rule on ``F.linear`` runs the fused kernel of a dense layer.

``F.scaled_dot_product_attention`` is covered by scaling the gradients of ``q``, ``k`` and ``v``
before the fused kernel (the shares the softmax and product rules give them), and
``F.multi_head_attention_forward`` by computing it from those pieces.
"""
from __future__ import annotations

import math
import operator
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from lrp_captum.core.rules import Constant, ConstantScale, Gradient, Pass, Terms, Uniform
from lrp_captum.core.engine.autograd import ReplaceValue, ScaleGradient

__all__ = ["FAMILIES", "NEUTRAL", "neutral", "OpRules", "UncoveredOpError",
           "constant_scale_output", "scale_gradient", "identity_rule"]

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
    T.__add__, T.__radd__, T.add, torch.add, T.__iadd__, T.__sub__, T.__rsub__, T.sub,
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
_DIVISION = {T.__truediv__, T.div, torch.div, T.__itruediv__}


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


#: names of the positional arguments after ``x`` of the activation functions that take any
_ACTIVATION_ARGS = {F.gelu: ("approximate",), F.elu: ("alpha", "inplace"),
                    F.celu: ("alpha", "inplace"), F.softplus: ("beta", "threshold"),
                    F.silu: ("inplace",), F.mish: ("inplace",), F.selu: ("inplace",),
                    F.hardswish: ("inplace",), F.hardsigmoid: ("inplace",)}


class UncoveredOpError(TypeError):
    """A function on relevance-carrying tensors that no rule of the composite covers."""


# ---------------------------------------------------------------------------------------------
# the rules, as autograd plumbing
# ---------------------------------------------------------------------------------------------
def scale_gradient(t: Tensor, factor: float) -> Tensor:
    """``t``, with its gradient multiplied by ``factor`` (0: a constant)."""
    if factor == 1.0 or not t.requires_grad:
        return t
    if factor == 0.0:
        return t.detach()
    return ScaleGradient.apply(t, torch.tensor(factor, dtype=t.dtype, device=t.device))


class _Identity(torch.autograd.Function):
    """``f(x)`` with gradient ``g · f(x) / x`` (0 where x = 0): the identity rule. One tensor
    (the ratio) is kept, as the function's own backward would keep ``x``."""

    @staticmethod
    def forward(ctx, fn, x, kwargs):  # type: ignore[override]
        out = fn(x, **kwargs)
        zero = x == 0
        ctx.save_for_backward((out / torch.where(zero, 1.0, x)).masked_fill_(zero, 0.0))
        return out

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (ratio,) = ctx.saved_tensors
        return None, g * ratio, None


def identity_rule(fn: Callable, x: Tensor, **kwargs) -> Tensor:
    """``fn(x)`` for an elementwise ``fn``, routed through the identity rule ``R_in = R_out``."""
    return _Identity.apply(fn, x, kwargs)


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


_CONSTANT_SCALE = {F.layer_norm: _layer_norm, F.rms_norm: _rms_norm, F.group_norm: _group_norm}
#: scale statistics a hand-written normalisation computes; detached under ConstantScale
_SCALE_STATISTICS = {torch.rsqrt, T.rsqrt, torch.sqrt, T.sqrt, T.std, torch.std, T.var,
                     torch.var, T.norm, torch.norm, torch.linalg.vector_norm}


class _DetachScale(TorchFunctionMode):
    """Inside a normalisation module's forward: its scale statistics are constants."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _CONSTANT_SCALE:
            return _CONSTANT_SCALE[func](*args, **kwargs)
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


# ---------------------------------------------------------------------------------------------
# the mode
# ---------------------------------------------------------------------------------------------
def _grad_tensors(args) -> list:
    found = []
    for a in args:
        if torch.is_tensor(a) and a.requires_grad:
            found.append(a)
        elif isinstance(a, (list, tuple)):
            found.extend(_grad_tensors(a))
    return found


def _linear_shell(weight: Tensor, bias: Optional[Tensor]) -> nn.Linear:
    """An ``nn.Linear`` view of ``F.linear(x, weight, bias)`` for the dense-layer kernels."""
    shell = nn.Linear.__new__(nn.Linear)
    nn.Module.__init__(shell)
    object.__setattr__(shell, "weight", weight)
    object.__setattr__(shell, "bias", bias)
    shell.in_features, shell.out_features = weight.shape[1], weight.shape[0]
    return shell


class OpRules(TorchFunctionMode):
    """Applies the composite's rules to the functions of a forward pass.

    Parameters
    ----------
    rules : dict
        ``{family: CompiledRule}`` (see :data:`FAMILIES`).
    depth : list of int
        ``depth[0] > 0`` while a leaf module with a rule is running (its rule applies).
    where : callable
        Returns the name of the module running now, for error messages.
    """

    def __init__(self, rules: dict, depth: list, where: Callable[[], str]) -> None:
        super().__init__()
        self.rules, self.depth, self.where = rules, depth, where

    def _declaration(self, family: str):
        compiled = self.rules.get(family)
        return None if compiled is None else compiled.declaration

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth[0] > 0 or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        family = FAMILIES.get(func)
        if family is None:
            out = func(*args, **kwargs)
            if torch.is_tensor(out) and out.requires_grad and (not neutral(func) or (
                    func in _DIVISION and len(args) > 1 and torch.is_tensor(args[1])
                    and args[1].requires_grad)) and \
                    _grad_tensors(args) + _grad_tensors(kwargs.values()):
                self._uncovered(func)
            return out
        return getattr(self, "_" + family)(func, args, kwargs)

    def _uncovered(self, func, family: Optional[str] = None) -> None:
        name = function_name(func)
        what = f"the '{family}' family ({name})" if family else f"'{name}'"
        raise UncoveredOpError(
            f"no LRP rule covers {what}, called on relevance-carrying tensors in "
            f"{self.where()}. Add a rule for it to the composite (for a family: "
            f"get_composite(..., layer_map={{Op('{family or 'family'}'): rule}})), or wrap the "
            "computation in an nn.Module and give that module a rule.")

    # -- families -----------------------------------------------------------------------------
    def _softmax(self, func, args, kwargs):
        out = func(*args, **kwargs)
        decl = self._declaration("softmax")
        if not out.requires_grad or isinstance(decl, Gradient):
            return out
        if isinstance(decl, Constant):
            return out.detach()
        self._uncovered(func, "softmax")

    def _product(self, family, func, args, kwargs):
        factors = _grad_tensors(args)
        if len(factors) < 2:  # linear in the one factor that carries relevance
            return func(*args, **kwargs)
        decl = self._declaration(family)
        if isinstance(decl, Uniform):
            share = 1.0 / len(factors)
            ids = {id(t) for t in factors}
            args = tuple(scale_gradient(a, share) if id(a) in ids else
                         [scale_gradient(t, share) if id(t) in ids else t for t in a]
                         if isinstance(a, (list, tuple)) else a for a in args)
            return func(*args, **kwargs)
        if isinstance(decl, Gradient):
            return func(*args, **kwargs)
        self._uncovered(func, family)

    def _matmul(self, func, args, kwargs):
        return self._product("matmul", func, args, kwargs)

    def _mul(self, func, args, kwargs):
        return self._product("mul", func, args, kwargs)

    def _norm(self, func, args, kwargs):
        decl = self._declaration("norm")
        if isinstance(decl, ConstantScale):
            return ReplaceValue.apply(func(*args, **kwargs).detach(),
                                      _CONSTANT_SCALE[func](*args, **kwargs))
        if isinstance(decl, Gradient):
            return func(*args, **kwargs)
        self._uncovered(func, "norm")

    def _activation(self, func, args, kwargs):
        decl = self._declaration("activation")
        if not (torch.is_tensor(args[0]) and args[0].requires_grad) or \
                isinstance(decl, Gradient):
            return func(*args, **kwargs)
        if isinstance(decl, Pass):
            return identity_rule(func, args[0], **dict(zip(_ACTIVATION_ARGS.get(func, ()),
                                                           args[1:])), **kwargs)
        self._uncovered(func, "activation")

    def _addmm(self, args, kwargs):
        """``torch.addmm(input, x, w)`` = ``input + x @ w`` (Hugging Face's ``Conv1D`` in GPT-2):
        a dense layer when only ``x`` carries relevance, ``input`` being its bias."""
        names = ("input", "mat1", "mat2", "beta", "alpha")
        given = dict(zip(names, args), **kwargs)
        bias, x, w = given["input"], given["mat1"], given["mat2"]
        beta, alpha = given.get("beta", 1), given.get("alpha", 1)
        if not x.requires_grad and not w.requires_grad:
            return torch.addmm(*args, **kwargs)
        if w.requires_grad or (torch.is_tensor(bias) and bias.requires_grad):
            self._uncovered(torch.addmm, "linear")  # a product of two relevance carriers
        if alpha != 1:
            w = w * alpha
        if beta != 1:
            bias = bias * beta
        if torch.is_tensor(bias) and bias.dim() == 1 and bias.shape[0] == w.shape[1]:
            return self._linear(F.linear, (x, w.t(), bias), {})
        return self._linear(F.linear, (x, w.t(), None), {}) + bias

    def _linear(self, func, args, kwargs):
        if func is not F.linear:
            return self._addmm(args, kwargs)
        x, weight = args[0], args[1] if len(args) > 1 else kwargs["weight"]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        compiled = self.rules.get("linear")
        if compiled is None:
            self._uncovered(func, "linear")
        if not x.requires_grad:
            return func(x, weight, bias)
        shell = _linear_shell(weight, bias)
        if isinstance(compiled.declaration, Terms):
            out = compiled.fused_forward(shell, (x,), False) if compiled.fusable(shell) \
                else None
            if out is None:
                plain = F.linear(x, weight, bias)
                out = compiled.hook_output(shell, (x,), plain)
                out = plain if out is None else out
            return out
        raise UncoveredOpError(f"the rule for F.linear must be a term rule (ε, γ, ...), got "
                               f"{compiled.rule!r}")

    # -- attention ----------------------------------------------------------------------------
    def _attention_shares(self) -> tuple[float, float]:
        """Gradient shares of ``(q and k, v)`` under the softmax and product rules:
        ``A V`` gives ``A`` and ``V`` their share (all of it to ``V`` when the softmax makes
        ``A`` a constant), the softmax passes ``A``'s on, and ``q kᵀ`` splits it between
        ``q`` and ``k``."""
        product, softmax = self._declaration("matmul"), self._declaration("softmax")
        if not isinstance(product, (Uniform, Gradient)) or \
                not isinstance(softmax, (Gradient, Constant)):
            self._uncovered(F.scaled_dot_product_attention, "attention")
        if isinstance(softmax, Constant):
            return 0.0, 1.0
        share = 0.5 if isinstance(product, Uniform) else 1.0
        return share * share, share

    def _attention(self, func, args, kwargs):
        if func is F.multi_head_attention_forward:
            return self._multi_head_attention(*args, **kwargs)
        return self._sdpa(*args, **kwargs)

    def _sdpa(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
              scale=None, **kwargs):
        qk, v = self._attention_shares()
        return F.scaled_dot_product_attention(
            scale_gradient(query, qk), scale_gradient(key, qk), scale_gradient(value, v),
            attn_mask=attn_mask, dropout_p=0.0, is_causal=is_causal, scale=scale, **kwargs)

    def _multi_head_attention(self, query, key, value, embed_dim_to_check, num_heads,
                              in_proj_weight, in_proj_bias, bias_k, bias_v, add_zero_attn,
                              dropout_p, out_proj_weight, out_proj_bias, training=True,
                              key_padding_mask=None, need_weights=True, attn_mask=None,
                              use_separate_proj_weight=False, q_proj_weight=None,
                              k_proj_weight=None, v_proj_weight=None, static_k=None,
                              static_v=None, average_attn_weights=True, is_causal=False):
        """``nn.MultiheadAttention`` from its pieces (``(L, N, E)`` layout, as the module
        passes it), each under its rule."""
        if bias_k is not None or bias_v is not None or add_zero_attn or static_k is not None \
                or static_v is not None:
            raise UncoveredOpError(
                f"nn.MultiheadAttention in {self.where()} uses add_bias_kv, add_zero_attn or "
                "static keys/values, which the attention rules do not cover")
        length, batch, embed = query.shape
        if use_separate_proj_weight:
            weights = (q_proj_weight, k_proj_weight, v_proj_weight)
        else:
            weights = in_proj_weight.chunk(3)
        biases = in_proj_bias.chunk(3) if in_proj_bias is not None else (None,) * 3
        q, k, v = (self._linear(F.linear, (t, w, b), {})
                   for t, w, b in zip((query, key, value), weights, biases))
        head = embed // num_heads

        def heads(t):  # (S, N, E) -> (N, H, S, D)
            return t.reshape(t.shape[0], batch, num_heads, head).permute(1, 2, 0, 3)

        q, k, v = heads(q), heads(k), heads(v)
        mask = _merge_masks(attn_mask, key_padding_mask, batch, num_heads, length, k.shape[2],
                            q.dtype)
        if need_weights:
            qk, share_v = self._attention_shares()
            scores = scale_gradient(q, qk) @ scale_gradient(k, qk).transpose(-2, -1) \
                / math.sqrt(head)
            if mask is not None:
                scores = scores + mask
            weights_ = torch.softmax(scores, dim=-1)
            out = weights_ @ scale_gradient(v, share_v)
        else:
            out = self._sdpa(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None)
            weights_ = None
        out = out.permute(2, 0, 1, 3).reshape(length, batch, embed)
        out = self._linear(F.linear, (out, out_proj_weight, out_proj_bias), {})
        if weights_ is not None and average_attn_weights:
            weights_ = weights_.mean(1)
        return out, weights_


def _merge_masks(attn_mask, key_padding_mask, batch, heads, length, source, dtype):
    """One additive float mask ``(N, H, L, S)`` from MultiheadAttention's two masks."""
    mask = None
    if attn_mask is not None:
        mask = attn_mask if attn_mask.dtype != torch.bool else torch.zeros(
            attn_mask.shape, dtype=dtype, device=attn_mask.device).masked_fill_(
            attn_mask, float("-inf"))
        mask = mask.reshape((1, 1) + tuple(mask.shape)) if mask.dim() == 2 else \
            mask.reshape(batch, heads, length, source)
    if key_padding_mask is not None:
        pad = key_padding_mask if key_padding_mask.dtype != torch.bool else torch.zeros(
            key_padding_mask.shape, dtype=dtype, device=key_padding_mask.device).masked_fill_(
            key_padding_mask, float("-inf"))
        pad = pad.reshape(batch, 1, 1, source)
        mask = pad if mask is None else mask + pad
    return mask
