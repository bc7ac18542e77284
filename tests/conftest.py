"""Shared test set-up.

The suite needs the ``dev`` extra (reference implementations, Playwright for the browser tests,
and through it every runtime extra). Without it, collection would stop with an ImportError in
one test file after another; instead the run ends at once with one line saying what to install.
"""
from __future__ import annotations

import importlib.util

import pytest

# module -> distribution, for what the tests import (dev extra, and the runtime extras it pulls in)
TEST_MODULES = {"zennit": "zennit", "quantus": "quantus", "playwright": "playwright", "transformers": "transformers",
                "torchvision": "torchvision", "pytest_timeout": "pytest-timeout", "streamlit": "streamlit",
                "openslide": "openslide-python", "mne": "mne", "zarr": "zarr", "tifffile": "tifffile",
                "skimage": "scikit-image", "tokenizers": "tokenizers", "timm": "timm", "ray": "ray"}


def _missing(modules: dict) -> list[str]:
    absent = []
    for module, dist in modules.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            absent.append(dist)
    return absent


def pytest_sessionstart(session):
    missing = _missing(TEST_MODULES)
    if missing:
        pytest.exit(f"the tests need the dev extra (missing: {', '.join(missing)}): "
                    "install it with pip install -e '.[dev]' (or run `make test`)", returncode=4)
