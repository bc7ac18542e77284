"""Cohorts on a real Ray: a local Ray with 2 CPUs, a worker killed mid-slide, reruns, and a
separately started `ray start --head` joined with --address. Every Ray process a test starts is
stopped by that test, also when it fails."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

# Ray on loopback only, for this process and the Ray processes it starts (set before Ray is imported)
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: F401  (the dev extra brings it; tests/conftest.py says so if missing)

from lrp_captum import cli  # noqa: E402
from lrp_captum.wsi.tile_relevance import DEFAULT_COMPOSITE  # noqa: E402
from lrp_captum.cli.cohort import explain_params  # noqa: E402
from lrp_captum.cohort import (CohortLock, CohortLockedError, CohortRayError, read_cohort_table,  # noqa: E402
                               read_slides, run_cohort)
from lrp_captum.demos.sample_slide import write_sample_slide  # noqa: E402
from lrp_captum.demos.slide_model import demo_model_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BATCH = 4
GOOD = ("big", "a", "b")


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    # a briefly trained demo model: these tests check the cohort machinery, not the classifier
    return demo_model_config(tmp_path_factory.mktemp("model"), n_train=256, n_val=64, epochs=2)


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    """Three sample slides (one large enough to be killed mid-way) and a truncated, corrupt one."""
    d = tmp_path_factory.mktemp("slides")
    write_sample_slide(d / "big.tif", 2048, kind="tiff", seed=1)
    write_sample_slide(d / "a.tif", 1024, kind="tiff", seed=2)
    write_sample_slide(d / "b.svs", 1024, kind="svs", seed=3)
    data = (d / "a.tif").read_bytes()
    (d / "corrupt.tif").write_bytes(data[: len(data) // 2])
    return d


def _cohort_args(slides: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return ["slide", "cohort", str(slides), "--out", str(out), "--model", str(model), "--batch-size", str(BATCH),
            "--quiet", *extra]


@pytest.fixture(scope="module")
def cohort(slides, demo_model, tmp_path_factory):
    """The 4 slides on a local Ray with 2 CPUs; the worker explaining 'big' is SIGKILLed mid-slide."""
    out = tmp_path_factory.mktemp("cohort") / "out"
    args = cli.build_parser().parse_args(_cohort_args(slides, out, demo_model))
    killed = {}

    def kill_mid_slide(snapshot):
        s = snapshot.get("big")
        if not killed and s and s.get("running") and 2 * BATCH <= s["done"] <= s["total"] - 4 * BATCH:
            killed.update(pid=s["pid"], done=s["done"], total=s["total"])
            os.kill(s["pid"], signal.SIGKILL)

    result = run_cohort(slides, out, params=explain_params(args), num_cpus=2, quiet=True,
                        on_progress=kill_mid_slide)
    return result, killed


@pytest.fixture(scope="module")
def serial(slides, demo_model, tmp_path_factory):
    """The same slides with `lrp-captum slide explain`, one after another, same threads and batches."""
    out = tmp_path_factory.mktemp("serial")
    for name in GOOD:
        path = next(slides.glob(f"{name}.*"))
        rc = cli.main(["slide", "explain", str(path), "--out", str(out / name), "--model", str(demo_model),
                       "--batch-size", str(BATCH), "--threads", "1", "--workers", "0", "--device", "cpu", "--quiet"])
        assert rc == 0
    return out


def test_three_slides_finish_and_the_corrupt_one_is_recorded_with_its_error(cohort):
    result, _ = cohort
    table = result.table.set_index("slide_id")
    assert sorted(table.index) == ["a", "b", "big", "corrupt"]
    assert list(table.loc[list(GOOD), "status"]) == ["done"] * 3
    assert table.loc["corrupt", "status"] == "failed"
    assert "corrupt.tif" in table.loc["corrupt", "error"] and "SlideReadError" in table.loc["corrupt", "error"]
    assert not (result.out_dir / "corrupt" / "manifest.json").exists()
    assert result.counts == {"done": 3, "failed": 1, "pending": 0}


def test_a_worker_killed_mid_slide_is_retried_and_resumes_from_the_slide_checkpoint(cohort):
    result, killed = cohort
    assert killed, "the big slide finished before its worker could be killed"
    row = result.table.set_index("slide_id").loc["big"]
    assert row["status"] == "done" and row["attempts"] == 2
    manifest = json.loads((result.out_dir / "big" / "manifest.json").read_text())
    # the retry explained only the tiles the killed attempt had not committed
    assert manifest["timings"]["tiles_explained_this_run"] <= manifest["n_tiles"] - killed["done"]


def test_cohort_outputs_are_byte_identical_to_a_serial_run(cohort, serial):
    result, _ = cohort
    for name in GOOD:
        a, b = result.out_dir / name, serial / name
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        assert not any(".lrp_work" in str(f) for f in files)
        for f in files:
            if f.name != "manifest.json":
                assert (a / f).read_bytes() == (b / f).read_bytes(), f"{name}/{f}"
        ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
        assert {k: v for k, v in ma.items() if k != "timings"} == {k: v for k, v in mb.items() if k != "timings"}


def test_cohort_table_summarises_each_slide_from_its_tiles(cohort):
    result, _ = cohort
    csv, parquet = pd.read_csv(result.out_dir / "cohort.csv"), pd.read_parquet(result.out_dir / "cohort.parquet")
    assert list(csv["slide_id"]) == list(parquet["slide_id"]) == ["a", "b", "big", "corrupt"]
    for name in GOOD:
        tiles = pd.read_csv(result.out_dir / name / "tiles.csv")
        row = parquet.set_index("slide_id").loc[name]
        assert row["n_tiles"] == len(tiles)
        shares = tiles["prediction"].value_counts(normalize=True)
        assert row["frac_positive"] == pytest.approx(shares.get("positive", 0.0))
        assert row["frac_negative"] + row["frac_positive"] == pytest.approx(1.0)
        assert row["prediction"] == shares.idxmax()
        assert row["relevance_sum"] == pytest.approx(tiles["relevance_sum"].sum())
        assert row["relevance_neg"] == pytest.approx(tiles["relevance_neg"].sum())
        assert row["device"] == "cpu" and row["seconds"] > 0 and row["host"] == socket.gethostname()


def test_cohort_manifest_records_parameters_resources_and_versions(cohort):
    result, _ = cohort
    m = json.loads((result.out_dir / "cohort.json").read_text())
    assert m["task"] == "explain" and m["n_slides"] == 4
    assert m["parameters"]["batch_size"] == BATCH and m["parameters"]["threads"] == 1
    assert m["parameters"]["composite"] == DEFAULT_COMPOSITE
    assert m["resources"]["cluster"]["CPU"] == 2 and m["resources"]["address"] == "local"
    assert m["versions"]["ray"] and m["versions"]["torch"]
    assert m["counts"] == {"done": 3, "failed": 1, "pending": 0}
    assert not (result.out_dir / "cohort.lock").exists()


def test_rerun_skips_finished_slides_and_redoes_only_what_is_missing(cohort, slides, demo_model, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(cohort[0].out_dir, out)
    shutil.rmtree(out / "a")
    stamps = {n: (out / n / "manifest.json").stat().st_mtime_ns for n in ("big", "b")}
    # as a user runs it: a fresh process, Ray's settings as the machine has them
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["PYTHONPATH"] = str(ROOT)
    rerun = subprocess.run([sys.executable, "-m", "lrp_captum.cli",
                            *_cohort_args(slides, out, demo_model, "--num-cpus", "2")],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 1, rerun.stderr  # the corrupt slide failed again
    assert "3 done, 1 failed of 4 slides" in rerun.stderr
    assert {n: (out / n / "manifest.json").stat().st_mtime_ns for n in ("big", "b")} == stamps
    assert (out / "a" / "manifest.json").is_file()
    m = json.loads((out / "cohort.json").read_text())
    assert m["resources"]["skipped_finished"] == 2
    assert m["resources"]["cluster"]["nodes"] == ["127.0.0.1"]  # the private local Ray listens on loopback


def test_rerun_of_a_finished_cohort_needs_no_ray(cohort, slides, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(cohort[0].out_dir, out)
    listed = tmp_path / "finished.csv"
    listed.write_text("path\n" + "\n".join(str(next(slides.glob(f"{n}.*"))) for n in GOOD) + "\n")
    params = json.loads((out / "cohort.json").read_text())["parameters"]
    # nothing listens at this address: contacting Ray at all would fail
    result = run_cohort(listed, out, params=params, address="127.0.0.1:1", quiet=True)
    assert result.counts == {"done": 3, "failed": 0, "pending": 0}


def test_a_local_ray_too_small_for_one_slide_is_refused_clearly(slides, demo_model, tmp_path):
    with pytest.raises(CohortRayError, match="1 GPU per slide but the cluster has 0"):
        run_cohort([read_slides(slides)[0]], tmp_path / "out", params=dict(model=str(demo_model)),
                   num_cpus=1, gpus_per_slide=1, quiet=True)
    assert not (tmp_path / "out" / "cohort.lock").exists()


# --- a separately started Ray head, joined with --address ---------------------------------------
def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


@pytest.fixture
def ray_head():
    """`ray start --head --block` in its own session, on loopback ports of its own; stopped after.

    It is stopped by signalling that one `ray start` (it drains and stops what it started), then
    any process left in its session is killed by PID -- never `ray stop`, which would stop every
    Ray on the machine.
    """
    temp = Path(tempfile.mkdtemp(prefix="lrpray"))  # short: Ray's unix socket paths must stay < 108 chars
    gcs, node, objects, agent, agent_grpc, runtime_env, metrics, dashboard, workers = _free_ports(9)
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--disable-usage-stats",
           "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--node-manager-port", str(node),
           "--object-manager-port", str(objects), "--dashboard-agent-listen-port", str(agent),
           "--dashboard-agent-grpc-port", str(agent_grpc), "--runtime-env-agent-port", str(runtime_env),
           "--metrics-export-port", str(metrics), "--dashboard-port", str(dashboard), "--include-dashboard",
           "false", "--min-worker-port", str(workers), "--max-worker-port", str(workers + 20), "--num-cpus", "2",
           "--object-store-memory", str(100 * 2**20), "--temp-dir", str(temp)]
    log = temp / "head.log"
    with open(log, "w") as f:
        head = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 180
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None, f"ray start failed:\n{log.read_text()[-3000:]}"
            assert time.time() < deadline, f"ray start did not come up:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield f"127.0.0.1:{gcs}", env, head
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        left = _session_pids(head.pid)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)
    assert not left, f"`ray start` left processes {left} running after it stopped"


def test_cohort_joins_a_running_cluster_with_address(ray_head, slides, demo_model, tmp_path):
    address, env, head = ray_head
    listed = tmp_path / "two.csv"
    listed.write_text(f"path,slide_id,label\n{slides / 'a.tif'},case-a,x\n{slides / 'b.svs'},case-b,y\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lrp_captum.cli", *_cohort_args(listed, out, demo_model, "--address", address)]
    run = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (out / "cohort.lock").exists() and run.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        # while that run works, a second run into the same folder is refused
        assert run.poll() is None, run.communicate()[1]
        with pytest.raises(CohortLockedError, match=f"pid {run.pid} on host"):
            CohortLock(out).acquire()
        _, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 0, err
    table = read_cohort_table(out)
    assert list(table["slide_id"]) == ["case-a", "case-b"] and list(table["label"]) == ["x", "y"]
    assert list(table["status"]) == ["done", "done"]
    m = json.loads((out / "cohort.json").read_text())
    assert m["resources"]["address"] == address and m["resources"]["cluster"]["CPU"] == 2
    assert head.poll() is None  # leaving a cluster does not stop it
