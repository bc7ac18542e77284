"""One run at a time per output folder: a lock file naming the process (PID, host) that holds it.

The lock is created complete or not at all (written under a temporary name, then hard-linked to
its final name, which fails if it exists), so a reader never sees a half-written lock. A lock
left behind by a process that is gone from this host is stale and taken over; a lock from
another host cannot be checked from here and is reported with what to do. ``slide explain``
holds ``OUT/explain.lock`` (:data:`EXPLAIN_LOCK`), a cohort ``OUT/cohort.lock``
(:class:`lrp_captum.cohort.lock.CohortLock`).
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

__all__ = ["FolderLock", "FolderLockedError", "EXPLAIN_LOCK", "process_start_ticks"]

EXPLAIN_LOCK = "explain.lock"


class FolderLockedError(RuntimeError):
    """Another run holds the output folder; the message names it and says what to do."""


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), to tell a reused PID from its first owner."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after its last ')'
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, ticks: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    now = process_start_ticks(pid)
    return ticks is None or now is None or now == ticks


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"
            + (f": {holder['command']}" if holder.get("command") else ""))


class FolderLock:
    """Exclusive hold on an output folder while a run writes to it.

    Use as a context manager; :meth:`acquire` raises ``error`` when a live run holds the folder.

    Parameters
    ----------
    out_dir : the output folder (created if missing).
    name : the lock file's name inside it.
    command : what the holder is doing, shown to a refused second run.
    what : what a holder is, in messages ("slide explanation", "cohort run").
    error : the exception raised when the folder is held (a :class:`FolderLockedError`).
    """

    def __init__(self, out_dir: str | Path, name: str = EXPLAIN_LOCK, command: str = "",
                 what: str = "slide explanation", error: type = FolderLockedError):
        self.path = Path(out_dir) / name
        self.command, self.what, self.error = command, what, error
        self.held = False

    def holder(self) -> dict | None:
        """The lock's content, ``{}`` if unreadable, None if there is no lock."""
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def _stale(self, holder: dict) -> bool:
        if not holder:
            # unreadable: a lock is never written in place, so this is damage, not a run starting
            return True
        if holder.get("host") != socket.gethostname():
            return False
        return not _alive(int(holder.get("pid", -1)), holder.get("start_ticks"))

    def acquire(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = dict(pid=os.getpid(), host=socket.gethostname(), start_ticks=process_start_ticks(os.getpid()),
                  started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), command=self.command)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(me))
        try:
            for _ in range(2):
                try:
                    os.link(tmp, self.path)
                    self.held = True
                    return self
                except FileExistsError:
                    holder = self.holder()
                    if holder is None:
                        continue  # released meanwhile
                    if not self._stale(holder):
                        raise self.error(
                            f"{self.path.parent} is in use by another {self.what} ({_describe(holder)}); wait for "
                            f"it to finish or choose another --out. If that run is gone, delete {self.path}"
                        ) from None
                    self.path.unlink(missing_ok=True)
            raise self.error(f"{self.path} keeps reappearing; another {self.what} is starting in "
                             f"{self.path.parent} at the same moment")
        finally:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            holder = self.holder()
            if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
