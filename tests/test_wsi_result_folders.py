"""Whose result a folder is: each slide file gets its own result folder (or none, never a shared
one), a folder holding one slide's result is never overwritten for another slide, and one
``slide explain`` at a time writes into an output folder."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrp_captum import cli
from test_wsi_support import tiny_model_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return tiny_model_config(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="module")
def same_stem(tmp_path_factory):
    """A slides folder holding ``a.svs`` and ``a.tif`` (a converted copy, as ``case.mrxs`` next to
    ``case.tif``) and ``b.tif``."""
    from lrp_captum.demos.sample_slide import write_sample_slide

    slides = tmp_path_factory.mktemp("same_stem")
    write_sample_slide(slides / "a.svs", 512, kind="svs", seed=1)
    write_sample_slide(slides / "a.tif", 512, kind="tiff", seed=2)
    write_sample_slide(slides / "b.tif", 512, kind="tiff", seed=3)
    return slides


# --- 22.1: one result folder per slide file --------------------------------------------------------
def test_the_app_gives_slides_that_share_a_stem_no_shared_result_folder(same_stem, tmp_path):
    from lrp_captum.viewer.results import list_slides

    entries = {e.rel_path: e for e in list_slides(same_stem, tmp_path / "results")}
    for name, other in (("a.svs", "a.tif"), ("a.tif", "a.svs")):
        assert entries[name].status == "refused" and entries[name].result_dir is None
        assert other in entries[name].detail and "rename" in entries[name].detail
    assert entries["b.tif"].status == "not explained"
    assert entries["b.tif"].result_dir == (tmp_path / "results" / "b").resolve()


def test_slide_explain_the_cohort_and_the_app_name_result_folders_with_one_function(tmp_path):
    from lrp_captum.cohort import read_slides
    from lrp_captum.viewer.results import result_dir_for
    from lrp_captum.wsi.slide_files import ResultNameClash, result_name

    slides = tmp_path / "slides"
    for name in ("case_1.svs", "case.2.ome.tif", "notes.txt"):
        (slides / name).parent.mkdir(parents=True, exist_ok=True)
        (slides / name).write_bytes(b"x")
    cohort_ids = {s.path.name: s.slide_id for s in read_slides(slides)}
    for name, folder in (("case_1.svs", "case_1"), ("case.2.ome.tif", "case.2.ome")):
        assert result_name(slides / name) == folder == cohort_ids[name]
        assert result_dir_for(name, tmp_path / "results", slides_dir=slides) == (tmp_path / "results" / folder)
    (slides / "CASE_1.tif").write_bytes(b"x")  # the same folder on a case-insensitive file system
    with pytest.raises(ResultNameClash, match=r"case_1\.svs.*CASE_1\.tif|CASE_1\.tif.*case_1\.svs"):
        result_name(slides / "case_1.svs")


def test_a_folder_holding_another_slides_result_is_never_overwritten(same_stem, tiny_model, tmp_path):
    """What "Explain a.tif" in the app did: a run with overwrite into the folder of a.svs's result."""
    from lrp_captum.wsi.pipeline import explain_slide

    out = tmp_path / "results" / "a"
    explain_slide(same_stem / "a.svs", tiny_model, out, batch_size=64, threads=1, quiet=True)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with pytest.raises(FileExistsError, match=r"holds the result of another slide.*a\.svs"):
        explain_slide(same_stem / "a.tif", tiny_model, out, batch_size=64, threads=1, overwrite=True, quiet=True)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert json.loads((out / "manifest.json").read_text())["slide"]["path"] == str((same_stem / "a.svs").resolve())


# --- 22.2: one `slide explain` per output folder ---------------------------------------------------
def test_a_second_slide_explain_into_the_same_out_stops_naming_the_holder(tiny_model, tmp_path):
    from lrp_captum.demos.sample_slide import write_sample_slide

    slide = write_sample_slide(tmp_path / "big.tif", 2048, kind="tiff", seed=1)
    out = tmp_path / "out"
    argv = ["slide", "explain", str(slide), "--model", str(tiny_model), "--out", str(out), "--batch-size", "2",
            "--threads", "1", "--workers", "0", "--quiet"]
    first = subprocess.Popen([sys.executable, "-m", "lrp_captum.cli", *argv], cwd=ROOT,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not list((out / ".lrp_work").glob("batch_*.npz")):
            assert first.poll() is None and time.time() < deadline, "the first run never started its tiles"
            time.sleep(0.05)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = cli.main(argv)
        message = err.getvalue().strip()
        assert rc == 2 and len(message.splitlines()) == 1, message
        assert message.startswith("lrp-captum slide explain: error:") and "in use by another" in message
        assert f"pid {first.pid}" in message
        assert first.wait(timeout=600) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert (out / "manifest.json").is_file()
    assert not [p.name for p in out.rglob("*") if ".tmp-" in p.name]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".lock")]
