"""Cohort inputs and bookkeeping without Ray: the slide list, the output-folder lock, the table,
the progress board, and the CLI's refusals (exit 2, one line, before any Ray starts)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lrp_captum import cli
from lrp_captum.cohort import (CohortInputError, CohortLock, CohortLockedError, CohortTableError, SlideSpec,
                               read_cohort_table, read_slides)
from lrp_captum.cohort.progress import ProgressBoard
from lrp_captum.cohort.table import cohort_table, write_cohort_table
from test_wsi_support import tiny_model_config


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folder_lists_its_slide_files_sorted_with_their_stems_as_ids(tmp_path):
    for name in ("b.svs", "a.tif", "notes.txt", ".hidden.tif", "sub/c.tif"):
        _touch(tmp_path / name)
    specs = read_slides(tmp_path)
    assert [(s.slide_id, s.path) for s in specs] == [("a", (tmp_path / "a.tif").resolve()),
                                                     ("b", (tmp_path / "b.svs").resolve())]


def test_csv_gives_ids_labels_and_per_slide_mpp_with_paths_relative_to_the_csv(tmp_path):
    _touch(tmp_path / "data" / "x.svs")
    csv = tmp_path / "cohort.csv"
    csv.write_text("path,slide_id,label,mpp\n"
                   "data/x.svs,case-1,tumour,0.25\n"
                   f"{tmp_path / 'elsewhere' / 'y.tif'},,,\n")
    specs = read_slides(csv)
    assert specs == [SlideSpec("case-1", (tmp_path / "data" / "x.svs").resolve(), "tumour", 0.25),
                     SlideSpec("y", (tmp_path / "elsewhere" / "y.tif").resolve(), None, None)]


@pytest.mark.parametrize("rows, message", [
    ("path\na.tif\nsub/a.tif\n", "slide_id 'a' is used by both"),
    ("path,slide_id\na.tif,../escape\n", "cannot be a folder name"),
    ("path,mpp\na.tif,fast\n", "line 2: mpp 'fast' is not a number"),
    ("path,mpp\na.tif,-1\n", "mpp must be a positive number"),
    ("path,mpp\na.tif,1e-300\n", "line 2: mpp must be a resolution from 0.01 to 1000"),
    ("file\na.tif\n", "has no 'path' column"),
    ("path\n", "lists no slides"),
])
def test_bad_csv_is_refused_naming_the_file_and_the_problem(tmp_path, rows, message):
    csv = tmp_path / "c.csv"
    csv.write_text(rows)
    with pytest.raises(CohortInputError, match=message) as info:
        read_slides(csv)
    assert str(csv) in str(info.value)


def test_missing_source_and_a_folder_without_slides_are_refused(tmp_path):
    with pytest.raises(CohortInputError, match="does not exist"):
        read_slides(tmp_path / "nope")
    with pytest.raises(CohortInputError, match="holds no slide files"):
        read_slides(tmp_path)


def test_same_stem_in_a_folder_asks_for_a_csv_with_slide_ids(tmp_path):
    _touch(tmp_path / "a.tif")
    _touch(tmp_path / "a.svs")
    with pytest.raises(CohortInputError, match="CSV with a unique slide_id"):
        read_slides(tmp_path)


# --- the lock ---------------------------------------------------------------------------------
@pytest.fixture
def live_process():
    """A real process on this host (a sleeping child), to hold a lock in another PID's name."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


def _write_lock(out: Path, **holder) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "cohort.lock").write_text(json.dumps(holder))
    return out / "cohort.lock"


