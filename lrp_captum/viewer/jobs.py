"""Background slide explanations started from the app, shared by all browser sessions.

One job per output folder: a second request for a slide that is already being explained joins
the running job instead of starting another (the pipeline is resumable, but two writers on one
folder would race). Jobs run in threads of the app's process so the page stays responsive and
polls :meth:`ExplainJob.snapshot` for its progress bar.
"""
from __future__ import annotations

import inspect
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

_PROGRESS_PARAMS = ("progress_callback", "on_progress")
WORK_DIR = ".lrp_work"  # lrp_captum.wsi.pipeline commits one batch_*.npz per finished batch here


def work_folder_progress(out_dir: Path) -> tuple[int, int] | None:
    """``(tiles done, tiles total)`` of a running :func:`explain_slide` from its work folder.

    The pipeline writes ``.lrp_work/state.json`` (``n_tiles``, ``batch_size``) and one
    ``batch_NNNNNN.npz`` per committed batch; None before the state file exists.
    """
    import json

    work = Path(out_dir) / WORK_DIR
    try:
        state = json.loads((work / "state.json").read_text())
        total, batch = int(state["n_tiles"]), int(state["batch_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    done = sum(1 for _ in work.glob("batch_*.npz")) * batch
    return min(done, total), total


@dataclass
class ExplainJob:
    slide_path: Path
    out_dir: Path
    state: str = "queued"   # queued, running, done, failed
    done: int = 0
    total: int = 0
    message: str = ""
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    callback: bool = False  # True when the explain function reports progress itself
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, done: int, total: int) -> None:
        with self._lock:
            self.done, self.total = int(done), int(total)

    def snapshot(self) -> dict:
        if self.state == "running" and not self.callback:
            polled = work_folder_progress(self.out_dir)
            if polled is not None:
                self.update(*polled)
        with self._lock:
            frac = self.done / self.total if self.total else 0.0
            end = self.finished or time.monotonic()
            return {"state": self.state, "done": self.done, "total": self.total, "fraction": min(1.0, frac),
                    "message": self.message, "elapsed_s": end - self.started}


def _progress_kwarg(fn: Callable) -> str | None:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    return next((p for p in _PROGRESS_PARAMS if p in params), None)


class ExplainJobs:
    """Registry of explanation jobs keyed by output folder.

    Parameters
    ----------
    explain_fn : callable, optional
        ``explain_fn(slide_path, model_config, out_dir, **options)``; defaults to
        :func:`lrp_captum.wsi.pipeline.explain_slide`. If it accepts ``progress_callback``
        (or ``on_progress``) a ``callback(done, total)`` is passed; otherwise progress is read
        from the pipeline's work folder (:func:`work_folder_progress`).
    """

    def __init__(self, explain_fn: Callable | None = None):
        self._explain_fn = explain_fn
        self._jobs: dict[str, ExplainJob] = {}
        self._lock = threading.Lock()

    def _fn(self) -> Callable:
        if self._explain_fn is None:
            from lrp_captum.wsi.pipeline import explain_slide

            self._explain_fn = explain_slide
        return self._explain_fn

    def get(self, out_dir: Path) -> ExplainJob | None:
        with self._lock:
            return self._jobs.get(str(Path(out_dir).resolve()))

    def start(self, slide_path: Path, model_config, out_dir: Path, **options) -> ExplainJob:
        """Start (or join) the job writing ``out_dir``; returns immediately."""
        key = str(Path(out_dir).resolve())
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.state in ("queued", "running"):
                return job
            job = ExplainJob(Path(slide_path), Path(out_dir))
            self._jobs[key] = job
        threading.Thread(target=self._run, args=(job, model_config, options), daemon=True,
                         name=f"explain-{Path(slide_path).name}").start()
        return job

    def _run(self, job: ExplainJob, model_config, options: dict) -> None:
        job.state = "running"
        try:
            fn = self._fn()
            kw = dict(options)
            name = _progress_kwarg(fn)
            if name:
                kw[name] = job.update
                job.callback = True
            fn(job.slide_path, model_config, job.out_dir, **kw)
            job.state = "done"
            if job.total:
                job.update(job.total, job.total)
        except Exception as exc:  # shown on the page; the traceback stays in the server log
            job.message = f"{type(exc).__name__}: {exc}"
            job.state = "failed"
            traceback.print_exc()
        finally:
            job.finished = time.monotonic()
