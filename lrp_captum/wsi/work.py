"""The work folder of an unfinished run: per-batch results committed atomically, read back in
order, and the check of what an output folder already holds.

``out_dir/.lrp_work/`` holds ``state.json`` (the parameter hash of the run) and one
``batch_NNNNNN.npz`` per finished batch. A batch file that exists is complete (written under a
temporary name and renamed), so a killed run resumes from the batches it finds.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np

WORK = ".lrp_work"


def batch_path(work: Path, b: int) -> Path:
    """The file of batch ``b`` (0-based) in the work folder ``work``."""
    return work / f"batch_{b:06d}.npz"


def save_batch(path: Path, **arrays) -> None:
    """Write ``arrays`` to ``path`` (``.npz``) under a temporary name, then rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # the rename is what makes a batch survive SIGKILL; no fsync, which only guards against
    # power loss and stalls every batch on a busy disk
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


class BatchStore:
    """Reads committed batch files, keeping the few most recent in memory.

    Parameters
    ----------
    work : the work folder.
    batch_size : tiles per batch (tile ``i`` is in batch ``i // batch_size``).
    keep : batches kept in memory.
    """

    def __init__(self, work: Path, batch_size: int, keep: int = 4):
        self.work, self.batch_size, self.keep = work, batch_size, keep
        self.cache: OrderedDict[int, dict] = OrderedDict()

    def batch(self, b: int) -> dict:
        """The arrays of batch ``b`` (``tile_index``, ``probs``, ``maps``, ...)."""
        if b not in self.cache:
            with np.load(batch_path(self.work, b)) as z:
                self.cache[b] = {k: z[k] for k in z.files}
            while len(self.cache) > self.keep:
                self.cache.popitem(last=False)
        self.cache.move_to_end(b)
        return self.cache[b]

    def tile_map(self, i: int) -> np.ndarray:
        """(oh, ow) float32 relevance of tile ``i`` at its footprint in the output map."""
        d = self.batch(i // self.batch_size)
        j = i - int(d["tile_index"][0])
        off, (h, w) = int(d["map_offsets"][j]), d["map_shapes"][j]
        return d["maps"][off:off + h * w].reshape(h, w)

    def probabilities(self, i: int) -> np.ndarray:
        """(C,) float32 class probabilities of tile ``i``."""
        return self.batch(i // self.batch_size)["probs"][i % self.batch_size]


def check_out_dir(out: Path, params_hash: str, overwrite: bool):
    """Returns the finished manifest if ``out`` already holds this exact run, else None.

    Raises ``FileExistsError`` when ``out`` holds a finished or unfinished run with other
    parameters (or a damaged manifest) and ``overwrite`` is False; with ``overwrite`` an
    unfinished run's work folder is discarded.
    """
    manifest = out / "manifest.json"
    if manifest.is_file():
        try:
            m = json.loads(manifest.read_text())
        except (ValueError, OSError) as exc:
            if not overwrite:
                raise FileExistsError(f"{manifest} is damaged ({exc}); pass overwrite=True "
                                      f"(CLI: --overwrite) to redo the run") from None
            m = {}
        if m.get("params_hash") == params_hash and not overwrite and all(
                (out / f).exists() for f in m.get("outputs", {}).values()):
            return m
        if not overwrite:
            raise FileExistsError(f"{out} already holds a finished run with other parameters; "
                                  f"choose another folder or pass overwrite=True (CLI: --overwrite)")
    state = out / WORK / "state.json"
    try:
        state_hash = json.loads(state.read_text()).get("params_hash") if state.is_file() else None
    except (ValueError, OSError):
        state_hash = "damaged"
    if state.is_file() and state_hash != params_hash:
        if not overwrite:
            raise FileExistsError(f"{out} holds an unfinished run with other parameters; rerun it with "
                                  f"its own arguments, or pass overwrite=True (CLI: --overwrite) to discard it")
        shutil.rmtree(out / WORK)
    return None
