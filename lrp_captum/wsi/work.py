"""The work folder of an unfinished run: tiles explained batch by batch (:func:`explain_tiles`),
each batch committed atomically and read back in order (:class:`TileResults`).

``out_dir/.lrp_work/`` holds ``state.json`` (the parameter hash of the run, its slide, the tile
and batch counts) and one ``batch_NNNNNN.npz`` per finished batch. A batch file that exists is
complete (written under a temporary name and renamed), so a killed run resumes from the batches
it finds.
"""
from __future__ import annotations

import os
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lrp_captum.wsi.outputs import write_json
from lrp_captum.wsi.reader import SlideError, SlideTileDataset
from lrp_captum.wsi.run_plan import WORK, SlidePlan
from lrp_captum.wsi.stitch import footprints, resample
from lrp_captum.wsi.tile_relevance import TileExplainer

__all__ = ["WORK", "batch_path", "save_batch", "BatchStore", "TileResults", "start_work_folder", "explain_tiles"]


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


@dataclass(frozen=True)
class TileResults:
    """The explained tiles of a run: its committed batches, and what explaining them took.

    Attributes
    ----------
    work : the work folder holding the batch files.
    batch_size, n_tiles : tiles per batch (tile ``i`` is in batch ``i // batch_size``) and in all.
    timings : ``tiles_s``, ``attribution_s`` (s) and ``tiles_explained_this_run``.
    """

    work: Path
    batch_size: int
    n_tiles: int
    timings: dict = field(default_factory=dict)

    @property
    def n_batches(self) -> int:
        return -(-self.n_tiles // self.batch_size)

    @cached_property
    def store(self) -> BatchStore:
        """Reader of the committed batches."""
        return BatchStore(self.work, self.batch_size)

    def columns(self, *keys: str) -> dict[str, np.ndarray]:
        """Per-tile arrays of the batch files (``probs`` (N, C), ``target`` (N,), ...), in tile order."""
        parts = {k: [] for k in keys}
        for b in range(self.n_batches):
            d = self.store.batch(b)
            for k in keys:
                parts[k].append(d[k])
        return {k: np.concatenate(v) for k, v in parts.items()}


def start_work_folder(plan: SlidePlan) -> None:
    """Create (or take up) the work folder of ``plan``: ``state.json``, no leftovers of a killed run.

    Committed batches stay (the run resumes from them); half-written files and staged outputs of
    an interrupted run go, the outputs are made again.
    """
    plan.work.mkdir(parents=True, exist_ok=True)
    write_json(plan.work / "state.json", dict(params_hash=plan.params_hash, n_tiles=plan.n_tiles,
                                              batch_size=plan.options.batch_size, slide=str(plan.slide_path.resolve()),
                                              parameters=plan.parameters))
    for leftover in plan.work.glob(".*.tmp-*"):
        leftover.unlink()
    shutil.rmtree(plan.stage, ignore_errors=True)


def explain_tiles(plan: SlidePlan, *, progress_callback: Callable[[int, int], None] | None = None) -> TileResults:
    """Explain the batches of ``plan`` not yet committed to its work folder, committing each one.

    Each batch file holds ``tile_index`` (B,), ``probs`` (B, C), ``target`` (B,), the relevance
    sums ``relevance_sum/_pos/_neg`` (B,) over each tile's model-input pixels, and the tile maps
    area-resampled to their footprints in the output map (``maps`` flat, ``map_shapes``,
    ``map_offsets``). ``progress_callback(done_tiles, total_tiles)`` follows every committed batch.
    """
    from tqdm.auto import tqdm

    options = plan.options
    n, batch_size = plan.n_tiles, options.batch_size
    boxes = footprints(plan.tiles, plan.output_downsample)
    pending = [b for b in range(plan.n_batches) if not batch_path(plan.work, b).is_file()]
    done_tiles = done_before = n - sum(min(n, (b + 1) * batch_size) - b * batch_size for b in pending)
    num_workers = options.num_workers
    if num_workers is None:
        num_workers = min(4, max(0, (os.cpu_count() or 1) - 1))
    explainer = TileExplainer(plan.bundle, plan.composite, options.output_mode)
    t_loop = time.perf_counter()
    t_attr = 0.0
    if pending:
        loader = torch.utils.data.DataLoader(
            SlideTileDataset(plan.slide_path, plan.grid, plan.tiles),
            batch_sampler=[list(range(b * batch_size, min(n, (b + 1) * batch_size))) for b in pending],
            num_workers=num_workers, pin_memory=plan.bundle.device.type == "cuda")
        bar = tqdm(total=n, initial=done_tiles, unit="tile", desc=plan.slide_path.name, disable=options.quiet,
                   dynamic_ncols=True, smoothing=0.1)
        try:
            for idx, batch in loader:
                ta = time.perf_counter()
                rel, probs, tgt = explainer.explain(batch, options.target)
                t_attr += time.perf_counter() - ta
                idx = idx.numpy()
                maps, shapes = _footprint_maps(rel, boxes[idx])
                offsets = np.concatenate([[0], np.cumsum([m.size for m in maps])[:-1]])
                save_batch(batch_path(plan.work, idx[0] // batch_size), tile_index=idx,
                           probs=probs.astype(np.float32), target=tgt,
                           relevance_sum=rel.sum((1, 2), dtype=np.float64),
                           relevance_pos=np.clip(rel, 0, None).sum((1, 2), dtype=np.float64),
                           relevance_neg=np.clip(rel, None, 0).sum((1, 2), dtype=np.float64),
                           maps=np.concatenate(maps).astype(np.float32), map_shapes=np.array(shapes),
                           map_offsets=np.array(offsets))
                bar.update(len(idx))
                done_tiles += len(idx)
                if progress_callback is not None:
                    progress_callback(done_tiles, n)
        except SlideError as exc:
            raise type(exc)(_worker_message(str(exc))) from None
        finally:
            bar.close()
    timings = dict(tiles_s=time.perf_counter() - t_loop, attribution_s=t_attr, tiles_explained_this_run=n - done_before)
    return TileResults(plan.work, batch_size, n, timings)


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
