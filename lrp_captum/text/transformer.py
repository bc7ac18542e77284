"""Hugging Face sequence classifiers: loading a local folder, the token-ids forward, the
model's maximum length, attention maps, and the plug-in point for transformer LRP.

A Hugging Face classifier (``BertForSequenceClassification`` and friends) is explained at the
output of its word-embedding layer (``model.get_input_embeddings()``), like the word-CNN, so
that every method (LRP, input x gradient, integrated gradients) gives relevance per token and
embedding dimension. Nothing here downloads: folders are read with ``local_files_only=True``.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from lrp_captum.core.engine.scores import scores

#: composites written for transformers (attention and LayerNorm rules)
TRANSFORMER_COMPOSITES = ("attnlrp", "cp_lrp")
#: the composite used for a transformer when none is given
DEFAULT_TRANSFORMER_COMPOSITE = "attnlrp"


def is_hugging_face_model(model: nn.Module) -> bool:
    """True for a model with ``get_input_embeddings()`` and a ``config`` (Hugging Face style)."""
    return callable(getattr(model, "get_input_embeddings", None)) and \
        getattr(model, "config", None) is not None


def is_hugging_face_folder(path: str | Path) -> bool:
    """True for a folder holding a Hugging Face ``config.json`` (with ``model_type``)."""
    import json

    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return "model_type" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def quiet_transformers():
    """Hugging Face's progress bars and reports off while the context is open (loading a few
    files takes a fraction of a second; a new classification head is expected when fine-tuning
    starts and is said once by the caller), restored after."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_sequence_classifier(path: str | Path, device: str | torch.device = "cpu"):
    """A Hugging Face sequence classifier and its tokenizer from a local folder.

    Parameters
    ----------
    path : path
        Folder written by ``save_pretrained`` (``config.json``, weights, tokenizer files).
    device : str or torch.device

    Returns
    -------
    model : transformers.PreTrainedModel
        In eval mode on ``device``.
    tokenizer : transformers.PreTrainedTokenizerFast

    Raises
    ------
    FileNotFoundError, ValueError
        If the folder is missing, is not a Hugging Face model, or has no fast tokenizer.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder")
    if not is_hugging_face_folder(path):
        raise ValueError(f"{path}: not a Hugging Face model folder (no config.json with a "
                         "'model_type')")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{path}: the tokenizer is not a fast (Rust) tokenizer; word offsets "
                         "are needed to merge sub-tokens into words (save tokenizer.json)")
    return model.to(device).eval(), tokenizer


def model_max_length(model: nn.Module, tokenizer=None) -> int | None:
    """Longest input the model takes, in tokens (special tokens included).

    The smaller of the position-embedding table (``config.max_position_embeddings``, less the
    offset RoBERTa-style models reserve for padding) and the tokenizer's ``model_max_length``
    when that is a real limit; ``model.max_length`` for other models; ``None`` when there is
    no limit (e.g. the word-CNN).
    """
    limits = []
    config = getattr(model, "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            positions -= (getattr(config, "pad_token_id", 1) or 0) + 1
        limits.append(int(positions))
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000:
        limits.append(tokenizer_limit)
    own = getattr(model, "max_length", None)
    if isinstance(own, int):
        limits.append(own)
    return min(limits) if limits else None


class LogitsFromIds(nn.Module):
    """``token ids (N, L) -> logits (N, C)`` for a Hugging Face classifier.

    Batches hold texts of one length, so no attention mask is needed (every position is a
    real token).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return scores(self.model(input_ids=input_ids))


class LogitsFromEmbeddings(nn.Module):
    """``word embeddings (N, L, E) -> logits (N, C)`` for a Hugging Face classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs_embeds: torch.Tensor) -> torch.Tensor:
        return scores(self.model(inputs_embeds=inputs_embeds))


def require_composite(composite) -> None:
    """Raise :class:`lrp_captum.UnknownCompositeError` unless ``composite`` is registered (or
    a :class:`lrp_captum.Composite` object), before any work."""
    from lrp_captum.core.composites import get_composite

    if isinstance(composite, str):
        get_composite(composite)


def added_embeddings(model: nn.Module) -> list[nn.Module]:
    """The embedding tables added to the word embeddings (BERT's position and token-type
    embeddings): the other ``nn.Embedding`` children of the module that holds
    ``model.get_input_embeddings()``. Empty for models without them."""
    word = model.get_input_embeddings()
    for module in model.modules():
        children = list(module.children())
        if any(child is word for child in children):
            return [c for c in children if isinstance(c, nn.Embedding) and c is not word]
    return []


@contextlib.contextmanager
def _per_example(tables: list[nn.Module], batch: int):
    """Outputs of ``tables`` expanded to ``batch`` examples while the context is open: a position
    table looked up once per batch ``(1, L, E)`` gets one row per example, so that each example's
    relevance of its position embeddings is its own (the sum is the same)."""
    def expand(module, args, output):
        return output.expand(batch, *output.shape[1:]) if output.shape[0] == 1 and batch > 1 else output

    handles = [t.register_forward_hook(expand) for t in tables]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


#: the start of the core's warning that Σ relevance differs from the output; for a transformer the
#: split of the output (:func:`transformer_lrp` with ``parts=True``) says where it went
_NOT_ADDING_UP = "relevance does not add up to the explained output"


def transformer_lrp(model: nn.Module, ids: torch.Tensor, target: torch.Tensor, composite,
                    output_mode: str = "logit", canonizers="default", parts: bool = False):
    """LRP relevance of a Hugging Face classifier at its word embeddings.

    The only function the text adapter calls for LRP on a transformer: the core's
    :class:`lrp_captum.LayerLRP` at the word embeddings (and the embeddings added to them) with a
    composite by name (``attnlrp``, ``cp_lrp``: rules on the attention's functions, no torch.fx
    trace needed), in one pass.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        In evaluation mode (the caller holds :func:`lrp_captum.core.model_mode.evaluation_mode`).
    ids : torch.Tensor
        ``(N, L)`` token ids of one length.
    target : torch.Tensor
        ``(N,)`` class per text.
    composite : str or lrp_captum.Composite
    output_mode : str
        See :meth:`lrp_captum.LRP.attribute`.
    canonizers : "default", "auto" or None
    parts : bool
        Also return the relevance of the embeddings added to the words.

    Returns
    -------
    torch.Tensor or (torch.Tensor, torch.Tensor)
        ``(N, L, E)`` relevance of the word embeddings; with ``parts``, also ``(N, L, E)`` of the
        position and token-type embeddings (:func:`added_embeddings`) summed. The rest of the
        output (what the biases absorb, and what AttnLRP's softmax rule does not conserve) is
        neither's: the core's warning that relevance "does not add up" is therefore not given
        here, the caller reports the split.

    Raises
    ------
    lrp_captum.UnknownCompositeError
        If the composite is not registered.
    """
    import warnings

    from lrp_captum import LayerLRP

    require_composite(composite)
    added = added_embeddings(model)
    engine = LayerLRP(LogitsFromIds(model), layer=[model.get_input_embeddings(), *added],
                      composite=composite, canonizers=canonizers)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NOT_ADDING_UP)
        with _per_example(added, len(ids)):
            relevances = engine.attribute(ids, target=target, output_mode=output_mode)
    words = relevances[0]
    if not parts:
        return words
    return words, (sum(relevances[1:]) if added else torch.zeros_like(words))
