"""Progress of a cohort: a Ray actor that tasks report to, and the driver's bars over slides and tiles.

Tasks run anywhere in the cluster, so their tile counts travel through a small actor
(:class:`ProgressBoard`, no CPU reserved) that the driver polls; the driver draws two tqdm bars,
slides finished and tiles explained.
"""
from __future__ import annotations

import os
import socket
import time


class ProgressBoard:
    """Per-slide state as reported by tasks: attempts, worker PID and host, tiles done/total.

    Wrapped with ``ray.remote`` by the runner; plain Python so it is testable without Ray.
    """

    def __init__(self):
        self.slides: dict[str, dict] = {}

    def started(self, slide_id: str, pid: int, host: str) -> None:
        s = self.slides.setdefault(slide_id, dict(attempts=0, done=0, total=0))
        s.update(attempts=s["attempts"] + 1, pid=pid, host=host, running=True)

    def tiles(self, slide_id: str, done: int, total: int) -> None:
        s = self.slides.setdefault(slide_id, dict(attempts=0, done=0, total=0))
        s.update(done=int(done), total=int(total))

    def finished(self, slide_id: str) -> None:
        if slide_id in self.slides:
            self.slides[slide_id]["running"] = False

    def snapshot(self) -> dict[str, dict]:
        return {k: dict(v) for k, v in self.slides.items()}


class TaskReporter:
    """The ``report(done, total)`` callable handed to a slide task inside a Ray worker.

    Sends at most one update per ``every_s`` seconds (plus the last one), so a fast GPU worker
    does not flood the board with one message per batch.
    """

    def __init__(self, board, slide_id: str, every_s: float = 0.5):
        self.board, self.slide_id, self.every_s = board, slide_id, every_s
        self._last = 0.0
        board.started.remote(slide_id, os.getpid(), socket.gethostname())

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - self._last >= self.every_s:
            self._last = now
            self.board.tiles.remote(self.slide_id, done, total)


class CohortBars:
    """Two tqdm bars on stderr: slides (done / failed) and tiles (over slides started so far).

    Parameters
    ----------
    n_slides : slides this run processes (finished slides that are skipped are not counted).
    quiet : draw nothing.
    """

    def __init__(self, n_slides: int, quiet: bool = False):
        from tqdm.auto import tqdm

        self.slides = tqdm(total=n_slides, desc="slides", unit="slide", position=0, disable=quiet,
                           dynamic_ncols=True)
        self.tiles = tqdm(total=0, desc="tiles", unit="tile", position=1, disable=quiet, dynamic_ncols=True,
                          smoothing=0.1)
        self.failed = 0
        self._finished: dict[str, int] = {}

    def slide_finished(self, slide_id: str, status: str, n_tiles: int = 0) -> None:
        self.failed += status != "done"
        self._finished[slide_id] = int(n_tiles or 0)
        self.slides.set_postfix_str(f"failed {self.failed}" if self.failed else "", refresh=False)
        self.slides.update(1)

    def update_tiles(self, snapshot: dict[str, dict]) -> None:
        done = total = 0
        for slide_id, s in snapshot.items():
            if slide_id in self._finished:
                # a finished slide counts all its tiles, a failed one none (whatever it reported)
                n = self._finished[slide_id]
                done, total = done + n, total + n
            else:
                done, total = done + s.get("done", 0), total + s.get("total", 0)
        self.tiles.total = max(total, done)
        self.tiles.n = done
        self.tiles.refresh()

    def close(self) -> None:
        self.tiles.close()
        self.slides.close()