def test_lock_is_held_during_the_run_and_removed_after(tmp_path):
    with CohortLock(tmp_path, command="test") as lock:
        holder = json.loads(lock.path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert not (tmp_path / "cohort.lock").exists()


def test_a_second_run_is_refused_while_a_live_process_holds_the_folder(tmp_path, live_process):
    from lrp_captum.wsi.folder_lock import process_start_ticks as _start_ticks

    _write_lock(tmp_path, pid=live_process.pid, host=socket.gethostname(),
                start_ticks=_start_ticks(live_process.pid), started="now", command="lrp-captum slide cohort x")
    with pytest.raises(CohortLockedError, match=rf"pid {live_process.pid} on host .*delete .*cohort\.lock"):
        CohortLock(tmp_path).acquire()
    assert json.loads((tmp_path / "cohort.lock").read_text())["pid"] == live_process.pid


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _write_lock(tmp_path, pid=int(dead.stdout), host=socket.gethostname(), start_ticks=None)
    with CohortLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_a_reused_pid_does_not_keep_a_stale_lock(tmp_path, live_process):
    # the PID is alive, but it is not the process that wrote the lock (its start time differs)
    _write_lock(tmp_path, pid=live_process.pid, host=socket.gethostname(), start_ticks=1)
    with CohortLock(tmp_path):
        pass


def test_a_lock_from_another_host_is_refused_since_it_cannot_be_checked(tmp_path):
    _write_lock(tmp_path, pid=1, host="other-node.example", start_ticks=1, started="yesterday")
    with pytest.raises(CohortLockedError, match="other-node.example"):
        CohortLock(tmp_path).acquire()


def test_cli_refuses_a_locked_folder_with_exit_2_and_one_line(tmp_path, live_process, capsys):
    from lrp_captum.wsi.folder_lock import process_start_ticks as _start_ticks
    from lrp_captum.demos.sample_slide import write_sample_slide

    slides = tmp_path / "slides"
    slides.mkdir()
    write_sample_slide(slides / "a.tif", 512, kind="tiff")
    out = tmp_path / "out"
    _write_lock(out, pid=live_process.pid, host=socket.gethostname(), start_ticks=_start_ticks(live_process.pid))
    model = tiny_model_config(tmp_path / "model")
    rc = cli.main(["slide", "cohort", str(slides), "--out", str(out), "--model", str(model), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("lrp-captum slide cohort: error:") and "in use by another cohort run" in err
    assert not (out / "a").exists()


def test_cli_refuses_a_missing_slide_list_and_a_missing_model(tmp_path, capsys):
    rc = cli.main(["slide", "cohort", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    (tmp_path / "s").mkdir()
    _touch(tmp_path / "s" / "a.tif")
    with pytest.raises(SystemExit) as refused:  # argparse's check of --model, before any work
        cli.main(["slide", "cohort", str(tmp_path / "s"), "--out", str(tmp_path / "o"), "--model",
                  str(tmp_path / "missing.json"), "--quiet"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "missing.json" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_cohort_passes_every_explain_option_as_slide_explain_does(tmp_path):
    """The explain options of `slide cohort` are those of `slide explain`, read back the same way:
    --no-mask-glass, --tissue-threshold, --overwrite ... reach each slide's explain_slide."""
    from lrp_captum.cli.cohort import explain_params
    from lrp_captum.cli.slide import explain_options

    (tmp_path / "s").mkdir()
    slide = _touch(tmp_path / "s" / "a.tif")
    model = tiny_model_config(tmp_path / "model")
    shared = ["--model", str(model), "--no-mask-glass", "--tissue-threshold", "0.2", "--overlap", "0.25",
              "--composite", "epsilon", "--batch-size", "4", "--keep-work", "--target", "1"]
    parser = cli.build_parser()
    explain = parser.parse_args(["slide", "explain", str(slide), "--out", str(tmp_path / "e")] + shared)
    cohort = parser.parse_args(["slide", "cohort", str(tmp_path / "s"), "--out", str(tmp_path / "c")] + shared)
    assert explain_options(cohort) == explain_options(explain)
    params = explain_params(cohort)
    assert params["mask_glass"] is False and params["tissue_options"] == {"threshold": 0.2}
    assert params["composite"] == "epsilon" and params["target"] == 1 and params["keep_work"] is True
    assert str(params["model"]) == str(model) and "threads" not in params  # None: from the slide's resources


# --- table and progress -------------------------------------------------------------------------
def test_table_has_one_row_per_slide_and_pending_for_slides_without_a_record(tmp_path):
    specs = [SlideSpec("a", tmp_path / "a.tif", "x"), SlideSpec("b", tmp_path / "b.tif")]
    records = {"a": dict(status="done", prediction="pos", frac_pos=1.0, n_tiles=3, key="k", pid=1)}
    table = cohort_table(specs, records)
    assert list(table["slide_id"]) == ["a", "b"] and list(table["status"]) == ["done", "pending"]
    assert "key" not in table.columns and "pid" not in table.columns
    assert list(table.columns[:5]) == ["slide_id", "status", "error", "label", "prediction"]
    write_cohort_table(tmp_path, table)
    pd.testing.assert_frame_equal(read_cohort_table(tmp_path)[["slide_id", "status", "n_tiles"]],
                                  pd.read_csv(tmp_path / "cohort.csv")[["slide_id", "status", "n_tiles"]])


def test_reading_a_folder_without_a_table_says_how_to_make_one(tmp_path):
    with pytest.raises(CohortTableError, match="slide cohort"):
        read_cohort_table(tmp_path)
    (tmp_path / "cohort.parquet").write_bytes(b"PAR1 damaged")
    with pytest.raises(CohortTableError, match=r"cohort\.parquet cannot be read"):
        read_cohort_table(tmp_path)


def test_progress_board_counts_attempts_per_slide():
    board = ProgressBoard()
    board.started("a", 10, "h")
    board.tiles("a", 8, 40)
    board.started("a", 11, "h")  # Ray reran it in a new worker
    snap = board.snapshot()["a"]
    assert (snap["attempts"], snap["pid"], snap["done"], snap["total"]) == (2, 11, 8, 40)
