"""Word-level relevance for text classifiers (Arras et al. 2017, seed 003).

Relevance is computed at the output of the embedding layer, summed over the embedding
dimensions to one number per token, and WordPiece sub-tokens are summed back into the words of
the original text (a contraction such as "didn't" is one word). Special tokens (``[CLS]``,
``[SEP]``, padding to the widest filter) are reported apart.

Works for

* :class:`~lrp_captum.text.models.WordCNN` and any PyTorch classifier ``model(ids) -> (N, C)``
  with an ``nn.Embedding`` (found automatically if there is exactly one, else pass ``layer``);
* Hugging Face sequence classifiers (``BertForSequenceClassification``, ...) with their fast
  tokenizer, as objects or as a local folder (:func:`load_text_model`); relevance is computed
  for their word embeddings. LRP on a transformer uses the transformer composites
  (:func:`lrp_captum.text.transformer.transformer_lrp`).

A model left in training mode is explained in evaluation mode and comes back with every
module's flag as it was (:func:`lrp_captum.core.model_mode.evaluation_mode`). Texts longer than the
model's maximum length are explained over overlapping windows (:mod:`lrp_captum.text.windows`),
and the result says so.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from lrp_captum.core.model_mode import evaluation_mode
from lrp_captum.devices import model_device

from lrp_captum.text.attribute import METHODS, TokenAttributor, find_embedding_layer, ids_to_logits  # noqa: F401
from lrp_captum.text.encoding import EncodedText, encode_texts, length_batches
from lrp_captum.text.transformer import model_max_length
from lrp_captum.text.windows import WindowPlan, plan_windows, special_ends
from lrp_captum.wording import counted


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
    tokens, token_ids, token_relevance, token_word : list
        Every token of the text (special tokens and padding to the model's ``min_length``
        included), its id, its relevance, and its word index (``None`` for special tokens).
        ``sum(word_relevance) == sum(r for r, w in zip(token_relevance, token_word)
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
        The relevance propagated from the output (the target logit for ``output_mode="logit"``;
        for a long text the mean over its windows).
    relevance_sum : float
        Sum of all token relevance; equals ``output_relevance`` up to what biases and
        stabilisers absorb (for LRP and a conservative composite).
    logit_split : dict
        LRP only: where the explained output went (:func:`logit_split`): ``output``, ``words``,
        ``special_tokens``, ``position_type_embeddings`` (a transformer's position and
        token-type embeddings, added to the words) and ``biases`` (the rest: biases, stabilisers
        and what a non-conservative rule such as AttnLRP's softmax does not conserve). For a long
        text, the mean over its windows. Empty for other methods and the contrastive output.
    method, composite : str
        ``"lrp"`` with its composite, or another method of
        :data:`lrp_captum.text.attribute.METHODS`.
    windows : list of [int, int]
        Token positions ``[start, stop)`` of the text each window covered; one window when the
        text fits the model (see :mod:`lrp_captum.text.windows` for how they combine).
    unknown_words, warnings
        See :class:`~lrp_captum.text.encoding.EncodedText`; ``warnings`` also says when a text
        was explained over several windows.
    """
    text: str
    words: list[str]
    word_spans: list[tuple[int, int]]
    word_relevance: list[float]
    tokens: list[str]
    token_ids: list[int]
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
    windows: list[list[int]] = field(default_factory=list)
    unknown_words: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)
    logit_split: dict = field(default_factory=dict)

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


def class_names_of(model: nn.Module, n_classes: int | None = None, class_names=None
                   ) -> list[str]:
    """Names of the model's classes: ``class_names``, ``model.class_names``, the config's
    ``id2label``, else the indices as strings.

    ``n_classes`` defaults to the config's ``num_labels`` or the length of the names found.

    Raises
    ------
    ValueError
        If the number of names differs from ``n_classes``.
    """
    if n_classes is None:
        config = getattr(model, "config", None)
        n_classes = getattr(config, "num_labels", None) if config is not None and \
            not callable(config) else None
        if n_classes is None:
            names = class_names if class_names is not None else getattr(model, "class_names",
                                                                        None)
            if names is None:
                raise ValueError(f"cannot tell how many classes {type(model).__name__} has")
            n_classes = len(names)
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


def resolve_targets(target, n: int, class_names: list[str]) -> list[int | None]:
    """One class index (or ``None`` = predicted) per text from indices or names.

    Raises
    ------
    ValueError
        For an unknown name, an index out of range, or a wrong number of targets.
    """
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
            raise ValueError(f"{counted(len(target), 'target')} for {counted(n, 'text')}")
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




