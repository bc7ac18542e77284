"""`lrp-captum slide cohort SLIDES --features FOLDER --head ... --head-arch ...`: every slide explained
from its TRIDENT/CLAM features on a local Ray, with the cohort table; a slide without features fails
alone; options of tile models are refused before Ray starts."""
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from lrp_captum.wsi.mil.published_heads import CLAM

ROOT = Path(__file__).resolve().parents[1]
D, SIDE = 16, 256
COORDS = np.array([(x, y) for y in range(0, 1024, SIDE) for x in range(0, 1024, SIDE)], dtype=np.int64)


def _cli(*argv, timeout=600):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "lrp_captum.cli", "slide", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Three slides; CLAM's h5_files/ and patches/ for two of them, and a CLAM-SB checkpoint."""
    from lrp_captum.demos.sample_slide import write_sample_slide

    root = tmp_path_factory.mktemp("mil_cohort")
    slides = root / "slides"
    slides.mkdir()
    for i, name in enumerate(("a", "b", "no_features")):
        write_sample_slide(slides / f"{name}.tif", (1024, 1024), kind="tiff", mpp=0.5, seed=i)
    feats = root / "clam"
    for sub in ("h5_files", "patches"):
        (feats / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        with h5py.File(feats / "h5_files" / f"{name}.h5", "w") as f:
            f.create_dataset("features", data=rng.standard_normal((len(COORDS), D)).astype(np.float32))
            f.create_dataset("coords", data=COORDS)
        with h5py.File(feats / "patches" / f"{name}.h5", "w") as f:
            f.create_dataset("coords", data=COORDS).attrs.update(patch_size=SIDE, patch_level=0,
                                                                 downsample=np.array([1.0, 1.0]))
    torch.manual_seed(0)
    torch.save({"model_state_dict": CLAM(D, 2, hidden=16, attn_dim=8).state_dict(), "epoch": 3,
                "auc_val": np.float64(0.9)}, root / "clam.pt")
    return root


def test_a_cohort_from_clam_features_explains_every_slide_with_its_file_and_reports_the_one_without(inputs):
    out = inputs / "out"
    done = _cli("cohort", str(inputs / "slides"), "--features", str(inputs / "clam" / "h5_files"), "--head",
                str(inputs / "clam.pt"), "--head-arch", "clam-sb", "--head-classes", "normal,tumour", "--out",
                str(out), "--num-cpus", "2", "--quiet")
    assert done.returncode == 1, done.stderr  # the slide without features failed
    assert "2 done, 1 failed of 3 slides" in done.stderr
    table = pd.read_csv(out / "cohort.csv").set_index("slide_id")
    assert table.loc[["a", "b"], "status"].tolist() == ["done", "done"]
    assert "no features of slide 'no_features'" in table.loc["no_features", "error"]
    for name in ("a", "b"):
        manifest = json.loads((out / name / "manifest.json").read_text())
        assert manifest["embeddings"]["embedded_now"] == 0 and manifest["n_tiles"] == len(COORDS)
        row = table.loc[name]
        assert row["prediction"] == manifest["prediction"]["class_name"]
        assert row["p_normal"] + row["p_tumour"] == pytest.approx(1.0)
        assert row["evidence_sum"] == pytest.approx(row["target_logit"], abs=1e-4)  # xMIL-LRP shares the logit
    assert json.loads((out / "cohort.json").read_text())["task"] == "explain-mil-features"


@pytest.mark.parametrize("extra, words", [
    (["--composite", "epsilon"], "--composite applies to tile models"),
    (["--arch", "resnet18"], "not by a tile model"),
])
def test_tile_model_options_with_features_are_refused_before_ray_starts(inputs, tmp_path, extra, words):
    done = _cli("cohort", str(inputs / "slides"), "--features", str(inputs / "clam" / "h5_files"), "--head",
                str(inputs / "clam.pt"), "--head-arch", "clam-sb", "--out", str(tmp_path / "out"), *extra, timeout=120)
    assert done.returncode == 2 and words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_features_folder_of_other_slides_is_refused_before_ray_starts(inputs, tmp_path):
    (tmp_path / "h5_files").mkdir()
    with h5py.File(tmp_path / "h5_files" / "zz.h5", "w") as f:
        f.create_dataset("features", data=np.zeros((1, D), np.float32))
        f.create_dataset("coords", data=np.zeros((1, 2), np.int64))
    done = _cli("cohort", str(inputs / "slides"), "--features", str(tmp_path / "h5_files"), "--head",
                str(inputs / "clam.pt"), "--head-arch", "clam-sb", "--out", str(tmp_path / "out"), timeout=120)
    assert done.returncode == 2 and "none of the 3 slides" in done.stderr and "zz" in done.stderr, done.stderr
