"""Run a per-slide task over a cohort on Ray: one Ray task per slide, local or on a cluster.

The same code path runs everywhere: with no address, :func:`run_cohort` starts a Ray instance
on this machine (and stops it at the end); with ``address="auto"`` or ``"HOST:PORT"`` it joins a
running cluster. Each slide is one Ray task asking for ``cpus_per_slide`` / ``gpus_per_slide``,
so Ray spreads slides over the cluster's cores and GPUs.

Faults: a slide whose task raises is recorded as failed with its message and the others go on;
a task whose worker process dies is retried by Ray (``max_retries``) and the task resumes from
the slide's own checkpoint; a slide whose record says done (same task, parameters and slide file)
is skipped by a rerun; a second run into the same folder is refused (:mod:`.lock`).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lrp_captum.provenance import versions
from lrp_captum.wsi.outputs import write_json
from lrp_captum.cohort.lock import CohortLock
from lrp_captum.cohort.progress import CohortBars, ProgressBoard, TaskReporter
from lrp_captum.cohort.slides import SlideSpec, read_slides
from lrp_captum.cohort.table import MANIFEST, cohort_table, read_record, write_cohort_table, write_record
from lrp_captum.cohort.tasks import EXPLAIN, SlideTask

TABLE_EVERY_S = 30.0  # rewrite the table this often during a run (records are written at once)


class CohortRayError(RuntimeError):
    """Ray could not be started or joined, or cannot run a slide; the message says what to do."""


@dataclass
class CohortResult:
    """What :func:`run_cohort` returns.

    Attributes
    ----------
    out_dir : the cohort folder.
    table : the cohort table (pandas DataFrame), as written to ``cohort.csv`` / ``cohort.parquet``.
    manifest : the cohort manifest, as written to ``cohort.json``.
    """

    out_dir: Path
    table: object
    manifest: dict

    @property
    def counts(self) -> dict:
        return {s: int((self.table["status"] == s).sum()) for s in ("done", "failed", "pending")}


def _one_line(exc: BaseException, limit: int = 1000) -> str:
    """``Type: message`` on one line, cut to ``limit`` characters (Ray's errors carry tracebacks).

    A folder that is already taken (``FileExistsError``) is said in plain words: its message says
    what is there and what to do, the exception's name adds nothing for the user.
    """
    text = " ".join(str(exc).split())
    if not (text and isinstance(exc, FileExistsError)):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def slide_key(task: SlideTask, params: dict, spec: SlideSpec) -> str:
    """Hash of what a slide's outputs depend on: the task, its parameters and the slide file.

    A slide counts as finished on a rerun only when its record carries the same key, so changed
    parameters or a replaced slide file run again.
    """
    try:
        st = spec.path.stat()
        stamp = [st.st_size, st.st_mtime_ns]
    except OSError:
        stamp = None
    kept = {k: v for k, v in params.items() if k not in task.run_only}
    blob = json.dumps(dict(task=task.name, params=kept, path=str(spec.path), stamp=stamp, mpp=spec.mpp),
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _run_one(task: SlideTask, spec: SlideSpec, out_dir: str, params: dict, board) -> dict:
    """Body of the Ray task for one slide: run it and return its record (never raises for the slide)."""
    import ray

    t0 = time.perf_counter()
    report = TaskReporter(board, spec.slide_id)
    gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
    try:
        fields = task.run(spec, Path(out_dir) / spec.slide_id, report, **params)
        status, error = "done", ""
    except Exception as exc:  # any failure of one slide is that slide's result, not the cohort's
        fields, status, error = {}, "failed", _one_line(exc)
    board.finished.remote(spec.slide_id)
    device = fields.pop("device", params.get("device", "cpu"))
    if device == "cuda" and gpus:
        device = "cuda:" + ",".join(str(g) for g in gpus)
    return dict(fields, status=status, error=error, seconds=round(time.perf_counter() - t0, 3), device=device,
                host=socket.gethostname(), pid=os.getpid(), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def _quiet_ray_logs() -> None:
    # Ray logs "started a local instance" and token-auth notices at INFO/WARNING on every start;
    # the cohort's own messages and bars are what a user needs to see
    for name in ("ray", "ray._private.authentication.authentication_token_setup"):
        logging.getLogger(name).setLevel(logging.ERROR)


def connect_ray(address: str | None, num_cpus: int | None = None, num_gpus: int | None = None) -> bool:
    """Start a local Ray (``address=None``) or join a cluster; True when this call started/joined it.

    Returns False when Ray was already initialised in this process (it is then left running).
    A local Ray started here listens on the loopback address only.
    """
    if not address and "ray" not in sys.modules:
        # Ray binds its services to the machine's network address unless this is off (its switch
        # for single-machine use); a private per-run instance has no reason to be reachable
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return False
    _quiet_ray_logs()
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address:
            if num_cpus is not None or num_gpus is not None:
                raise CohortRayError("--num-cpus/--num-gpus describe a local Ray; a cluster given with --address "
                                     "has its own resources")
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **kwargs)
    except CohortRayError:
        raise
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError ...
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        hint = (" Check the address (`ray status` on the head node prints it); if the cluster uses token "
                "authentication, set RAY_AUTH_MODE=token and the token (RAY_AUTH_TOKEN or ~/.ray/auth_token)."
                if address else "")
        raise CohortRayError(f"could not start or join {where}: {_one_line(exc)}.{hint}") from exc
    return True


@dataclass(frozen=True)
class RaySettings:
    """Where a cohort runs and what each slide's Ray task reserves (see :func:`run_cohort`)."""

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    cpus_per_slide: float = 1.0
    gpus_per_slide: float = 0.0
    max_retries: int = 3


def _check_resources(cpus: float, gpus: float, local: bool) -> None:
    """Refuse a local Ray that cannot fit one slide (its tasks would wait forever); warn for a cluster."""
    import ray

    have = ray.cluster_resources()
    short = [f"{need:g} {name} per slide but the cluster has {have.get(name, 0):g}"
             for name, need in (("CPU", cpus), ("GPU", gpus)) if need > have.get(name, 0)]
    if not short:
        return
    if local:
        raise CohortRayError("cannot run any slide: " + "; ".join(short) + ". Lower --cpus-per-slide / "
                             "--gpus-per-slide, or join a cluster that has them with --address")
    print("lrp-captum cohort: waiting for the cluster to provide " + "; ".join(short) +
          " (an autoscaler may add nodes)", file=sys.stderr)


def _manifest(task, params, specs, source, out, resources, started, counts=None, finished=None) -> dict:
    return dict(format="lrp_captum.cohort/1", task=task.name, source=str(source), n_slides=len(specs),
                parameters=params, resources=resources, started=started, finished=finished,
                counts=counts, versions=versions(extra=("ray",)))


def run_cohort(slides, out_dir, *, task: SlideTask = EXPLAIN, params: dict | None = None,
               address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
               cpus_per_slide: float = 1.0, gpus_per_slide: float = 0.0, max_retries: int = 3,
               quiet: bool = False, on_progress=None, manifest_extra: dict | None = None) -> CohortResult:
    """Run ``task`` on every slide of a cohort as Ray tasks, writing the cohort folder ``out_dir``.

    Parameters
    ----------
    slides : a folder, a CSV (see :mod:`.slides`) or a list of :class:`SlideSpec`.
    out_dir : the cohort folder; each slide writes to ``out_dir/<slide_id>/``. On a cluster it must be
        storage every node can write (a shared file system).
    task : the per-slide step (default: :data:`~lrp_captum.cohort.tasks.EXPLAIN`, ``explain_slide``).
    params : keyword arguments of ``task.run`` shared by all slides (JSON-able). For the explain task:
        ``model`` and the ``explain_slide`` options; ``device`` is set here from ``gpus_per_slide``.
    address : None to start a local Ray here, ``"auto"`` or ``"HOST:PORT"`` to join a cluster.
    num_cpus, num_gpus : resources of a local Ray (default: all of this machine's).
    cpus_per_slide, gpus_per_slide : Ray resources each slide's task asks for (fractions allowed).
    max_retries : times Ray reruns a slide whose worker process died.
    quiet : no progress bars.
    on_progress : ``on_progress(snapshot)`` in the driver about twice a second, with
        ``{slide_id: {"attempts", "pid", "host", "done", "total", "running"}}`` of started slides.
    manifest_extra : more entries for ``cohort.json`` (e.g. the command line).

    Returns
    -------
    :class:`CohortResult`. Slides that failed are rows with ``status="failed"`` and their error.

    Raises
    ------
    CohortInputError (bad slide list), CohortLockedError (another run holds ``out_dir``),
    CohortRayError (Ray cannot start, join or fit one slide).
    """
    specs = list(slides) if isinstance(slides, (list, tuple)) else read_slides(slides)
    source = slides if not isinstance(slides, (list, tuple)) else "list"
    out = Path(out_dir).resolve()
    params = dict(params or {})
    if task.for_resources is not None:
        params = dict(task.for_resources(cpus_per_slide, gpus_per_slide), **params)
    ray_settings = RaySettings(address, num_cpus, num_gpus, cpus_per_slide, gpus_per_slide, max_retries)
    with CohortLock(out, command=" ".join(sys.argv)):
        keys = {s.slide_id: slide_key(task, params, s) for s in specs}
        records = {s.slide_id: read_record(out, s.slide_id) for s in specs}
        todo = [s for s in specs if not (records[s.slide_id] and records[s.slide_id].get("status") == "done"
                                         and records[s.slide_id].get("key") == keys[s.slide_id]
                                         and task.complete(out / s.slide_id))]
        records = {k: v for k, v in records.items() if v is not None}
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        resources = dict(asdict(ray_settings), address=address or "local", skipped_finished=len(specs) - len(todo))
        write_json(out / MANIFEST, dict(_manifest(task, params, specs, source, out, resources, started),
                                        **(manifest_extra or {})))
        timings = {}
        try:
            if todo:
                resources["cluster"], timings = _run_on_ray(task, todo, out, params, keys, records, specs,
                                                            ray_settings, quiet, on_progress)
        finally:  # also when interrupted: the table then shows what finished and what is pending
            table = cohort_table(specs, records)
            write_cohort_table(out, table)
        counts = {s: int((table["status"] == s).sum()) for s in ("done", "failed", "pending")}
        manifest = dict(_manifest(task, params, specs, source, out, resources, started, counts,
                                  time.strftime("%Y-%m-%dT%H:%M:%S%z")), timings=timings, **(manifest_extra or {}))
        write_json(out / MANIFEST, manifest)
    return CohortResult(out, table, manifest)


def _run_on_ray(task, todo, out, params, keys, records, specs, rs: RaySettings, quiet,
                on_progress) -> tuple[dict, dict]:
    """Submit one Ray task per slide of ``todo``, record each in ``records`` (and on disk) as it ends.

    Returns the cluster's CPUs/GPUs, and ``timings``: seconds to start or join Ray, from the first
    submission to the last result, and to stop Ray (a cohort's fixed costs, docs/cohort.md).
    """
    t0 = time.perf_counter()
    connected_here = connect_ray(rs.address, rs.num_cpus, rs.num_gpus)  # before `import ray`: see there
    timings = dict(ray_start_s=time.perf_counter() - t0)
    import ray

    bars, board, pending = None, None, {}
    try:
        _check_resources(rs.cpus_per_slide, rs.gpus_per_slide, local=not rs.address)
        cluster = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}
        cluster["nodes"] = sorted(n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive"))
        board = ray.remote(num_cpus=0)(ProgressBoard).remote()
        remote = ray.remote(_run_one).options(num_cpus=rs.cpus_per_slide, num_gpus=rs.gpus_per_slide,
                                              max_retries=rs.max_retries, retry_exceptions=False)
        t0 = time.perf_counter()
        pending = {remote.remote(task, s, str(out), params, board): s for s in todo}
        bars = CohortBars(len(todo), quiet)
        last_table = time.monotonic()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0.5)
            snapshot = ray.get(board.snapshot.remote())
            for ref in ready:
                spec = pending.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the worker died more often than max_retries
                    record = dict(status="failed", error=_one_line(exc), finished_at=time.strftime(
                        "%Y-%m-%dT%H:%M:%S%z"))
                record.update(key=keys[spec.slide_id], attempts=snapshot.get(spec.slide_id, {}).get("attempts", 0))
                records[spec.slide_id] = record
                write_record(out, spec.slide_id, record)
                bars.slide_finished(spec.slide_id, record["status"], record.get("n_tiles", 0))
            bars.update_tiles(snapshot)
            if on_progress is not None:
                on_progress(snapshot)
            if time.monotonic() - last_table > TABLE_EVERY_S:
                write_cohort_table(out, cohort_table(specs, records))
                last_table = time.monotonic()
        timings["slides_s"] = time.perf_counter() - t0
        return cluster, timings  # ray_stop_s is added below, before the caller sees it
    finally:
        if bars is not None:
            bars.close()
        for ref in pending:  # interrupted (Ctrl-C or an error here): stop what is still running
            ray.cancel(ref, force=True)
        if board is not None:
            ray.kill(board)
        if connected_here:
            t0 = time.perf_counter()
            ray.shutdown()
            timings["ray_stop_s"] = time.perf_counter() - t0
