"""Shared pieces of the MIL tests: a tiny real tile encoder and a small generated cohort.

Imported by the ``test_mil_*`` modules (pytest puts ``tests/`` on ``sys.path``); the encoder is
referenced from specs as ``test_mil_support:tiny_encoder``.
"""
import pytest
import torch
from torch import nn

from lrp_captum.demos.mil_cohort import write_cohort
from lrp_captum.wsi.mil.encoders import build_encoder

TINY = "test_mil_support:tiny_encoder"


def tiny_encoder(dim: int = 16, bias: bool = True) -> nn.Module:
    """A small conv encoder, (N, 3, T, T) -> (N, dim); random init from build_encoder's seed."""
    return nn.Sequential(nn.Conv2d(3, 8, 5, stride=4, bias=bias), nn.ReLU(),
                         nn.Conv2d(8, dim, 3, stride=2, bias=bias), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def tiny_spec(seed: int = 0, dim: int = 16, bias: bool = True) -> dict:
    """Encoder spec: 128-px tiles at 1 µm/px (4 x 4 tiles on a 1024-px slide at 0.5 µm/px)."""
    return dict(arch=TINY, seed=seed, kwargs=dict(dim=dim, bias=bias), tile_size=128, mpp=1.0)


@pytest.fixture(scope="session")
def mil_cohort(tmp_path_factory):
    """Four 1024-px cohort slides (2 per class; slides 2 and 3 held out), written once per session.

    Each test module imports this fixture (and so gets its own copy of it); they share one folder.
    """
    out = tmp_path_factory.getbasetemp() / "mil_cohort"
    if not (out / "cohort.json").is_file():
        write_cohort(out, 4, size=1024, seed=3, test_fraction=0.5)
    return out


@pytest.fixture(scope="session")
def tiny():
    return build_encoder(tiny_spec())
