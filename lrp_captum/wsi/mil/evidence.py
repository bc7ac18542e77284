"""Signed evidence of every tile of a bag for a slide logit: xMIL-LRP and its baselines.

An evidence method is any callable ``method(head, bag, target, **options) -> TileEvidence``
with ``head`` a MIL head ((B, N, D) -> (B, C) logits, in evaluation mode), ``bag`` the (N, D)
embeddings of one slide and ``target`` a class index. :data:`METHODS` names the built-in ones:

==================== =========================================================================
``xmil_lrp``         xMIL-LRP (Hense et al. 2024): LRP of the target logit through the head
                     with the core engine's ``xmil`` composite (attention weights held
                     constant in the pooling, ε = 1e-8 on the linear layers with their biases
                     out of the denominators, so the logit, bias included, is shared among
                     the tiles; transformer rules for a transformer head); signed, per
                     embedding dimension.
``xmil_lrp_bias_kept``  xMIL-LRP with the biases in the denominators (``xmil_bias_kept``):
                     the biases keep their share, the evidence sums to less than the logit.
``attention``        the attention weights over the tiles (mean over heads); unsigned.
``attention_norm``   attention × norm of the pooled vector (Kobayashi et al. 2020); unsigned.
``gradient``         gradient × embedding, summed over the embedding; signed, per dimension.
``integrated_gradients``  Captum IntegratedGradients from the all-zero bag; signed, per dimension.
``single``           "Single": the target logit of the bag made of that tile alone (one
                     forward per tile, batched).
``leave_one_out``    the drop of the target logit when that tile alone is removed.
==================== =========================================================================

Methods with per-dimension relevance (``per_dimension`` is not None) can be continued into the
tile encoder for pixel maps (:mod:`lrp_captum.wsi.mil.pixel_maps`).
"""
from __future__ import annotations

from collections import OrderedDict

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
from torch import Tensor, nn

from lrp_captum.core.model_mode import evaluation_mode

XMIL_COMPOSITE = "xmil"
XMIL_BIAS_KEPT_COMPOSITE = "xmil_bias_kept"


class MethodUnavailableError(ValueError):
    """An evidence method cannot run here (e.g. its LRP composite is not registered)."""


@dataclass
class TileEvidence:
    """Evidence of each tile of one bag for one slide logit.

    Attributes
    ----------
    scores : (N,) float, the evidence per tile (positive = for the target class).
    per_dimension : (N, D) relevance per embedding dimension summing to ``scores``, or None
        for methods that give one number per tile.
    """

    scores: Tensor
    per_dimension: Optional[Tensor] = None


def _logit(head: nn.Module, bags: Tensor, target: int) -> Tensor:
    return head(bags)[:, target]


def xmil_lrp(head: nn.Module, bag: Tensor, target: int, *, composite: str = XMIL_COMPOSITE,
             **lrp_kwargs) -> TileEvidence:
    """xMIL-LRP: ``LRP(head, composite=composite)`` of the target logit, summed per tile.

    ``composite`` names a registered composite of the core engine (default ``"xmil"``).
    Raises :class:`MethodUnavailableError` when it is not registered.
    """
    _require_composite(composite)
    rel = _explainer(head, composite, tuple(sorted(lrp_kwargs.items()))).attribute(
        bag.unsqueeze(0), target=target)[0]
    return TileEvidence(rel.sum(-1), rel)


def xmil_lrp_bias_kept(head: nn.Module, bag: Tensor, target: int, **lrp_kwargs) -> TileEvidence:
    """xMIL-LRP with the biases in the denominators (the authors' ``no_bias=False``)."""
    return xmil_lrp(head, bag, target, composite=XMIL_BIAS_KEPT_COMPOSITE, **lrp_kwargs)


#: the LRP objects of the last few (head, composite, options): a plan (rules, trace) is made
#: once per head, so a second bag or target costs only the attribution itself. Bounded, since
#: an LRP object keeps its head alive.
_EXPLAINERS: "OrderedDict[tuple, object]" = OrderedDict()
_MAX_EXPLAINERS = 8


def _explainer(head: nn.Module, composite: str, options: tuple):
    from lrp_captum import LRP

    key = (id(head), composite, options)
    lrp = _EXPLAINERS.pop(key, None)
    if lrp is None or lrp.model is not head:
        lrp = LRP(head, composite=composite, **dict(options))
    _EXPLAINERS[key] = lrp
    while len(_EXPLAINERS) > _MAX_EXPLAINERS:
        _EXPLAINERS.popitem(last=False)
    return lrp


def _require_composite(composite: str) -> None:
    from lrp_captum import list_composites

    if composite not in list_composites():
        raise MethodUnavailableError(
            f"xMIL-LRP needs the LRP composite {composite!r} (attention weights held constant in the pooling, "
            f"ε on the linear layers), which is not registered (registered: "
            f"{sorted(list_composites())}); choose another evidence method, e.g. gradient or integrated_gradients")


def _require_attention(head: nn.Module, method: str) -> None:
    if not callable(getattr(head, "attention_and_values", None)):
        raise MethodUnavailableError(
            f"{method} reads the head's attention weights over the tiles through attention_and_values(bag), which "
            f"{type(head).__name__} does not have; choose xmil_lrp, gradient or integrated_gradients, which work on "
            f"any head")


def attention(head: nn.Module, bag: Tensor, target: int) -> TileEvidence:
    """The head's attention weights over the tiles, averaged over attention heads (same for every target)."""
    _require_attention(head, "attention")
    with torch.no_grad(), evaluation_mode(head):
        weights, _ = head.attention_and_values(bag.unsqueeze(0))
    return TileEvidence(weights[0].mean(0))


