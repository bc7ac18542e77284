"""Rules on functions: softmax, matrix products, normalisations, activations, attention.

Transformers compute most of what matters for relevance in functions called from ``forward``
(``torch.softmax``, ``q @ k.transpose(-1, -2)``, ``F.scaled_dot_product_attention``,
``F.layer_norm``, ``F.gelu``), not in leaf modules, and most of them cannot be traced by
torch.fx. :class:`OpRules` is a ``TorchFunctionMode`` active during the forward pass of one
attribution call: it sees every such call and applies the composite's rule for its *family*
(:data:`lrp_captum.core.op_families.FAMILIES`), without changing the model. Calls inside a leaf
module that carries a rule are left alone (the module's rule applies), as are calls through
which no relevance flows.

What a rule does to the functions of a family is the ``functions`` column of the table of kinds
(:mod:`lrp_captum.core.engine.declaration_kinds`); the behaviours are defined here, each with
the signature ``(compiled, func, args, kwargs) -> output``. In the engine's convention
(the gradient is the relevance per unit of value, ``c = R / a``):

* :func:`plain_call`: the plain gradient (AttnLRP's softmax rule is gradient × input);
* :func:`constant_call`: the output detached (CP-LRP's attention probabilities);
* :func:`split_product`: the gradient into each of ``n`` non-constant factors scaled by the
  rule's share (``1/n`` for the uniform rule);
* :func:`identity_call`: ``f(x)`` with gradient ``f(x) / x`` (the identity rule);
* :func:`constant_scale_call`: the normalisation recomputed with its scale detached;
* :func:`dense_call`: a term rule on ``F.linear`` runs the fused kernel of a dense layer.

``F.scaled_dot_product_attention`` is covered by scaling the gradients of ``q``, ``k`` and ``v``
before the fused kernel (the shares the softmax and product rules give them), and
``F.multi_head_attention_forward`` by computing it from those pieces.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from lrp_captum.core.engine.autograd import ScaleGradient, ScaleGradientOfUse, scale_output_gradient
from lrp_captum.core.engine.constant_scale import constant_scale_function, norm_arguments, without_shift
from lrp_captum.core.op_families import DIVISION, FAMILIES, function_name, neutral

__all__ = ["OpRules", "UncoveredOpError", "scale_gradient", "identity_rule", "plain_call",
           "constant_call", "split_product", "identity_call", "constant_scale_call",
           "dense_call"]

#: names of the positional arguments after ``x`` of the activation functions that take any
_ACTIVATION_ARGS = {F.gelu: ("approximate",), F.elu: ("alpha", "inplace"),
                    F.celu: ("alpha", "inplace"), F.softplus: ("beta", "threshold"),
                    F.silu: ("inplace",), F.mish: ("inplace",), F.selu: ("inplace",),
                    F.hardswish: ("inplace",), F.hardsigmoid: ("inplace",)}


class UncoveredOpError(NotImplementedError):
    """A function on relevance-carrying tensors that no rule of the composite covers.

    Not a ``TypeError``: torch turns a ``TypeError`` raised inside an operator (``a * b``,
    ``a @ b``, ``a ** 2``) into ``NotImplemented``, and the message would be lost.
    """


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


def _scaled_use(t: Tensor, factor: float) -> Tensor:
    """``t`` for one use by a function that does not modify it in place (the factors of an
    attention), its gradient from that use multiplied by ``factor``."""
    if factor == 1.0 or not t.requires_grad:
        return t
    if factor == 0.0:
        return t.detach()
    return ScaleGradientOfUse.apply(t, factor)


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


# ---------------------------------------------------------------------------------------------
# what a rule does to the functions of a family
# ---------------------------------------------------------------------------------------------
def plain_call(compiled, func, args, kwargs):
    """The function as it is: its gradient is the rule."""
    return func(*args, **kwargs)


def constant_call(compiled, func, args, kwargs):
    """The function's output as a constant: no relevance flows through it."""
    return func(*args, **kwargs).detach()


def split_product(compiled, func, args, kwargs):
    """A product of ``n`` relevance-carrying factors, each factor's gradient scaled by the
    rule's share (``compiled.kind.share(n)``)."""
    share = compiled.kind.share(len(_grad_tensors(args)))
    # a product is linear in each factor: scaling the gradient of its output scales every
    # factor's by the same share, with one multiplication and no copy
    return scale_output_gradient(func(*args, **kwargs), share)


def identity_call(compiled, func, args, kwargs):
    """An elementwise activation through the identity rule ``R_in = R_out``."""
    return identity_rule(func, args[0], **dict(zip(_ACTIVATION_ARGS.get(func, ()), args[1:])),
                         **kwargs)


def constant_scale_call(compiled, func, args, kwargs):
    """A normalisation function with its scale held constant (and its shift out of the
    denominator where the rule says ``bias=False``)."""
    out = constant_scale_function(func, args, kwargs)
    if getattr(compiled.declaration, "bias", True):
        return out
    return without_shift(out, out.detach(), norm_arguments(func, args, kwargs).get("bias"))


def dense_call(compiled, func, args, kwargs):
    """``F.linear(x, weight, bias)`` as a dense layer under a term rule: its fused kernel, or
    its hook path where the kernel does not apply to the input."""
    x, weight = args[0], args[1] if len(args) > 1 else kwargs["weight"]
    bias = args[2] if len(args) > 2 else kwargs.get("bias")
    shell = _linear_shell(weight, bias)
    out = compiled.fused_forward(shell, (x,), False) if compiled.fusable(shell) else None
    if out is None:
        plain = F.linear(x, weight, bias)
        out = compiled.hook_output(shell, (x,), plain)
        out = plain if out is None else out
    return out


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


