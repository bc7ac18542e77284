"""Token relevance ``(N, L)`` of a text classifier by method name.

Every method answers the same question -- how much each token of a batch of equal-length token
ids ``(N, L)`` contributes to the target class -- so that explanations, the ground-truth
scores and the token-deletion benchmark can swap methods freely:

* ``"lrp"``: :class:`lrp_captum.LayerLRP` at the embedding layer (word-CNN and other models
  whose every layer has a rule), or :func:`~lrp_captum.text.transformer.transformer_lrp` for a
  Hugging Face transformer (the AttnLRP / CP-LRP composites);
* ``"input_x_gradient"``: Captum's gradient x activation at the embedding layer;
* ``"integrated_gradients"``: Captum's layer integrated gradients at the embedding layer, from
  the all-padding input (every position the ``[PAD]`` embedding);
* ``"attention_rollout"`` (Abnar & Zuidema 2020) and ``"raw_attention"`` (last layer, mean over
  heads) for transformers: the ``[CLS]`` row, i.e. how much the classifier's token attends to
  each token; attention is never negative and does not depend on the target class;
* ``"random"``: uniform random scores, the floor of any faithfulness benchmark.

Embedding-level relevance ``(N, L, E)`` is summed over the embedding dimensions.
"""
from __future__ import annotations

import torch
from torch import nn

from lrp_captum.evaluation.attention_maps import attention_maps
from lrp_captum.evaluation.attention_rollout import attention_rollout, raw_attention
from lrp_captum.text.transformer import (DEFAULT_TRANSFORMER_COMPOSITE, LogitsFromIds,
                                         is_hugging_face_model, transformer_lrp)

METHODS = ("lrp", "input_x_gradient", "integrated_gradients", "attention_rollout",
           "raw_attention", "random")
#: methods that read attention probabilities (transformers only)
ATTENTION_METHODS = ("attention_rollout", "raw_attention")


def find_embedding_layer(model: nn.Module) -> nn.Module:
    """The model's token embedding: ``get_input_embeddings()``, ``model.embedding``, or its only
    ``nn.Embedding``.

    Raises
    ------
    ValueError
        If there is none or several (pass ``layer=`` to :func:`explain_text`).
    """
    if callable(getattr(model, "get_input_embeddings", None)):
        return model.get_input_embeddings()
    if isinstance(getattr(model, "embedding", None), nn.Embedding):
        return model.embedding
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    if len(found) == 1:
        return found[0][1]
    names = ", ".join(n for n, _ in found) or "none"
    raise ValueError(f"{type(model).__name__}: cannot tell which layer embeds the tokens "
                     f"(nn.Embedding layers: {names}); pass layer=model.<embedding>")


def ids_to_logits(model: nn.Module):
    """``model`` as a function ``token ids (N, L) -> logits (N, C)`` without gradients
    (a Hugging Face classifier's output object is unpacked)."""
    forward = LogitsFromIds(model) if is_hugging_face_model(model) else model

    @torch.no_grad()
    def logits(ids: torch.Tensor) -> torch.Tensor:
        return forward(ids)
    return logits


def has_attention(model: nn.Module) -> bool:
    """True if a module of the model is an attention layer (by class name: ``*Attention*``)."""
    return any("attention" in type(m).__name__.lower() for m in model.modules())


def default_composite(model: nn.Module) -> str:
    """``"attnlrp"`` for a transformer, ``"epsilon"`` otherwise (Arras et al. 2017)."""
    return DEFAULT_TRANSFORMER_COMPOSITE if has_attention(model) else "epsilon"


