"""Attention probabilities recorded during a forward pass, from any PyTorch transformer.

Transformers compute their attention probabilities in a few functions, whichever library
wrote them: an explicit ``softmax`` of the scores (Hugging Face "eager" attention, timm without
fused attention, attention written by hand), ``F.scaled_dot_product_attention`` (timm, Hugging
Face "sdpa", whose fused kernel never materialises the probabilities) and
``F.multi_head_attention_forward`` (``nn.MultiheadAttention``, torchvision's ViT).
:func:`record_attention` watches those calls with a ``TorchFunctionMode`` and keeps, for each
attention call, the probabilities ``softmax(q kᵀ · scale + mask)`` as an ``(N, H, L, S)``
tensor: batch, heads, queries, keys. The model is not modified and needs no hooks; fused
``scaled_dot_product_attention`` calls run as called, their probabilities computed beside them
from the same ``q`` and ``k``, and ``nn.MultiheadAttention`` runs the path that returns
per-head weights (the same output up to rounding).

What counts as attention: every ``F.scaled_dot_product_attention`` and
``F.multi_head_attention_forward`` call, and every softmax over the last axis of a 3-d or 4-d
tensor (a 3-d one is one head, ``(N, L, S)``). A model that also takes a softmax over the last
axis of 3-d or 4-d tensors for another purpose (a per-token classifier, say) has those recorded
too; :attr:`AttentionRecord.sources` says which function produced each map.

>>> with record_attention() as record:                      # doctest: +SKIP
...     logits = vit(images)
>>> [a.shape for a in record.maps]                          # doctest: +SKIP
[torch.Size([8, 6, 197, 197]), ...]                          # one per layer, in call order
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = ["AttentionRecord", "record_attention", "attention_maps", "computes_attention",
           "sdpa_probabilities"]

_SOFTMAX = {F.softmax, torch.softmax, Tensor.softmax}


def sdpa_probabilities(query: Tensor, key: Tensor, attn_mask: Tensor | None = None,
                       is_causal: bool = False, scale: float | None = None,
                       enable_gqa: bool = False) -> Tensor:
    """The attention probabilities ``F.scaled_dot_product_attention`` uses internally.

    Parameters
    ----------
    query : Tensor
        ``(..., H, L, D)``.
    key : Tensor
        ``(..., H_kv, S, D)``; with ``enable_gqa`` each key head serves ``H / H_kv`` query heads.
    attn_mask : Tensor, optional
        Boolean (True = may attend) or additive float mask, broadcastable to ``(..., H, L, S)``.
    is_causal : bool
        Query ``i`` attends to keys ``j <= i`` only.
    scale : float, optional
        Default ``1 / sqrt(D)``, as in PyTorch.

    Returns
    -------
    Tensor
        ``(..., H, L, S)``, rows summing to 1 (rows whose keys are all masked are NaN, as
        PyTorch's math kernel gives them).
    """
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], dim=-3)
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * scale
    length, source = query.shape[-2], key.shape[-2]
    if is_causal:
        allowed = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
        scores = scores.masked_fill(~allowed, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool \
            else scores + attn_mask
    return torch.softmax(scores, dim=-1)


_MHA_ARGUMENTS = ("query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight",
                  "in_proj_bias", "bias_k", "bias_v", "add_zero_attn", "dropout_p",
                  "out_proj_weight", "out_proj_bias", "training", "key_padding_mask",
                  "need_weights", "attn_mask", "use_separate_proj_weight", "q_proj_weight",
                  "k_proj_weight", "v_proj_weight", "static_k", "static_v",
                  "average_attn_weights", "is_causal")


class AttentionRecord(TorchFunctionMode):
    """The attention probabilities of the forward passes run while it is active.

    Use it through :func:`record_attention`.

    Attributes
    ----------
    maps : list of Tensor
        One detached ``(N, H, L, S)`` tensor per attention call (batch, heads, queries, keys),
        in call order: for a ViT, one per encoder layer, first layer first.
    sources : list of str
        The function each map came from: ``"softmax"``, ``"scaled_dot_product_attention"``
        or ``"multi_head_attention_forward"``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.maps: list[Tensor] = []
        self.sources: list[str] = []

    def _keep(self, probabilities: Tensor, source: str) -> None:
        if probabilities.dim() == 3:  # one head
            probabilities = probabilities.unsqueeze(1)
        self.maps.append(probabilities.detach())
        self.sources.append(source)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SOFTMAX:
            out = func(*args, **kwargs)
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            if torch.is_tensor(out) and out.dim() in (3, 4) and dim is not None and \
                    dim in (-1, out.dim() - 1):
                self._keep(out, "softmax")
            return out
        if func is F.scaled_dot_product_attention:
            return self._sdpa(*args, **kwargs)
        if func is F.multi_head_attention_forward:
            return self._multi_head_attention(args, kwargs)
        return func(*args, **kwargs)

    def _sdpa(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
              scale=None, enable_gqa=False):
        with torch.no_grad():
            self._keep(sdpa_probabilities(query, key, attn_mask, is_causal, scale, enable_gqa),
                       "scaled_dot_product_attention")
        extra = {"enable_gqa": True} if enable_gqa else {}
        return F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask,
                                              dropout_p=dropout_p, is_causal=is_causal,
                                              scale=scale, **extra)

    def _multi_head_attention(self, args, kwargs):
        bound = dict(zip(_MHA_ARGUMENTS, args), **kwargs)
        need, average = bound.get("need_weights", True), bound.get("average_attn_weights", True)
        # per-head weights are asked for; the module's own choice decides what it gets back
        bound.update(need_weights=True, average_attn_weights=False)
        out, weights = F.multi_head_attention_forward(**bound)
        self._keep(weights, "multi_head_attention_forward")
        if not need:
            return out, None
        return out, weights.mean(1) if average and weights.dim() == 4 else weights


def record_attention() -> AttentionRecord:
    """A context manager recording the attention probabilities of every forward pass in it.

    Returns
    -------
    AttentionRecord
        Entered with ``with record_attention() as record: model(x)``; afterwards
        ``record.maps`` holds one ``(N, H, L, S)`` tensor per attention call.
    """
    return AttentionRecord()


def attention_maps(model: nn.Module, *inputs: Any, **kwargs: Any) -> list[Tensor]:
    """The attention probabilities of one forward pass of ``model``, without gradient.

    Parameters
    ----------
    model : nn.Module
        Any transformer (timm, torchvision, Hugging Face, hand-written); used as it is (call
        ``model.eval()`` first for deterministic maps).
    *inputs, **kwargs
        Passed to ``model``.

    Returns
    -------
    list of Tensor
        One ``(N, H, L, S)`` tensor per attention call, in call order.

    Raises
    ------
    ValueError
        The forward pass computed no attention.
    """
    with torch.no_grad(), record_attention() as record:
        model(*inputs, **kwargs)
    if not record.maps:
        raise ValueError(f"{type(model).__name__} computed no attention (no softmax over the last "
                         "axis of a 3-d/4-d tensor, no scaled_dot_product_attention, no "
                         "nn.MultiheadAttention) in its forward pass")
    return record.maps


def computes_attention(model: nn.Module, example: Tensor) -> bool:
    """Whether ``model``'s forward pass on ``example`` computes attention (see module docstring).

    The model's training flag is left as it was.
    """
    with torch.no_grad(), record_attention() as record:
        model(example)
    return bool(record.maps)
