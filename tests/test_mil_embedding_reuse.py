"""`slide explain-mil` reads the tile embeddings `slide train-mil` cached for the head's cohort:
after training, explaining a cohort slide runs no tile through the encoder."""
import contextlib
import io
import json
import shutil

import pytest
import torch

from lrp_captum import cli
from lrp_captum.demos.mil_cohort import read_cohort
from test_mil_support import TINY, mil_cohort  # noqa: F401 -- fixture

TINY_ARGS = ("--arch", TINY, "--encoder-tile-size", "128", "--encoder-mpp", "1.0")


def _run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["slide", *argv])
    return rc, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def tiles_through_encoders():
    """Counts the tiles (images of (N, 3, H, W)) entering any RGB convolution while the block runs.

    All-zero images are not counted: building an encoder runs one to learn its output size, and
    a normalised slide tile is never all zeros.
    """
    seen = {"tiles": 0}

    def count(module, args):
        if isinstance(module, torch.nn.Conv2d) and module.in_channels == 3:
            seen["tiles"] += int((args[0].flatten(1).abs().amax(1) > 0).sum())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(count)
    try:
        yield seen
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def trained_cohort(mil_cohort, tmp_path_factory):
    """A private copy of the cohort, and a head trained on it with the default embedding cache
    (``COHORT/embeddings``); the package cache points at an empty folder."""
    d = tmp_path_factory.mktemp("reuse")
    cohort = shutil.copytree(mil_cohort, d / "cohort", ignore=shutil.ignore_patterns("embeddings"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LRP_CAPTUM_CACHE", str(d / "package_cache"))
        with tiles_through_encoders() as seen:
            rc, out, err = _run("train-mil", "--cohort", str(cohort), "--out", str(d / "abmil"), *TINY_ARGS,
                                "--epochs", "3", "--quiet")
    assert rc == 0, err
    assert seen["tiles"] > 0 and (cohort / "embeddings").is_dir()
    return d, cohort, json.loads(out)["head"]


@pytest.mark.parametrize("method", ["gradient", "single"])
def test_explain_mil_reuses_the_embeddings_train_mil_cached(trained_cohort, method, monkeypatch):
    d, cohort, head = trained_cohort
    monkeypatch.setenv("LRP_CAPTUM_CACHE", str(d / "package_cache"))
    slide = next(e for e in read_cohort(cohort) if e.label == 1).slide
    out = d / f"explained_{method}"
    with tiles_through_encoders() as seen:
        rc, _, err = _run("explain-mil", str(slide), "--mil", head, "--out", str(out), "--method", method,
                          "--top-tiles", "0")
    assert rc == 0, err
    assert seen["tiles"] == 0  # no tile went through the encoder
    manifest = json.loads((out / "manifest.json").read_text())
    store = manifest["embeddings"]["store"]
    assert manifest["embeddings"]["embedded_now"] == 0 and store.startswith(str((cohort / "embeddings").resolve()))
    assert not (d / "package_cache" / "mil_embeddings").exists()
    assert "embeddings" in err and "train-mil" in err and "no tile embedded" in err  # and it says so