class TokenAttributor:
    """Logits and token relevance of one model with one method.

    Parameters
    ----------
    model : nn.Module
        ``model(ids (N, L)) -> logits (N, C)`` with an embedding layer, or a Hugging Face
        sequence classifier. In evaluation mode (the caller holds
        :func:`lrp_captum.core.model_mode.evaluation_mode`).
    method : str
        One of :data:`METHODS`.
    composite : str or lrp_captum.Composite, optional
        LRP rules (``method="lrp"``); default :func:`default_composite`.
    layer : nn.Module, optional
        The token embedding, if it cannot be found automatically.
    canonizers : "default", "auto" or None
        Passed to the LRP engine.
    output_mode : str
        Relevance to start from (LRP), see :meth:`lrp_captum.LRP.attribute`.
    ig_steps : int
        Integration steps of integrated gradients.
    pad_id : int
        Token of the integrated-gradients baseline.
    seed : int
        Seed of ``method="random"``.
    """

    def __init__(self, model: nn.Module, method: str = "lrp", composite=None,
                 layer: nn.Module | None = None, canonizers="default", output_mode: str = "logit",
                 ig_steps: int = 32, pad_id: int = 0, seed: int = 0) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        self.model, self.method, self.output_mode = model, method, output_mode
        self.ig_steps, self.pad_id, self.canonizers = int(ig_steps), int(pad_id), canonizers
        self.transformer = is_hugging_face_model(model)
        if method in ATTENTION_METHODS and not self.transformer:
            raise ValueError(f"method {method!r} needs a transformer with attention "
                             f"probabilities; {type(model).__name__} is not one")
        self.composite = composite if composite is not None else default_composite(model)
        self.layer = layer if layer is not None else find_embedding_layer(model)
        # the model as ids -> logits tensor (Hugging Face models return an output object)
        self.forward_ids = LogitsFromIds(model) if self.transformer else model
        self.logits = ids_to_logits(model)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, ids: torch.Tensor, targets) -> torch.Tensor:
        """Token relevance ``(N, L)`` (float32) for class ``targets[i]`` of text ``i``."""
        return self.attribute(ids, targets)[0]

    def attribute(self, ids: torch.Tensor, targets) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token relevance ``(N, L)`` (float32) and, for LRP, the relevance ``(N,)`` of what is
        added to the token embeddings (a transformer's position and token-type embeddings; 0 for
        models without them); ``None`` for the other methods, which split no output."""
        target = torch.as_tensor(targets, device=ids.device)
        if self.method == "random":
            return torch.rand(ids.shape, generator=self.generator).to(ids.device), None
        if self.method in ATTENTION_METHODS:
            maps = attention_maps(self.model, input_ids=ids)
            scores = attention_rollout(maps) if self.method == "attention_rollout" else \
                raw_attention(maps)
            return scores[:, 0, :].float(), None  # what [CLS], the token the head reads, takes in
        rel, added = self._embedding_relevance(ids, target)
        if isinstance(rel, (list, tuple)):
            rel = rel[0]
        if rel.dim() != 3 or rel.shape[:2] != ids.shape:
            raise ValueError(f"relevance at the embedding layer has shape {tuple(rel.shape)}; "
                             f"expected (N, L, E) with (N, L) = {tuple(ids.shape)}. Pass "
                             "layer= the module that maps token ids to vectors")
        if added is None and self.method == "lrp":
            added = torch.zeros(len(ids))
        elif added is not None:
            added = added.detach().double().flatten(1).sum(1).cpu()
        return rel.detach().float().sum(dim=2), added

    def _embedding_relevance(self, ids: torch.Tensor, target: torch.Tensor):
        """Relevance ``(N, L, E)`` at the token embeddings, and that of the embeddings added to
        them (LRP on a transformer) or ``None``."""
        if self.method == "lrp":
            return self._lrp(ids, target)
        if self.method == "input_x_gradient":
            from captum.attr import LayerGradientXActivation

            return LayerGradientXActivation(self.forward_ids, self.layer).attribute(
                ids, target=target), None
        from captum.attr import LayerIntegratedGradients

        return LayerIntegratedGradients(self.forward_ids, self.layer).attribute(
            ids, baselines=torch.full_like(ids, self.pad_id), target=target,
            n_steps=self.ig_steps, internal_batch_size=max(1, len(ids)) * 8), None

    def _lrp(self, ids: torch.Tensor, target: torch.Tensor):
        from lrp_captum import CanonizationError, LayerLRP
        from lrp_captum.core.composites import get_composite, leaf_layers

        try:
            if self.transformer and self.layer is self.model.get_input_embeddings():
                return transformer_lrp(self.model, ids, target, self.composite,
                                       self.output_mode, self.canonizers, parts=True)
            engine = LayerLRP(self.forward_ids, layer=self.layer, composite=self.composite,
                              canonizers=self.canonizers)
            return engine.attribute(ids, target=target, output_mode=self.output_mode), None
        except CanonizationError as exc:
            if "could not trace" not in str(exc):
                raise
            # fx gave up before it could name an op: name the layers no rule covers instead
            try:
                get_composite(self.composite).resolve_layers(leaf_layers(self.model))
            except TypeError as no_rule:
                raise CanonizationError(
                    f"{type(self.model).__name__} cannot be explained with LRP: {no_rule} "
                    f"(Also: {exc})") from exc
            raise
