"""One cohort run per output folder: ``OUT/cohort.lock`` names the process (PID, host) that holds it.

The mechanism is :class:`lrp_captum.wsi.folder_lock.FolderLock`, the lock ``slide explain`` takes
on its output folder: created complete or not at all, taken over when its holder is gone from
this host, reported with what to do when it is alive or on another host.
"""
from __future__ import annotations

from pathlib import Path

from lrp_captum.wsi.folder_lock import FolderLock, FolderLockedError

LOCK_NAME = "cohort.lock"


class CohortLockedError(FolderLockedError):
    """Another cohort run holds the output folder; the message names it and says what to do."""


class CohortLock(FolderLock):
    """Exclusive hold on a cohort output folder while a run writes to it.

    Use as a context manager; :meth:`acquire` raises :class:`CohortLockedError` when a live run
    holds the folder.

    Parameters
    ----------
    out_dir : the cohort's output folder (created if missing).
    command : what the holder is doing, shown to a refused second run.
    """

    def __init__(self, out_dir: str | Path, command: str = ""):
        super().__init__(out_dir, LOCK_NAME, command, what="cohort run", error=CohortLockedError)
