"""The package's cache folder: ``$LRP_CAPTUM_CACHE``, else ``~/.cache/lrp-captum``.

What is cached there: the demo slide models (:mod:`lrp_captum.demos.slide_model`, trained on
first use) and the tile embeddings of MIL explanations (``mil_embeddings/``).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """``$LRP_CAPTUM_CACHE`` or ``~/.cache/lrp-captum`` (not created here)."""
    return Path(os.environ.get("LRP_CAPTUM_CACHE", Path.home() / ".cache" / "lrp-captum"))