#: families of products: relevance flows through a call with two or more factors that carry
#: it (a product with constants is linear in the one factor that does)
_PRODUCTS = ("matmul", "mul")


def _relevance_flows(family: str, args: tuple, kwargs: dict) -> bool:
    if family in _PRODUCTS:
        return len(_grad_tensors(args)) >= 2
    x = args[0] if args else kwargs.get("input")
    return torch.is_tensor(x) and x.requires_grad


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
        ``{family: CompiledRule}`` (see :data:`lrp_captum.core.op_families.FAMILIES`).
    depth : list of int
        ``depth[0] > 0`` while a leaf module with a rule is running (its rule applies).
    where : callable
        Returns the name of the module running now, for error messages.
    """

    def __init__(self, rules: dict, depth: list, where: Callable[[], str]) -> None:
        super().__init__()
        self.rules, self.depth, self.where = rules, depth, where

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.depth[0] > 0 or not torch.is_grad_enabled():
            return func(*args, **kwargs)
        family = FAMILIES.get(func)
        if family is None:
            out = func(*args, **kwargs)
            if torch.is_tensor(out) and out.requires_grad and (not neutral(func) or (
                    func in DIVISION and len(args) > 1 and torch.is_tensor(args[1])
                    and args[1].requires_grad)) and \
                    _grad_tensors(args) + _grad_tensors(kwargs.values()):
                self._uncovered(func)
            return out
        if family == "attention":
            return self._attention(func, args, kwargs)
        if family == "linear" and func is not F.linear:
            return self._addmm(args, kwargs)
        return self._family_call(family, func, args, kwargs)

    def _family_call(self, family: str, func, args, kwargs):
        """``func`` under the rule of its family, where relevance flows through the call."""
        if not _relevance_flows(family, args, kwargs):
            return func(*args, **kwargs)
        compiled = self.rules.get(family)
        if compiled is None:
            self._uncovered(func, family)
        behaviour = compiled.kind.functions.get(family)
        if behaviour is None:
            raise UncoveredOpError(
                f"the composite's rule for the '{family}' family, {compiled.rule!r}, does not "
                f"apply to functions of that family ({function_name(func)}, called on "
                f"relevance-carrying tensors in {self.where()}). Give the family a rule that "
                f"does: get_composite(..., layer_map={{Op('{family}'): rule}}).")
        return behaviour(compiled, func, args, kwargs)

    def _uncovered(self, func, family: Optional[str] = None) -> None:
        name = function_name(func)
        what = f"the '{family}' family ({name})" if family else f"'{name}'"
        raise UncoveredOpError(
            f"no LRP rule covers {what}, called on relevance-carrying tensors in "
            f"{self.where()}. Add a rule for it to the composite (for a family: "
            f"get_composite(..., layer_map={{Op('{family or 'family'}'): rule}})), or wrap the "
            "computation in an nn.Module and give that module a rule.")

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
            return self._family_call("linear", F.linear, (x, w.t(), bias), {})
        return self._family_call("linear", F.linear, (x, w.t(), None), {}) + bias

    # -- attention ----------------------------------------------------------------------------
    def _attention_shares(self) -> tuple[float, float]:
        """Gradient shares of ``(q and k, v)`` under the softmax and product rules:
        ``A V`` gives ``A`` and ``V`` their share (all of it to ``V`` when the softmax makes
        ``A`` a constant), the softmax passes ``A``'s on, and ``q kᵀ`` splits it between
        ``q`` and ``k``."""
        product, softmax = self.rules.get("matmul"), self.rules.get("softmax")
        if not (_shares(product, "matmul") and _shares(softmax, "softmax")):
            self._uncovered(F.scaled_dot_product_attention, "attention")
        through_softmax = softmax.kind.share(1)
        if through_softmax == 0:
            return 0.0, product.kind.share(1)
        share = product.kind.share(2)
        return share * through_softmax * share, share

    def _attention(self, func, args, kwargs):
        if func is F.multi_head_attention_forward:
            return self._multi_head_attention(*args, **kwargs)
        return self._sdpa(*args, **kwargs)

    def _sdpa(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
              scale=None, **kwargs):
        qk, v = self._attention_shares()
        return F.scaled_dot_product_attention(
            _scaled_use(query, qk), _scaled_use(key, qk), _scaled_use(value, v),
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
        q, k, v = (self._family_call("linear", F.linear, (t, w, b), {})
                   for t, w, b in zip((query, key, value), weights, biases))
        head = embed // num_heads

        def heads(t):  # (S, N, E) -> (N, H, S, D)
            return t.reshape(t.shape[0], batch, num_heads, head).permute(1, 2, 0, 3)

        q, k, v = heads(q), heads(k), heads(v)
        mask = _merge_masks(attn_mask, key_padding_mask, batch, num_heads, length, k.shape[2],
                            q.dtype)
        if need_weights:
            qk, share_v = self._attention_shares()
            scores = _scaled_use(q, qk) @ _scaled_use(k, qk).transpose(-2, -1) \
                / math.sqrt(head)
            if mask is not None:
                scores = scores + mask
            weights_ = torch.softmax(scores, dim=-1)
            out = weights_ @ _scaled_use(v, share_v)
        else:
            out = self._sdpa(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None)
            weights_ = None
        out = out.permute(2, 0, 1, 3).reshape(length, batch, embed)
        out = self._family_call("linear", F.linear, (out, out_proj_weight, out_proj_bias), {})
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


def _shares(compiled, family: str) -> bool:
    """The rule covers ``family`` and says how a product's gradient is shared."""
    return compiled is not None and family in compiled.kind.functions and \
        compiled.kind.share is not None