def input_settings(model: nn.Module, tokenizer, max_length: int | None = None,
                   pad_id: int | None = None, min_length: int | None = None
                   ) -> tuple[int | None, int, int]:
    """``(max_length, pad_id, min_length)`` of a model's inputs, defaults filled in as
    :func:`explain_text` documents them.

    Raises
    ------
    ValueError
        If ``max_length`` is shorter than the model's minimum input.
    """
    if max_length is None:
        max_length = model_max_length(model, tokenizer)
    pad_id = _pad_id(model, tokenizer) if pad_id is None else int(pad_id)
    min_length = int(min_length or getattr(model, "min_length", 1) or 1)
    if max_length is not None and max_length < min_length:
        raise ValueError(f"max_length={max_length} is shorter than the model's minimum input "
                         f"of {min_length} tokens")
    return max_length, pad_id, min_length


@dataclass
class _Window:
    """One model input: window ``index`` of text ``text``, its ids padded to ``min_length``."""
    text: int
    index: int
    ids: list[int]
    n_pad: int


def _window_items(token_ids: Sequence[list[int]], plans: Sequence[WindowPlan],
                  min_length: int, pad_id: int) -> list[_Window]:
    items = []
    for t, (ids, plan) in enumerate(zip(token_ids, plans)):
        for w, window in enumerate(plan.window_ids(list(ids))):
            n_pad = max(0, min_length - len(window))
            items.append(_Window(t, w, window + [pad_id] * n_pad, n_pad))
    return items


def window_logits(logits_fn, token_ids: Sequence[list[int]], plans: Sequence[WindowPlan], *,
                  min_length: int = 1, pad_id: int = 0, batch_size: int = 32,
                  device=None) -> torch.Tensor:
    """Logits ``(T, C)`` of ``T`` texts, each the mean over its windows.

    Parameters
    ----------
    logits_fn : callable
        ``token ids (N, L) -> logits (N, C)``, e.g.
        :func:`lrp_captum.text.attribute.ids_to_logits`.
    token_ids : sequence of list of int
        Token ids of every text (special tokens included), as encoded.
    plans : sequence of WindowPlan
        From :func:`lrp_captum.text.windows.plan_windows`, one per text.
    min_length, pad_id : int
        Windows shorter than ``min_length`` are right-padded with ``pad_id``.
    batch_size : int
        Windows per forward pass (windows of one length share a pass).
    """
    items = _window_items(token_ids, plans, min_length, pad_id)
    sums: list[torch.Tensor | None] = [None] * len(token_ids)
    for idx in length_batches([len(it.ids) for it in items], batch_size):
        ids = torch.tensor([items[i].ids for i in idx], device=device)
        logits = logits_fn(ids).float().cpu()
        for row, i in enumerate(idx):
            t = items[i].text
            sums[t] = logits[row] if sums[t] is None else sums[t] + logits[row]
    return torch.stack([s / plan.n_windows for s, plan in zip(sums, plans)])


def predict_proba(model: nn.Module, tokenizer, texts: Sequence[str],
                  max_length: int | None = None, batch_size: int = 32) -> torch.Tensor:
    """Class probabilities ``(T, C)`` of texts, as :func:`explain_text` computes them (long
    texts over overlapping windows, the mean of the window logits); the model is run in
    evaluation mode and comes back unchanged."""
    max_length, pad_id, min_length = input_settings(model, tokenizer, max_length)
    encoded = encode_texts(tokenizer, list(texts))
    if not encoded:
        return torch.zeros(0)
    plans = [plan_windows(len(e.ids), *special_ends(e.token_word), max_length) for e in encoded]
    with evaluation_mode(model):
        logits = window_logits(ids_to_logits(model), [e.ids for e in encoded], plans,
                               min_length=min_length, pad_id=pad_id, batch_size=batch_size,
                               device=model_device(model))
    return torch.softmax(logits, dim=1)


def _window_relevance(attributor: TokenAttributor, items: list[_Window], targets: list[int],
                      batch_size: int, device, output_mode: str):
    """Token relevance, explained output and relevance of the added embeddings (LRP; else None)
    of every window, for its text's target."""
    relevance: list[torch.Tensor | None] = [None] * len(items)
    outputs = [float("nan")] * len(items)
    added: list[float | None] = [None] * len(items)
    for idx in length_batches([len(it.ids) for it in items], batch_size):
        ids = torch.tensor([items[i].ids for i in idx], device=device)
        wanted = [targets[items[i].text] for i in idx]
        rel, extra = attributor.attribute(ids, wanted)
        rel = rel.cpu()
        if output_mode in ("logit", "probability"):
            logits = attributor.logits(ids).float().cpu()
            values = logits if output_mode == "logit" else torch.softmax(logits, dim=1)
            for row, i in enumerate(idx):
                outputs[i] = float(values[row, wanted[row]])
        for row, i in enumerate(idx):
            relevance[i] = rel[row]
            added[i] = None if extra is None else float(extra[row])
    return relevance, outputs, added


