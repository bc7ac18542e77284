"""The work folder of an unfinished run: tiles explained batch by batch (:func:`explain_tiles`),
each batch committed atomically and read back in order, and the check of what an output folder
already holds.

``out_dir/.lrp_work/`` holds ``state.json`` (the parameter hash of the run) and one
``batch_NNNNNN.npz`` per finished batch. A batch file that exists is complete (written under a
temporary name and renamed), so a killed run resumes from the batches it finds.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from lrp_captum.wsi.tile_relevance import TileExplainer
from lrp_captum.wsi.reader import SlideError, SlideTileDataset
from lrp_captum.wsi.stitch import resample

if TYPE_CHECKING:
    from lrp_captum.wsi.plan import SlideRun

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


def explain_tiles(run: SlideRun) -> None:
    """Explain the batches not yet committed to the work folder, committing each one.

    Each batch file holds ``tile_index`` (B,), ``probs`` (B, C), ``target`` (B,), the relevance
    sums ``relevance_sum/_pos/_neg`` (B,) over each tile's model-input pixels, and the tile maps
    area-resampled to their footprints in the output map (``maps`` flat, ``map_shapes``,
    ``map_offsets``). Sets ``timings`` ``tiles_s``, ``attribution_s``, ``tiles_explained_this_run``.
    """
    from tqdm.auto import tqdm

    n, batch_size, boxes = run.n_tiles, run.batch_size, run.boxes
    pending = [b for b in range(run.n_batches) if not batch_path(run.work, b).is_file()]
    done_tiles = done_before = n - sum(min(n, (b + 1) * batch_size) - b * batch_size for b in pending)
    num_workers = run.num_workers
    if num_workers is None:
        num_workers = min(4, max(0, (os.cpu_count() or 1) - 1))
    explainer = TileExplainer(run.bundle, run.composite, run.output_mode)
    t_loop = time.perf_counter()
    t_attr = 0.0
    if pending:
        loader = torch.utils.data.DataLoader(
            SlideTileDataset(run.slide_path, run.grid, run.tiles),
            batch_sampler=[list(range(b * batch_size, min(n, (b + 1) * batch_size))) for b in pending],
            num_workers=num_workers, pin_memory=run.bundle.device.type == "cuda")
        bar = tqdm(total=n, initial=done_tiles, unit="tile", desc=run.slide_path.name, disable=run.quiet,
                   dynamic_ncols=True, smoothing=0.1)
        try:
            for idx, batch in loader:
                ta = time.perf_counter()
                rel, probs, tgt = explainer.explain(batch, run.target)
                t_attr += time.perf_counter() - ta
                idx = idx.numpy()
                maps, shapes = _footprint_maps(rel, boxes[idx])
                offsets = np.concatenate([[0], np.cumsum([m.size for m in maps])[:-1]])
                save_batch(batch_path(run.work, idx[0] // batch_size), tile_index=idx,
                           probs=probs.astype(np.float32), target=tgt,
                           relevance_sum=rel.sum((1, 2), dtype=np.float64),
                           relevance_pos=np.clip(rel, 0, None).sum((1, 2), dtype=np.float64),
                           relevance_neg=np.clip(rel, None, 0).sum((1, 2), dtype=np.float64),
                           maps=np.concatenate(maps).astype(np.float32), map_shapes=np.array(shapes),
                           map_offsets=np.array(offsets))
                bar.update(len(idx))
                done_tiles += len(idx)
                if run.progress_callback is not None:
                    run.progress_callback(done_tiles, n)
        except SlideError as exc:
            raise type(exc)(_worker_message(str(exc))) from None
        finally:
            bar.close()
    run.timings["tiles_s"] = time.perf_counter() - t_loop
    run.timings["attribution_s"] = t_attr
    run.timings["tiles_explained_this_run"] = n - done_before


def _footprint_maps(rel: np.ndarray, boxes: np.ndarray) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Tile maps (B, h, w) area-resampled to their footprints ``boxes`` (B, 4): flat maps and shapes."""
    # footprints differ by at most a pixel (rounding): resample each size group at once
    sizes = [(int(b[3] - b[1]), int(b[2] - b[0])) for b in boxes]
    resampled = [None] * len(sizes)
    rel_t = torch.from_numpy(rel)[:, None]
    for size in set(sizes):
        js = [j for j, sz in enumerate(sizes) if sz == size]
        out_maps = resample(rel_t[js], *size)[:, 0].numpy()
        for k, j in enumerate(js):
            resampled[j] = out_maps[k]
    return [m.ravel() for m in resampled], sizes


def _worker_message(msg: str) -> str:
    """The original message of an error re-raised by a DataLoader worker (without its traceback)."""
    if "Original Traceback" in msg:
        last = msg.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return msg
