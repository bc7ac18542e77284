"""What `lrp-captum slide cohort` says about the slides it could not explain, and where
`--keep-work` keeps each slide's work: one real cohort on a local Ray, run as a user runs it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

# Ray on loopback only, for this process and the Ray processes it starts (set before Ray is imported)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402,F401  (the dev extra brings it; tests/conftest.py says so if missing)

from lrp_captum import cli  # noqa: E402
from lrp_captum.demos.sample_slide import write_sample_slide  # noqa: E402
from lrp_captum.demos.slide_model import demo_model_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cohort_run(tmp_path_factory):
    """Three slides: 'done' explains, 'corrupt' is a truncated file, and 'taken' already has a
    `slide explain` result with another composite in its cohort folder."""
    d = tmp_path_factory.mktemp("failures")
    model = demo_model_config(d / "model", n_train=256, n_val=64, epochs=2)
    slides = d / "slides"
    slides.mkdir()
    write_sample_slide(slides / "done.tif", 1024, kind="tiff", seed=2)
    write_sample_slide(slides / "taken.tif", 1024, kind="tiff", seed=3)
    data = (slides / "done.tif").read_bytes()
    (slides / "corrupt.tif").write_bytes(data[: len(data) // 2])
    out = d / "out"
    assert cli.main(["slide", "explain", str(slides / "taken.tif"), "--out", str(out / "taken"), "--model",
                     str(model), "--composite", "epsilon", "--batch-size", "8", "--quiet"]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = str(ROOT)
    run = subprocess.run([sys.executable, "-m", "lrp_captum.cli", "slide", "cohort", str(slides), "--out", str(out),
                          "--model", str(model), "--batch-size", "8", "--num-cpus", "2", "--keep-work", "--quiet"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    return run, out


def test_the_terminal_gives_each_failed_slide_its_reason(cohort_run):
    run, out = cohort_run
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert "1 done, 2 failed of 3 slides" in run.stderr
    table = pd.read_csv(out / "cohort.csv").set_index("slide_id")
    for slide in ("corrupt", "taken"):
        reason = table.loc[slide, "error"]
        assert isinstance(reason, str) and reason
        assert f"  {slide}: {reason}" in lines, run.stderr  # the table's reason, word for word
    assert "corrupt.tif" in table.loc["corrupt", "error"]


def test_a_folder_holding_another_run_is_explained_in_plain_words(cohort_run):
    _, out = cohort_run
    reason = pd.read_csv(out / "cohort.csv").set_index("slide_id").loc["taken", "error"]
    # what is there, what differs, what to do: the flag, not the Python API or the exception's name
    assert "already holds" in reason and "taken.tif" in reason
    assert "composite epsilon" in reason and "composite epsilon_gamma_box" in reason
    assert "--overwrite" in reason
    assert "overwrite=True" not in reason and "FileExistsError" not in reason


def test_keep_work_keeps_each_slides_work_in_its_own_folder(cohort_run):
    _, out = cohort_run
    assert (out / "done" / ".lrp_work" / "state.json").is_file()
    assert not (out / ".lrp_work").exists()


def test_keep_work_help_names_the_slide_folder(capsys):
    with pytest.raises(SystemExit):
        cli.main(["slide", "cohort", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--keep-work keep per-batch files in OUT/<slide_id>/.lrp_work" in help_text
