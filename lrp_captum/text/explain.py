"""Word-level relevance for text classifiers (Arras et al. 2017, seed 003).

Relevance is computed at the output of the embedding layer with
:class:`lrp_captum.LayerLRP`, summed over the embedding dimensions to one number per
token, and WordPiece sub-tokens are summed back into the words of the original text.
Special tokens (``[CLS]``, ``[SEP]``, padding to the widest filter) are reported apart.

Works for

* :class:`~lrp_captum.text.models.WordCNN` and any PyTorch classifier ``model(ids) -> (N, C)``
  with an ``nn.Embedding`` (found automatically if there is exactly one, else pass ``layer``);
* Hugging Face style models: ``get_input_embeddings()`` and ``forward(inputs_embeds=...)``
  returning an object with ``.logits``; relevance is computed for the embeddings fed in.
  A model with an op no LRP rule covers (LayerNorm, attention's softmax/matmul, ...) raises
  the core's error naming it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from .encoding import EncodedText, encode_texts, length_batches, pad_batch

METHODS = ("lrp", "input_x_gradient", "integrated_gradients")


@dataclass
class TextExplanation:
    """Relevance of the words of one text for one class.

    Attributes
    ----------
    text : str
        The input, unchanged.
    words, word_spans, word_relevance : list
        Words (as in ``text``), their character ``[start, end)`` and relevance: the sum of the
        relevance of their WordPiece tokens over all embedding dimensions.
    tokens, token_relevance, token_word : list
        Every token fed to the model (special tokens and padding to the model's
        ``min_length`` included), its relevance, and its word index (``None`` for special
        tokens). ``sum(word_relevance) == sum(r for r, w in zip(token_relevance, token_word)
        if w is not None)``.
    special_tokens : list of dict
        ``{"token", "position", "relevance"}`` of the tokens that belong to no word.
    target, target_name : int, str
        The explained class.
    predicted, predicted_name : int, str
        The arg-max class.
    probabilities : list of float
        Softmax of the logits, one per class.
    class_names : list of str
        Name of each class, in the order of ``probabilities`` (from ``class_names=``,
        ``model.class_names`` or the model config's ``id2label``).
    output_relevance : float
        The relevance propagated from the output (the target logit for ``output_mode="logit"``).
    relevance_sum : float
        Sum of all token relevance; equals ``output_relevance`` up to what biases and
        stabilisers absorb.
    method, composite : str
        ``"lrp"`` with its composite, or a Captum baseline method.
    truncated, n_tokens_total, n_words_dropped, unknown_words, warnings
        See :class:`~lrp_captum.text.encoding.EncodedText`.
    """
    text: str
    words: list[str]
    word_spans: list[tuple[int, int]]
    word_relevance: list[float]
    tokens: list[str]
    token_relevance: list[float]
    token_word: list[int | None]
    special_tokens: list[dict]
    target: int
    target_name: str
    predicted: int
    predicted_name: str
    probabilities: list[float]
    output_relevance: float
    relevance_sum: float
    method: str = "lrp"
    composite: str | None = "epsilon"
    truncated: bool = False
    n_tokens_total: int = 0
    n_words_dropped: int = 0
    unknown_words: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-serialisable dictionary of every field."""
        d = asdict(self)
        d["word_spans"] = [list(s) for s in self.word_spans]
        return d

    def top_words(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` words with the largest relevance, largest first."""
        order = sorted(range(len(self.words)), key=lambda i: -self.word_relevance[i])
        return [(self.words[i], self.word_relevance[i]) for i in order[:k]]


def merge_token_relevance(token_relevance: Sequence[float], token_word: Sequence[int | None],
                          n_words: int) -> list[float]:
    """Sum token relevance into words; tokens of no word (``None``) are left out."""
    words = [0.0] * n_words
    for r, w in zip(token_relevance, token_word):
        if w is not None:
            words[w] += float(r)
    return words


# --------------------------------------------------------------------------------------------
# model adapters: token ids -> logits, and where the embeddings are
# --------------------------------------------------------------------------------------------
class _InputsEmbedsClassifier(nn.Module):
    """``embeddings (N, L, E) -> logits (N, C)`` for a Hugging Face style model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        out = self.model(inputs_embeds=inputs_embeds)
        return out.logits if hasattr(out, "logits") else out[0]


def _is_hf_style(model: nn.Module) -> bool:
    return callable(getattr(model, "get_input_embeddings", None))


def find_embedding_layer(model: nn.Module) -> nn.Module:
    """The model's token embedding: ``get_input_embeddings()``, ``model.embedding``, or its only
    ``nn.Embedding``.

    Raises
    ------
    ValueError
        If there is none or several (pass ``layer=`` to :func:`explain_text`).
    """
    if _is_hf_style(model):
        return model.get_input_embeddings()
    if isinstance(getattr(model, "embedding", None), nn.Embedding):
        return model.embedding
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Embedding)]
    if len(found) == 1:
        return found[0][1]
    names = ", ".join(n for n, _ in found) or "none"
    raise ValueError(f"{type(model).__name__}: cannot tell which layer embeds the tokens "
                     f"(nn.Embedding layers: {names}); pass layer=model.<embedding>")


def _class_names(model: nn.Module, n_classes: int, class_names) -> list[str]:
    if class_names is None:
        class_names = getattr(model, "class_names", None)
    if class_names is None:
        id2label = getattr(getattr(model, "config", None), "id2label", None)
        if id2label:
            class_names = [id2label.get(i, str(i)) for i in range(n_classes)]
    if class_names is None:
        class_names = [str(i) for i in range(n_classes)]
    class_names = [str(c) for c in class_names]
    if len(class_names) != n_classes:
        raise ValueError(f"{len(class_names)} class names for a model with {n_classes} outputs")
    return class_names


def _resolve_targets(target, n: int, class_names: list[str]) -> list[int | None]:
    """One class index (or None = predicted) per text."""
    def one(t):
        if t is None:
            return None
        if isinstance(t, str):
            if t in class_names:
                return class_names.index(t)
            if t.lstrip("-").isdigit():
                t = int(t)
            else:
                raise ValueError(f"unknown target class {t!r}; classes: {', '.join(class_names)}")
        t = int(t)
        if not 0 <= t < len(class_names):
            raise ValueError(f"target {t} out of range for {len(class_names)} classes "
                             f"({', '.join(class_names)})")
        return t
    if torch.is_tensor(target):
        target = target.tolist()
    if isinstance(target, (list, tuple)):
        if len(target) != n:
            raise ValueError(f"{len(target)} targets for {n} texts")
        return [one(t) for t in target]
    return [one(target)] * n


def _pad_id(model, tokenizer) -> int:
    pid = getattr(model, "pad_id", None)
    if pid is None:
        pid = getattr(getattr(model, "config", None), "pad_token_id", None)
    if pid is None:
        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        padding = getattr(backend, "padding", None) or {}
        pid = padding.get("pad_id")
        if pid is None:
            pid = backend.token_to_id("[PAD]")
    return int(pid or 0)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# --------------------------------------------------------------------------------------------
# attribution
# --------------------------------------------------------------------------------------------
class _Attributor:
    """Token relevance ``(N, L)`` for a batch of equal-length token ids ``(N, L)``."""

    def __init__(self, model, layer, method, composite, canonizers, output_mode, ig_steps,
                 pad_id):
        self.model, self.method, self.pad_id, self.ig_steps = model, method, pad_id, ig_steps
        self.output_mode = output_mode
        self.hf = _is_hf_style(model) and layer is None
        self.layer = layer if layer is not None else find_embedding_layer(model)
        if method == "lrp":
            from lrp_captum import LRP, LayerLRP
            if self.hf:
                self.engine = LRP(_InputsEmbedsClassifier(model).eval(), composite=composite,
                                  canonizers=canonizers)
            else:
                self.engine = LayerLRP(model, layer=self.layer, composite=composite,
                                       canonizers=canonizers)
        elif method == "input_x_gradient":
            from captum.attr import InputXGradient, LayerGradientXActivation
            self.engine = (InputXGradient(_InputsEmbedsClassifier(model).eval()) if self.hf
                           else LayerGradientXActivation(model, self.layer))
        elif method == "integrated_gradients":
            from captum.attr import IntegratedGradients, LayerIntegratedGradients
            self.engine = (IntegratedGradients(_InputsEmbedsClassifier(model).eval()) if self.hf
                           else LayerIntegratedGradients(model, self.layer))
        else:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")

    def _lrp(self, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from lrp_captum import CanonizationError
        from lrp_captum.composites import get_composite, leaf_layers

        try:
            return self.engine.attribute(inputs, target=target, output_mode=self.output_mode)
        except CanonizationError as exc:
            if "could not trace" not in str(exc):
                raise
            # fx gave up before it could name an op: name the layers no rule covers instead
            model = self.engine.model
            try:
                get_composite(self.engine.composite or "epsilon").resolve_layers(
                    leaf_layers(model))
            except TypeError as no_rule:
                raise CanonizationError(
                    f"{type(self.model).__name__} cannot be explained with LRP: {no_rule} "
                    f"(Also: {exc})") from exc
            raise

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.hf:
                out = self.model(inputs_embeds=self.layer(ids))
                return out.logits if hasattr(out, "logits") else out[0]
            return self.model(ids)

    def __call__(self, ids: torch.Tensor, targets: list[int]) -> torch.Tensor:
        target = torch.tensor(targets, device=ids.device)
        inputs = self.layer(ids).detach() if self.hf else ids
        if self.method == "lrp":
            rel = self._lrp(inputs, target)
        elif self.method == "input_x_gradient":
            rel = self.engine.attribute(inputs, target=target)
        else:
            baseline = (torch.zeros_like(inputs) if self.hf
                        else torch.full_like(ids, self.pad_id))
            rel = self.engine.attribute(inputs, baselines=baseline, target=target,
                                        n_steps=self.ig_steps)
        if isinstance(rel, (list, tuple)):
            rel = rel[0]
        if rel.dim() != 3 or rel.shape[:2] != ids.shape:
            raise ValueError(f"relevance at the embedding layer has shape {tuple(rel.shape)}; "
                             f"expected (N, L, E) with (N, L) = {tuple(ids.shape)}. Pass "
                             "layer= the module that maps token ids to vectors")
        return rel.detach().float().sum(dim=2)


def explain_text(model: nn.Module, tokenizer, texts: str | Sequence[str], target: Any = None,
                 composite: Any = "epsilon", *, method: str = "lrp",
                 layer: nn.Module | None = None, max_length: int | None = None,
                 batch_size: int = 32, output_mode: str = "logit", class_names=None,
                 canonizers: str | None = "auto", ig_steps: int = 32,
                 min_length: int | None = None, pad_id: int | None = None):
    """Relevance of every word (and WordPiece token) of ``texts`` for a class.

    Parameters
    ----------
    model : nn.Module
        ``model(ids (N, L)) -> logits (N, C)`` with an embedding layer, or a Hugging Face
        style model (``get_input_embeddings()``, ``forward(inputs_embeds=...)``). Eval mode.
    tokenizer : tokenizers.Tokenizer or transformers.PreTrainedTokenizerFast
    texts : str or sequence of str
        One text gives one :class:`TextExplanation`, a sequence a list of them.
    target : int, str, sequence or None
        Class index or name, one per text, or ``None`` for the predicted class of each text.
    composite : str or lrp_captum.Composite
        LRP rules (``method="lrp"`` only); default ``"epsilon"`` as in Arras et al.
    method : {"lrp", "input_x_gradient", "integrated_gradients"}
        LRP, or Captum's gradient × embedding / integrated gradients (baseline: padding
        tokens, i.e. zero embeddings for :class:`WordCNN`) at the same layer, for comparison.
    layer : nn.Module, optional
        The token embedding, if it cannot be found automatically.
    max_length : int, optional
        Tokens per text at most (special tokens included); longer texts are truncated and
        say so in ``warnings``. Default: the tokenizer's truncation length, else 512.
    batch_size : int
        Texts per forward/backward pass; batches hold texts of one token length, so results
        do not depend on batching.
    output_mode : str
        Relevance to start from, see :meth:`lrp_captum.LRP.attribute`.
    class_names : sequence of str, optional
        Default: ``model.class_names``, ``model.config.id2label`` or the indices.
    canonizers : "auto" or None
        Passed to :class:`lrp_captum.LayerLRP`.
    ig_steps : int
        Integration steps for ``method="integrated_gradients"``.
    min_length, pad_id : int, optional
        Pad texts shorter than ``min_length`` tokens (default ``model.min_length`` or 1)
        with ``pad_id`` (default ``model.pad_id``, the config's or the tokenizer's pad id).

    Returns
    -------
    TextExplanation or list of TextExplanation

    Raises
    ------
    lrp_captum.CanonizationError, lrp_captum.NoRuleError
        If the model contains an op that no LRP rule covers (the message names it).
    """
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    if model.training:
        raise RuntimeError(f"{type(model).__name__} is in training mode; call model.eval() first")
    if max_length is None:
        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        trunc = getattr(backend, "truncation", None)
        max_length = (trunc or {}).get("max_length") or 512
    pad_id = _pad_id(model, tokenizer) if pad_id is None else int(pad_id)
    min_length = int(min_length or getattr(model, "min_length", 1) or 1)
    encoded = encode_texts(tokenizer, texts, max_length=max_length)
    if not texts:
        return []
    device = _model_device(model)
    attributor = _Attributor(model, layer, method, composite, canonizers, output_mode, ig_steps,
                             pad_id)
    lengths = [max(len(e.ids), min_length) for e in encoded]
    results: list[TextExplanation | None] = [None] * len(texts)
    names = None
    targets_in = target
    for idx in length_batches(lengths, batch_size):
        ids = pad_batch([encoded[i] for i in idx], pad_id, min_length, device=device)
        logits = attributor.logits(ids).float()
        if names is None:
            names = _class_names(model, logits.shape[1], class_names)
            wanted = _resolve_targets(targets_in, len(texts), names)
        probs = torch.softmax(logits, dim=1)
        predicted = logits.argmax(dim=1).tolist()
        targets = [wanted[i] if wanted[i] is not None else p for i, p in zip(idx, predicted)]
        token_rel = attributor(ids, targets).cpu()
        for row, i in enumerate(idx):
            output = float(logits[row, targets[row]]) if output_mode == "logit" else \
                float(probs[row, targets[row]]) if output_mode == "probability" else float("nan")
            results[i] = _explanation(encoded[i], token_rel[row].tolist(), targets[row],
                                      predicted[row], probs[row].tolist(), names, output,
                                      method, composite, pad_id)
    return results[0] if single else results


def _explanation(enc: EncodedText, token_rel: list[float], target: int, predicted: int,
                 probs: list[float], names: list[str], output: float, method: str, composite,
                 pad_id: int) -> TextExplanation:
    n_pad = len(token_rel) - len(enc.ids)
    tokens = enc.tokens + ["[PAD]"] * n_pad
    token_word = enc.token_word + [None] * n_pad
    specials = [{"token": t, "position": p, "relevance": r}
                for p, (t, w, r) in enumerate(zip(tokens, token_word, token_rel)) if w is None]
    word_rel = merge_token_relevance(token_rel, token_word, len(enc.words))
    comp = composite if isinstance(composite, str) or composite is None else \
        getattr(composite, "name", type(composite).__name__)
    return TextExplanation(
        text=enc.text, words=enc.words, word_spans=enc.word_spans, word_relevance=word_rel,
        tokens=tokens, token_relevance=[float(r) for r in token_rel], token_word=token_word,
        special_tokens=specials, target=int(target), target_name=names[target],
        predicted=int(predicted), predicted_name=names[predicted],
        probabilities=[float(p) for p in probs], output_relevance=output,
        relevance_sum=float(sum(token_rel)), method=method,
        composite=comp if method == "lrp" else None, truncated=enc.truncated,
        n_tokens_total=enc.n_tokens_total, n_words_dropped=enc.n_words_dropped,
        unknown_words=list(enc.unknown_words), warnings=list(enc.warnings),
        class_names=list(names))