def explain_text(model: nn.Module, tokenizer, texts: str | Sequence[str], target: Any = None,
                 composite: Any = None, *, method: str = "lrp",
                 layer: nn.Module | None = None, max_length: int | None = None,
                 stride: int | None = None, batch_size: int = 32, output_mode: str = "logit",
                 class_names=None, canonizers: str | None = "default", ig_steps: int = 32,
                 min_length: int | None = None, pad_id: int | None = None, seed: int = 0):
    """Relevance of every word (and WordPiece token) of ``texts`` for a class.

    Parameters
    ----------
    model : nn.Module or path
        ``model(ids (N, L)) -> logits (N, C)`` with an embedding layer, or a Hugging Face
        sequence classifier (``get_input_embeddings()``, ``forward(input_ids=...)`` returning
        ``.logits``). Any mode: it is explained in evaluation mode and comes back unchanged.
        A folder (str or Path) is loaded with :func:`lrp_captum.text.load_text_model` on the
        CPU first (on every call: load it once yourself to explain repeatedly).
    tokenizer : tokenizers.Tokenizer or transformers.PreTrainedTokenizerFast or None
        ``None`` with a folder: the folder's own tokenizer.
    texts : str or sequence of str
        One text gives one :class:`TextExplanation`, a sequence a list of them.
    target : int, str, sequence or None
        Class index or name, one per text, or ``None`` for the predicted class of each text.
    composite : str or lrp_captum.Composite, optional
        LRP rules (``method="lrp"`` only); default ``"epsilon"`` as in Arras et al., and
        ``"attnlrp"`` for a transformer.
    method : str
        One of :data:`lrp_captum.text.attribute.METHODS`: ``"lrp"``; Captum's gradient x
        embedding (``"input_x_gradient"``) or integrated gradients (baseline: padding tokens)
        at the same layer; ``"attention_rollout"`` / ``"raw_attention"`` (transformers);
        ``"random"``.
    layer : nn.Module, optional
        The token embedding, if it cannot be found automatically.
    max_length : int, optional
        Tokens per model input, special tokens included. Longer texts are explained over
        overlapping windows of this length (nothing is cut; the result's ``windows`` and
        ``warnings`` say so). Default: the model's maximum length
        (:func:`lrp_captum.text.transformer.model_max_length`), or no limit for a model that
        has none (the word-CNN).
    stride : int, optional
        Text tokens between window starts; default half a window.
    batch_size : int
        Windows per forward/backward pass; batches hold inputs of one token length, so results
        do not depend on batching.
    output_mode : str
        Relevance to start from, see :meth:`lrp_captum.LRP.attribute`.
    class_names : sequence of str, optional
        Default: ``model.class_names``, ``model.config.id2label`` or the indices.
    canonizers : "default", "auto" or None
        Passed to the LRP engine.
    ig_steps : int
        Integration steps for ``method="integrated_gradients"``.
    min_length, pad_id : int, optional
        Pad texts shorter than ``min_length`` tokens (default ``model.min_length`` or 1)
        with ``pad_id`` (default ``model.pad_id``, the config's or the tokenizer's pad id).
    seed : int
        Seed of ``method="random"``.

    Returns
    -------
    TextExplanation or list of TextExplanation

    Raises
    ------
    lrp_captum.CanonizationError, lrp_captum.NoRuleError
        If the model contains an op that no LRP rule covers (the message names it).
    """
    if isinstance(model, (str, os.PathLike)):
        from lrp_captum.text.model_folders import load_text_model

        model, own_tokenizer, _ = load_text_model(model, device="cpu")
        tokenizer = own_tokenizer if tokenizer is None else tokenizer
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    max_length, pad_id, min_length = input_settings(model, tokenizer, max_length, pad_id,
                                                    min_length)
    encoded = encode_texts(tokenizer, texts)
    if not texts:
        return []
    plans = [plan_windows(len(e.ids), *special_ends(e.token_word), max_length, stride)
             for e in encoded]
    device = model_device(model)
    with warnings.catch_warnings(record=True) as caught, evaluation_mode(model):
        warnings.simplefilter("always")
        attributor = TokenAttributor(model, method, composite, layer, canonizers, output_mode,
                                     ig_steps, pad_id, seed)
        logits = window_logits(attributor.logits, [e.ids for e in encoded], plans,
                               min_length=min_length, pad_id=pad_id, batch_size=batch_size,
                               device=device)
        names = class_names_of(model, logits.shape[1], class_names)
        wanted = resolve_targets(target, len(texts), names)
        predicted = logits.argmax(dim=1).tolist()
        targets = [w if w is not None else p for w, p in zip(wanted, predicted)]
        items = _window_items([e.ids for e in encoded], plans, min_length, pad_id)
        relevance, outputs, added = _window_relevance(attributor, items, targets, batch_size, device,
                                                      output_mode)
    call_warnings = _user_warnings(caught)
    probs = torch.softmax(logits, dim=1)
    results = []
    for t, (enc, plan) in enumerate(zip(encoded, plans)):
        mine = [i for i, it in enumerate(items) if it.text == t]
        n_pad = items[mine[0]].n_pad  # only a single short window is padded
        window_rel = [relevance[i][:len(relevance[i]) - items[i].n_pad] for i in mine]
        token_rel = plan.combine_relevance(window_rel).tolist()
        token_rel += relevance[mine[0]][len(relevance[mine[0]]) - n_pad:].tolist()
        output = sum(outputs[i] for i in mine) / len(mine)
        extra = None if added[mine[0]] is None else sum(added[i] for i in mine) / len(mine)
        results.append(_explanation(enc, plan, token_rel, n_pad, targets[t], predicted[t],
                                    probs[t].tolist(), names, output, method,
                                    attributor.composite, pad_id, extra))
        results[-1].warnings += [w for w in call_warnings if w not in results[-1].warnings]
    for w in caught:  # given again, now that they are recorded, to the caller's filters
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return results[0] if single else results


