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
                "skimage": "scikit-image", "tokenizers": "tokenizers", "timm": "timm", "ray": "ray", "h5py": "h5py"}


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


# ---------------------------------------------------------------------------------------------
# shared fixtures
# ---------------------------------------------------------------------------------------------
def imagenet_normalised(pixels):
    """``(pixels - mean) / std`` with ImageNet's statistics; ``pixels`` in [0, 1], (N, 3, H, W)."""
    import torch

    from lrp_captum import IMAGENET_MEAN, IMAGENET_STD
    mean = torch.tensor(IMAGENET_MEAN, dtype=pixels.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=pixels.dtype).view(1, 3, 1, 1)
    return (pixels - mean) / std


@pytest.fixture(scope="session")
def make_images():
    """``make_images(n, size, dtype=float32, seed=0)``: random ImageNet-normalised images
    ``(n, 3, size, size)`` inside the z^B box of ``imagenet_bounds``."""
    import torch

    def make(n: int, size: int, dtype=torch.float32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        return imagenet_normalised(torch.rand(n, 3, size, size, generator=g, dtype=dtype))
    return make


@pytest.fixture(scope="session")
def imagenet_bounds():
    """``(low, high)`` of ImageNet-normalised pixels, per channel (for z^B)."""
    from lrp_captum import IMAGENET_MEAN, IMAGENET_STD, zbox_bounds
    return zbox_bounds(IMAGENET_MEAN, IMAGENET_STD)


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium (Debian's, driven by Playwright) for the ``browser`` tests."""
    from pathlib import Path

    from playwright.sync_api import sync_playwright
    from test_app_fixtures import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).is_file():
        pytest.fail("Chromium is not installed: install the Debian package 'chromium' "
                    "(`make install` does it when run as root), or deselect with -m 'not browser'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