def attention_norm(head: nn.Module, bag: Tensor, target: int) -> TileEvidence:
    """Attention × the norm of the vector each weight multiplies, averaged over attention heads."""
    _require_attention(head, "attention_norm")
    with torch.no_grad(), evaluation_mode(head):
        weights, values = head.attention_and_values(bag.unsqueeze(0))
    return TileEvidence((weights * values.norm(dim=-1))[0].mean(0))


def gradient(head: nn.Module, bag: Tensor, target: int) -> TileEvidence:
    """Gradient × embedding of the target logit."""
    x = bag.detach().unsqueeze(0).requires_grad_(True)
    with torch.enable_grad(), evaluation_mode(head):
        (g,) = torch.autograd.grad(_logit(head, x, target).sum(), x)
    rel = (g * x).detach()[0]
    return TileEvidence(rel.sum(-1), rel)


def integrated_gradients(head: nn.Module, bag: Tensor, target: int, *, n_steps: int = 32,
                         internal_batch_size: Optional[int] = None) -> TileEvidence:
    """Captum ``IntegratedGradients`` on the embeddings from the all-zero bag (Riemann trapezoid).

    ``internal_batch_size`` bags go through the head at once (default: as many as keep about
    2**24 numbers -- embeddings or, for attention over the tiles, attention weights -- in one batch).
    """
    from captum.attr import IntegratedGradients

    n, d = bag.shape
    ibs = internal_batch_size or max(1, min(n_steps, 2**24 // (n * max(d, n))))
    with evaluation_mode(head):
        rel = IntegratedGradients(head).attribute(bag.unsqueeze(0), baselines=0.0, target=target, n_steps=n_steps,
                                                  method="riemann_trapezoid", internal_batch_size=ibs)
    rel = rel.detach()[0]
    return TileEvidence(rel.sum(-1), rel)


def single(head: nn.Module, bag: Tensor, target: int, *, batch_size: int = 4096) -> TileEvidence:
    """"Single": the target logit of each tile as a bag of its own."""
    out = []
    with torch.no_grad(), evaluation_mode(head):
        for s in range(0, len(bag), batch_size):
            out.append(_logit(head, bag[s:s + batch_size].unsqueeze(1), target))
    return TileEvidence(torch.cat(out))


def leave_one_out(head: nn.Module, bag: Tensor, target: int, *, max_numbers: int = 2**24) -> TileEvidence:
    """The drop of the target logit when each tile alone is removed: ``f(bag) - f(bag without i)``."""
    n, d = bag.shape
    if n < 2:
        raise ValueError("leave_one_out needs a bag of at least 2 tiles")
    others = torch.arange(n).repeat(n, 1)
    others = others[~torch.eye(n, dtype=torch.bool)].view(n, n - 1)  # row i: every tile but i
    chunk = max(1, max_numbers // ((n - 1) * max(d, n - 1)))  # embeddings, or attention over the tiles
    with torch.no_grad(), evaluation_mode(head):
        full = _logit(head, bag.unsqueeze(0), target)
        dropped = torch.cat([_logit(head, bag[others[s:s + chunk]], target) for s in range(0, n, chunk)])
    return TileEvidence(full - dropped)


METHODS: dict[str, Callable[..., TileEvidence]] = {
    "xmil_lrp": xmil_lrp, "xmil_lrp_bias_kept": xmil_lrp_bias_kept, "attention": attention, "attention_norm": attention_norm, "gradient": gradient,
    "integrated_gradients": integrated_gradients, "single": single, "leave_one_out": leave_one_out,
}


def check_method(method: Union[str, Callable[..., TileEvidence]], **options) -> None:
    """Raise before any work if ``method`` is an unknown name or cannot run here."""
    if callable(method):
        return
    if method not in METHODS:
        raise ValueError(f"unknown evidence method {method!r}; choose from {sorted(METHODS)}")
    if method == "xmil_lrp":
        _require_composite(options.get("composite", XMIL_COMPOSITE))
    if method == "xmil_lrp_bias_kept":
        _require_composite(XMIL_BIAS_KEPT_COMPOSITE)


def tile_evidence(method: Union[str, Callable[..., TileEvidence]], head: nn.Module, bag: Tensor, target: int,
                  **options) -> TileEvidence:
    """Run an evidence method given by name (:data:`METHODS`) or as a callable; checks the bag.

    Parameters
    ----------
    method : a name of :data:`METHODS` or ``callable(head, bag, target, **options)``.
    head : the MIL head, (B, N, D) -> (B, C).
    bag : (N, D) tile embeddings, N >= 1.
    target : class index of the explained logit.
    """
    if bag.dim() != 2:
        raise ValueError(f"a bag is (N, D) tile embeddings, got shape {tuple(bag.shape)}")
    if len(bag) == 0:
        raise ValueError("the bag is empty (no tissue tiles): there is nothing to explain")
    check_method(method)
    if isinstance(method, str):
        method = METHODS[method]
    ev = method(head, bag, target, **options)
    if ev.scores.shape != (len(bag),):
        raise ValueError(f"evidence method {getattr(method, '__name__', method)!r} returned scores of shape "
                         f"{tuple(ev.scores.shape)}, expected ({len(bag)},)")
    return TileEvidence(ev.scores.detach().cpu(),
                        None if ev.per_dimension is None else ev.per_dimension.detach().cpu())