def _user_warnings(caught) -> list[str]:
    """Distinct messages of recorded warnings meant for the user (a page shows them with each
    explanation, not only a server log)."""
    shown = [w for w in caught if issubclass(w.category, (UserWarning, RuntimeWarning))]
    return list(dict.fromkeys(" ".join(str(w.message).split()) for w in shown))


#: relevance of the tokens and embeddings this many times the explained output: the rules amplify it
AMPLIFIED = 100.0


def logit_split(word_relevance: Sequence[float], special_relevance: Sequence[float], output: float,
                added: float | None) -> dict:
    """Where the explained output went: ``words``, ``special_tokens``, ``position_type_embeddings``
    (relevance of the embeddings added to the tokens) and ``biases`` (the rest: what biases and
    stabilisers absorb, and what a non-conservative rule such as AttnLRP's softmax loses or adds),
    with the ``output`` itself. Empty when there is no output to split (a method other than LRP,
    or ``output_mode="contrastive"``)."""
    if added is None or output != output:
        return {}
    words, special = float(sum(word_relevance)), float(sum(special_relevance))
    return {"output": float(output), "words": words, "special_tokens": special,
            "position_type_embeddings": float(added), "biases": float(output) - words - special - float(added)}


def _split_warnings(split: dict) -> list[str]:
    """What is really wrong with a split: relevance that is not finite, or far larger than the output."""
    if not split:
        return []
    parts = split["words"] + split["special_tokens"] + split["position_type_embeddings"]
    if not all(math.isfinite(v) for v in split.values()):
        return ["relevance is not finite (NaN or inf): a rule divided by a near-zero denominator; try "
                "composite cp_lrp or epsilon"]
    if abs(parts) > AMPLIFIED * max(abs(split["output"]), 1e-6):
        return [f"the tokens and embeddings get {abs(parts) / max(abs(split['output']), 1e-6):.0f} times the "
                "explained output: the rules amplify relevance; try composite cp_lrp or epsilon"]
    return []


def _explanation(enc: EncodedText, plan: WindowPlan, token_rel: list[float], n_pad: int,
                 target: int, predicted: int, probs: list[float], names: list[str],
                 output: float, method: str, composite, pad_id: int, added: float | None = None
                 ) -> TextExplanation:
    tokens = enc.tokens + ["[PAD]"] * n_pad
    token_word = enc.token_word + [None] * n_pad
    specials = [{"token": t, "position": p, "relevance": r}
                for p, (t, w, r) in enumerate(zip(tokens, token_word, token_rel)) if w is None]
    word_rel = merge_token_relevance(token_rel, token_word, len(enc.words))
    comp = composite if isinstance(composite, str) or composite is None else \
        getattr(composite, "name", type(composite).__name__)
    split = logit_split(word_rel, [s["relevance"] for s in specials], output, added) if method == "lrp" else {}
    notes = list(enc.warnings) + ([plan.describe()] if plan.n_windows > 1 else []) + _split_warnings(split)
    return TextExplanation(
        text=enc.text, words=enc.words, word_spans=enc.word_spans, word_relevance=word_rel,
        tokens=tokens, token_ids=list(enc.ids) + [pad_id] * n_pad,
        token_relevance=[float(r) for r in token_rel], token_word=token_word,
        special_tokens=specials, target=int(target), target_name=names[target],
        predicted=int(predicted), predicted_name=names[predicted],
        probabilities=[float(p) for p in probs], output_relevance=output,
        relevance_sum=float(sum(token_rel)), method=method,
        composite=comp if method == "lrp" else None,
        windows=[[a, b] for a, b in plan.spans], unknown_words=list(enc.unknown_words),
        warnings=notes, class_names=list(names), logit_split=split)
