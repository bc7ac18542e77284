"""``explain_slide``: one self-contained, resumable call from a slide to an output folder.

Layout of ``out_dir`` (see docs/wsi.md):

- ``manifest.json`` -- written last; its presence means the run is complete.
- ``relevance.zarr`` -- zarr group: ``relevance`` (H, W) float32 at ``output_downsample`` level-0 px
  per pixel (0 where no tile), ``probability`` (C, H, W) float32 per class (NaN where no tile).
- ``overlay.tif`` -- colourised pyramidal TIFF of the relevance map (OpenSlide ``generic-tiff``).
- ``tiles.csv`` / ``tiles.parquet`` / ``tiles.geojson`` -- one row / feature per tissue tile.
- ``overview.png`` -- thumbnail, blended heatmap and colour legend.

While running, per-batch results are committed to ``out_dir/.lrp_work/`` (see
:mod:`lrp_captum.wsi.work`), so a killed run started again with the same arguments continues
where it stopped and produces the same files as an uninterrupted run.

The run is a sequence of named steps sharing one :class:`SlideRun`: :func:`plan_run` (open the
slide, load the model, find tissue, lay the grid; nothing is written), :func:`explain_tiles`
(per-batch results into the work folder), :func:`stitch_relevance` (``relevance.zarr``),
:func:`write_tile_tables` (CSV, Parquet, GeoJSON), :func:`write_images` (overlay, overview), all
into a staging folder inside the work folder, then :func:`publish_outputs` (moves them into
``out_dir``) and :func:`write_manifest`. A run that fails therefore leaves no partial outputs:
only the work folder, from which the same command resumes.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..colormaps import SLIDE_CMAP
from .explain import DEFAULT_COMPOSITE, TileExplainer
from .grid import TileGrid, make_grid, tissue_tiles
from .model import ModelBundle, load_model
from .outputs import (atomic_path, write_geojson, write_json, write_overlay_tiff, write_overview_png,
                      write_table)
from .reader import EmptyTissueError, SlideError, SlideReadError, SlideTileDataset, open_slide, slide_mpp
from .stitch import footprints, resample, stitch_bands
from .tissue import TissueMask, detect_tissue, thumbnail_rgb
from .work import WORK, BatchStore, batch_path, check_out_dir, save_batch

OUTPUT_FILES = ("relevance.zarr", "overlay.tif", "tiles.csv", "tiles.parquet", "tiles.geojson", "overview.png")
BAND = 512
DEFAULT_OVERLAP = 0.125  # seam-free with the stitching window; cost measured in docs/wsi.md

# kept importable under their former names
_check_out_dir = check_out_dir


def default_output_downsample(tile_side0: float) -> int:
    """A power of two giving about 16 output pixels across one tile (level-0 px per output px)."""
    return int(2 ** max(0, round(math.log2(max(tile_side0 / 16, 1)))))


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for p in ("lrp-captum", "torch", "captum", "numpy", "openslide-python", "openslide-bin", "tifffile",
              "zarr", "scikit-image"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    try:
        import openslide

        out["libopenslide"] = openslide.__library_version__
    except Exception:  # noqa: BLE001 -- informational only
        pass
    return out


def _worker_message(msg: str) -> str:
    """The original message of an error re-raised by a DataLoader worker (without its traceback)."""
    if "Original Traceback" in msg:
        last = msg.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return msg


@dataclass
class SlideRun:
    """The state one :func:`explain_slide` call shares between its steps.

    Set by :func:`plan_run` (inputs and decisions) and completed by the steps (results).

    Attributes
    ----------
    slide_path, slide : the slide file and its open ``openslide.OpenSlide``.
    bundle : the tile classifier.
    grid, tissue, tiles : the tile grid, the tissue mask and the tissue tiles
        (:func:`~lrp_captum.wsi.grid.tissue_tiles`, level-0 boxes).
    out : the output folder.
    output_downsample : level-0 px per pixel of the relevance map.
    params, params_hash : everything that determines the outputs, and its SHA-256.
    composite, output_mode, target : the LRP settings.
    batch_size, num_workers : tiles per committed batch; DataLoader reader processes.
    quiet, progress_callback : progress reporting.
    mask_glass : no colour where the tissue mask says glass (see :func:`stitch_relevance`).
    cmap : diverging colour map of the overlay and overview (:mod:`lrp_captum.colormaps`).
    t_start : ``time.perf_counter()`` when the call started; ``timings`` (s) per step.
    vmax : colour scale of the maps (set by :func:`stitch_relevance`).
    heat, heat_downsample : the relevance map reduced for the overview PNG, and output px per
        heat px (set by :func:`stitch_relevance`).
    outputs : manifest key -> file name of the outputs written.
    predictions : (N,) predicted class index per tile (set by :func:`write_tile_tables`).
    relevance_on_glass : share of the stitched |R| that fell on glass (set by
        :func:`stitch_relevance` with ``mask_glass``).
    """

    slide_path: Path
    slide: Any
    bundle: ModelBundle
    grid: TileGrid
    tissue: TissueMask
    tiles: np.ndarray
    out: Path
    output_downsample: int
    params: dict
    params_hash: str
    composite: Any = DEFAULT_COMPOSITE
    output_mode: str = "logit"
    target: Any = "predicted"
    batch_size: int = 32
    num_workers: int | None = None
    quiet: bool = False
    progress_callback: Callable[[int, int], None] | None = None
    mask_glass: bool = True
    cmap: str = SLIDE_CMAP
    t_start: float = 0.0
    timings: dict = field(default_factory=dict)
    vmax: float = 1.0
    heat: np.ndarray | None = None
    heat_downsample: int = 1
    outputs: dict = field(default_factory=dict)
    predictions: np.ndarray | None = None
    relevance_on_glass: float | None = None

    @property
    def work(self) -> Path:
        """The work folder of per-batch results."""
        return self.out / WORK

    @property
    def stage(self) -> Path:
        """Where the output files are written before :func:`publish_outputs` moves them to ``out``."""
        return self.work / "outputs"

    @property
    def n_tiles(self) -> int:
        return len(self.tiles)

    @property
    def n_batches(self) -> int:
        return -(-self.n_tiles // self.batch_size)

    @property
    def map_shape(self) -> tuple[int, int]:
        """(H, W) of the relevance map in output pixels."""
        w0, h0 = self.slide.dimensions
        d = self.output_downsample
        return -(-h0 // d), -(-w0 // d)

    @cached_property
    def boxes(self) -> np.ndarray:
        """(N, 4) output-pixel footprints of the tiles (:func:`~lrp_captum.wsi.stitch.footprints`)."""
        return footprints(self.tiles, self.output_downsample)

    @cached_property
    def store(self) -> BatchStore:
        """Reader of the committed batches."""
        return BatchStore(self.work, self.batch_size)


def check_options(*, composite=DEFAULT_COMPOSITE, output_mode: str = "logit", mpp=None, tile_size=None,
                  overlap: float = 0.0, output_downsample=None, min_tissue: float = 0.1,
                  slide_mpp_override=None, batch_size: int = 32, num_workers=None, threads=None) -> None:
    """Raise ``ValueError`` naming the first option of :func:`explain_slide` that cannot work.

    Called before anything is opened or written, so a bad option costs nothing and leaves nothing.
    An unknown composite name raises :class:`lrp_captum.UnknownCompositeError` (a ``ValueError``
    listing the registered names).
    """
    from lrp_captum import OUTPUT_MODES, composite_needs_bounds

    if isinstance(composite, str):
        composite_needs_bounds(composite)
    if output_mode not in OUTPUT_MODES:
        raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")
    for name, value in (("mpp", mpp), ("slide_mpp", slide_mpp_override)):
        if value is not None and not (_is_number(value) and 0 < value < math.inf):
            raise ValueError(f"{name} must be a positive number of µm per pixel, got {value!r}")
    for name, value, low in (("tile_size", tile_size, 1), ("output_downsample", output_downsample, 1),
                             ("batch_size", batch_size, 1), ("num_workers", num_workers, 0),
                             ("threads", threads, 1)):
        if value is not None and not (_is_integer(value) and value >= low):
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (_is_number(overlap) and 0 <= overlap < 1):
        raise ValueError(f"overlap must be a fraction in [0, 1), got {overlap!r}")
    if not (_is_number(min_tissue) and 0 <= min_tissue <= 1):
        raise ValueError(f"min_tissue must be a fraction in [0, 1], got {min_tissue!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def plan_run(slide_path, model_config, out_dir, *, target="predicted", composite=DEFAULT_COMPOSITE,
             output_mode: str = "logit", mpp: float | None = None, tile_size: int | None = None,
             overlap: float = DEFAULT_OVERLAP, output_downsample: int | None = None, min_tissue: float = 0.1,
             tissue_options: dict | None = None, slide_mpp_override: float | None = None,
             batch_size: int = 32, num_workers: int | None = None, device: str = "auto",
             mask_glass: bool = True, quiet: bool = False, progress_callback=None) -> SlideRun:
    """Open the slide, load the model, find the tissue tiles and fix the parameters.

    Arguments as for :func:`explain_slide`. Nothing is written.

    Raises
    ------
    SlideReadError, MissingMppError, EmptyTissueError (all ``SlideError``), ``ValueError`` for an
    unknown target class.
    """
    t_start = time.perf_counter()
    check_options(composite=composite, output_mode=output_mode, mpp=mpp, tile_size=tile_size,
                  overlap=overlap, output_downsample=output_downsample, min_tissue=min_tissue,
                  slide_mpp_override=slide_mpp_override, batch_size=batch_size, num_workers=num_workers)
    slide_path = Path(slide_path)
    slide = open_slide(slide_path)
    mpp0 = slide_mpp(slide, slide_path, slide_mpp_override)
    bundle = model_config if isinstance(model_config, ModelBundle) else load_model(model_config, device)
    target_mpp = float(bundle.mpp if mpp is None else mpp)
    tile_size = int(bundle.tile_size if tile_size is None else tile_size)
    if target != "predicted":
        bundle.class_index(target)  # validate early
    try:
        tissue = detect_tissue(slide, slide_mpp=mpp0, **(tissue_options or {}))
    except SlideError:
        raise
    except Exception as exc:
        raise SlideReadError(f"slide {slide_path}: reading the thumbnail failed ({exc}); the file may be "
                             f"truncated or corrupt") from exc
    grid = make_grid(*slide.dimensions, mpp0, slide.level_downsamples, target_mpp=target_mpp,
                     tile_size=tile_size, overlap=overlap)
    tiles = tissue_tiles(grid, tissue, min_tissue)
    if len(tiles) == 0:
        raise EmptyTissueError(
            f"slide {slide_path}: no tissue tiles (tissue mask covers {100 * tissue.area_fraction:.2f} % "
            f"of the slide at saturation threshold {tissue.threshold:.3f}; min_tissue={min_tissue}). "
            f"Check the slide, or lower tissue_options['threshold'] / min_tissue (CLI: --tissue-threshold, "
            f"--min-tissue)")
    d_out = int(output_downsample if output_downsample is not None
                else default_output_downsample(tile_size * grid.scale))
    timings = {"open_tissue_grid_s": time.perf_counter() - t_start}

    st = slide_path.stat()
    params = dict(slide=dict(path=str(slide_path.resolve()), bytes=st.st_size, mtime_ns=st.st_mtime_ns),
                  model=dict(config={k: v for k, v in bundle.config.items()}, weights_sha256=bundle.weights_sha256),
                  target=target, composite=str(composite), output_mode=output_mode, target_mpp=target_mpp,
                  tile_size=tile_size, overlap=overlap, output_downsample=d_out, min_tissue=min_tissue,
                  tissue_options=tissue_options or {}, mask_glass=bool(mask_glass), slide_mpp=mpp0,
                  batch_size=batch_size,
                  device=bundle.device.type, torch_threads=torch.get_num_threads(), n_tiles=len(tiles),
                  tiles_sha256=hashlib.sha256(tiles.tobytes()).hexdigest())
    params_hash = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    return SlideRun(slide_path=slide_path, slide=slide, bundle=bundle, grid=grid, tissue=tissue, tiles=tiles,
                    out=Path(out_dir), output_downsample=d_out, params=params, params_hash=params_hash,
                    composite=composite, output_mode=output_mode, target=target, batch_size=batch_size,
                    num_workers=num_workers, quiet=quiet, progress_callback=progress_callback,
                    mask_glass=bool(mask_glass), t_start=t_start, timings=timings)


def explain_slide(slide_path, model_config, out_dir, *, target="predicted", composite=DEFAULT_COMPOSITE,
                  output_mode: str = "logit", mpp: float | None = None, tile_size: int | None = None,
                  overlap: float = DEFAULT_OVERLAP, output_downsample: int | None = None,
                  min_tissue: float = 0.1, tissue_options: dict | None = None, slide_mpp_override: float | None = None,
                  batch_size: int = 32, num_workers: int | None = None, device: str = "auto",
                  overwrite: bool = False, quiet: bool = False, keep_work: bool = False,
                  threads: int | None = None, progress_callback=None, mask_glass: bool = True) -> dict:
    """Explain every tissue tile of a slide and write slide-aligned outputs to ``out_dir``.

    Parameters
    ----------
    slide_path : any file OpenSlide opens.
    model_config : JSON config path or dict (see :mod:`lrp_captum.wsi.model`), or a ``ModelBundle``.
    out_dir : output folder (created). Rerunning with the same arguments resumes an interrupted
        run, or returns at once when the run is complete.
    target : ``"predicted"`` (per tile), a class index or a class name.
    composite : LRP composite name (``lrp_captum.list_composites()``).
    output_mode : ``"logit"``, ``"probability"`` or ``"contrastive"``.
    mpp, tile_size : tile resolution (µm/px) and side (px); default: the model's.
    overlap : fraction of a tile shared with each neighbour (0, 0.25, 0.5 ...), blended on stitching.
    output_downsample : level-0 px per pixel of the relevance map (default about 16 px per tile).
    min_tissue : minimum tissue fraction of a tile to be explained.
    tissue_options : passed to :func:`lrp_captum.wsi.tissue.detect_tissue` (``threshold``,
        ``min_saturation``, ``closing_px``, ``mask_mpp``, ...).
    slide_mpp_override : µm/px of level 0 for slides that do not record it.
    batch_size, num_workers, device : batching, DataLoader reader processes, ``auto|cpu|cuda``.
    overwrite : discard a finished or unfinished run with other parameters in ``out_dir``.
    quiet : no progress bar or messages.
    threads : torch CPU threads during the run (default: leave torch's setting). Outputs are
        reproducible for a given thread count; a resumed run should use the same.
    keep_work : keep the per-batch files in ``out_dir/.lrp_work`` after finishing.
    progress_callback : ``callback(done_tiles, total_tiles)`` after every committed batch (for apps).
    mask_glass : show no colour where the tissue mask says glass: relevance 0 and probability NaN
        there in ``relevance.zarr`` and the images; ``manifest.json`` then records the share of
        the stitched |R| that fell on glass (``relevance_on_glass``). Per-tile sums in the tables
        are the model's, unmasked.

    Returns
    -------
    The manifest dict (also written to ``out_dir/manifest.json``).

    Raises
    ------
    SlideReadError, MissingMppError, EmptyTissueError (all ``SlideError``, a ``ValueError``) with
    a message naming the file; ``out_dir`` is then left without outputs.
    """
    check_options(threads=threads)
    with _torch_threads(threads):
        run = plan_run(slide_path, model_config, out_dir, target=target, composite=composite,
                       output_mode=output_mode, mpp=mpp, tile_size=tile_size, overlap=overlap,
                       output_downsample=output_downsample, min_tissue=min_tissue,
                       tissue_options=tissue_options, slide_mpp_override=slide_mpp_override,
                       batch_size=batch_size, num_workers=num_workers, device=device, mask_glass=mask_glass,
                       quiet=quiet, progress_callback=progress_callback)
        return _run_steps(run, overwrite=overwrite, keep_work=keep_work)


@contextmanager
def _torch_threads(threads: int | None):
    """torch CPU threads set to ``threads`` inside the block (no change for None)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _run_steps(run: SlideRun, *, overwrite: bool, keep_work: bool) -> dict:
    """The steps of :func:`explain_slide` after planning: resume or skip, explain, write, clean up."""
    out, quiet = run.out, run.quiet
    done = check_out_dir(out, run.params_hash, overwrite) if out.exists() else None
    if done is not None:
        if not quiet:
            print(f"{out}: already complete (manifest.json matches these arguments)", file=sys.stderr)
        return done

    created_out = not out.exists()
    run.work.mkdir(parents=True, exist_ok=True)
    write_json(run.work / "state.json", dict(params_hash=run.params_hash, n_tiles=run.n_tiles,
                                             batch_size=run.batch_size))
    for leftover in run.work.glob(".*.tmp-*"):
        leftover.unlink()
    shutil.rmtree(run.stage, ignore_errors=True)  # outputs of an interrupted run are redone
    try:
        explain_tiles(run)
        stitch_relevance(run)
        write_tile_tables(run)
        write_images(run)
        publish_outputs(run)
        manifest = write_manifest(run)
    except BaseException as exc:
        # an unusable file, or a failure before any batch was committed: nothing to resume, so
        # leave nothing behind that could be mistaken for results or block a corrected rerun
        if isinstance(exc, SlideError) or not any(run.work.glob("batch_*.npz")):
            shutil.rmtree(run.work, ignore_errors=True)
            if created_out and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
        raise
    if not keep_work:
        shutil.rmtree(run.work, ignore_errors=True)
    return manifest


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


def stitch_relevance(run: SlideRun) -> None:
    """Stitch the committed tile maps into ``relevance.zarr``, band by band.

    With ``run.mask_glass``, pixels the tissue mask calls glass get relevance 0 and probability
    NaN (no colour on glass), and ``run.relevance_on_glass`` is the share of the stitched |R| they
    held. ``relevance.zarr/tissue`` (H, W) uint8 is the tissue mask at the map's resolution.
    Sets ``run.vmax`` (99.5th percentile of |relevance| on covered tissue pixels), ``run.heat``
    (the map block-averaged to at most about 1,024 px for the overview) and ``run.heat_downsample``.
    """
    import zarr

    t0 = time.perf_counter()
    run.stage.mkdir(parents=True, exist_ok=True)
    store = run.store
    H, W = run.map_shape
    C = len(run.bundle.classes)
    d = run.output_downsample
    f = int(2 ** max(0, math.ceil(math.log2(max(H, W) / 1024)))) if max(H, W) > 1024 else 1
    f = min(f, BAND)
    heat = np.zeros((-(-H // f), -(-W // f)), np.float32)
    stride = max(1, math.ceil(H * W / 1e6))
    samples = []
    abs_total = abs_glass = 0.0
    x_centres = (np.arange(W) + 0.5) * d  # level-0 px

    def fetch(i):
        m = store.tile_map(i)
        p = store.probabilities(i)
        return np.concatenate([m[None], np.broadcast_to(p[:, None, None], (C,) + m.shape)], 0)

    with atomic_path(run.stage / "relevance.zarr") as ztmp:
        group = zarr.open_group(str(ztmp), mode="w")
        zrel = group.create_array("relevance", shape=(H, W), chunks=(BAND, BAND), dtype="float32", fill_value=0.0)
        zprob = group.create_array("probability", shape=(C, H, W), chunks=(1, BAND, BAND), dtype="float32",
                                   fill_value=float("nan"))
        ztis = group.create_array("tissue", shape=(H, W), chunks=(BAND, BAND), dtype="uint8", fill_value=0)
        for y, band in stitch_bands(run.boxes, fetch, (H, W), 1 + C, run.grid.overlap, BAND):
            hb = band.shape[1]
            tissue = run.tissue.at(x_centres[None, :], ((np.arange(y, y + hb) + 0.5) * d)[:, None])
            rel = np.nan_to_num(band[0], nan=0.0)
            covered = ~np.isnan(band[0])
            if run.mask_glass:
                a = np.abs(rel[covered].astype(np.float64))
                abs_total += a.sum()
                abs_glass += a[~tissue[covered]].sum()
                rel[~tissue] = 0.0
                band[1:, ~tissue] = np.nan
                covered &= tissue
            zrel[y:y + hb, :] = rel
            zprob[:, y:y + hb, :] = band[1:]
            ztis[y:y + hb, :] = tissue
            samples.append(np.abs(rel[covered]).ravel()[::stride])
            pad = np.zeros((-(-hb // f) * f, heat.shape[1] * f), np.float32)
            pad[:hb, :W] = rel
            heat[y // f:y // f + pad.shape[0] // f] = pad.reshape(pad.shape[0] // f, f, -1, f).mean((1, 3))
        allv = np.concatenate(samples) if samples else np.zeros(0, np.float32)
        vmax = float(np.quantile(allv, 0.995)) if allv.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
        background = ("relevance 0 / probability NaN where no tissue tile"
                      + (" or where the tissue mask says glass" if run.mask_glass else ""))
        attrs = dict(output_downsample=d, level0_shape=list(run.slide.dimensions)[::-1],
                     mpp=run.params["slide_mpp"] * d, slide_mpp=run.params["slide_mpp"],
                     classes=run.bundle.classes, vmax=vmax,
                     relevance_unit="mean input relevance per model-input pixel (summed over RGB)",
                     background=background)
        group.attrs.update(attrs)
    run.vmax, run.heat, run.heat_downsample = vmax, heat, f
    run.relevance_on_glass = abs_glass / abs_total if run.mask_glass and abs_total > 0 else None
    run.timings["stitch_s"] = time.perf_counter() - t0


def write_tile_tables(run: SlideRun) -> None:
    """Write ``tiles.csv``, ``tiles.parquet`` (when pyarrow is installed) and ``tiles.geojson``.

    Sets ``run.predictions`` and the table entries of ``run.outputs``.
    """
    import pandas as pd

    t0 = time.perf_counter()
    tiles, grid, classes, n = run.tiles, run.grid, run.bundle.classes, run.n_tiles
    cols = {k: [] for k in ("probs", "target", "relevance_sum", "relevance_pos", "relevance_neg")}
    for b in range(run.n_batches):
        d = run.store.batch(b)
        for k in cols:
            cols[k].append(d[k])
    cols = {k: np.concatenate(v) for k, v in cols.items()}
    probs = cols["probs"]
    pred = probs.argmax(1)
    table = pd.DataFrame({
        "tile_index": np.arange(n), "row": tiles["row"], "col": tiles["col"],
        "x0": tiles["x0"], "y0": tiles["y0"], "w0": tiles["w0"], "h0": tiles["h0"],
        "level": grid.level, "level_downsample": grid.level_downsample, "target_mpp": grid.target_mpp,
        "tissue_fraction": tiles["tissue"].astype(np.float64),
        "prediction": [classes[i] for i in pred], "prediction_index": pred,
        "probability": probs[np.arange(n), pred].astype(np.float64),
        **{f"p_{c}": probs[:, k].astype(np.float64) for k, c in enumerate(classes)},
        "target": [classes[i] for i in cols["target"]],
        "relevance_sum": cols["relevance_sum"], "relevance_pos": cols["relevance_pos"],
        "relevance_neg": cols["relevance_neg"],
    })
    write_table(run.stage / "tiles.csv", table)
    try:
        write_table(run.stage / "tiles.parquet", table)
        parquet = True
    except ImportError:
        parquet = False
    write_geojson(run.stage / "tiles.geojson", table, classes)
    run.predictions = pred
    run.outputs.update(tiles_csv="tiles.csv", tiles_geojson="tiles.geojson")
    if parquet:
        run.outputs["tiles_parquet"] = "tiles.parquet"
    run.timings["outputs_s"] = time.perf_counter() - t0


def write_images(run: SlideRun) -> None:
    """Write ``overlay.tif`` (streamed from ``relevance.zarr``) and ``overview.png``."""
    import zarr

    t0 = time.perf_counter()
    zr = zarr.open_group(str(run.stage / "relevance.zarr"), mode="r")["relevance"]
    d_out = run.output_downsample
    write_overlay_tiff(run.stage / "overlay.tif", zr, mpp=run.params["slide_mpp"] * d_out, vmax=run.vmax,
                       cmap=run.cmap)
    thumb = thumbnail_rgb(run.slide, d_out * run.heat_downsample)
    heat = run.heat
    if thumb.shape[:2] != heat.shape:
        from PIL import Image

        thumb = np.asarray(Image.fromarray(thumb).resize((heat.shape[1], heat.shape[0]), Image.BILINEAR))
    title = (f"{run.slide_path.name}: {run.params['composite']} / {run.output_mode}, target {run.target}, "
             f"{run.n_tiles} tiles at {run.grid.target_mpp:g} µm/px")
    write_overview_png(run.stage / "overview.png", thumb, heat, run.vmax, title, cmap=run.cmap)
    run.timings["outputs_s"] = run.timings.get("outputs_s", 0.0) + time.perf_counter() - t0


def publish_outputs(run: SlideRun) -> None:
    """Move the staged output files into ``out``, replacing those of an earlier run.

    A finished run's ``manifest.json`` is removed first, so that ``out`` never looks complete
    while it holds a mix of old and new files; outputs of an earlier run that this run does not
    write are removed.
    """
    (run.out / "manifest.json").unlink(missing_ok=True)
    staged = {p.name for p in run.stage.iterdir()}
    for name in OUTPUT_FILES:
        if name not in staged and (run.out / name).exists():
            _remove_output(run.out / name)
    for name in sorted(staged):
        target = run.out / name
        if target.is_dir() and not target.is_symlink():
            aside = target.with_name(f".{name}.old-{os.getpid()}")
            os.replace(target, aside)
            os.replace(run.stage / name, target)
            shutil.rmtree(aside)
        else:
            os.replace(run.stage / name, target)


def _remove_output(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def write_manifest(run: SlideRun) -> dict:
    """Write ``manifest.json`` (last: its presence marks the run as complete) and return it."""
    run.timings["total_s"] = time.perf_counter() - run.t_start
    params, bundle, slide = run.params, run.bundle, run.slide
    outputs = {"relevance": "relevance.zarr", "overlay": "overlay.tif", "tiles_csv": "tiles.csv",
               "tiles_geojson": "tiles.geojson", "overview": "overview.png"}
    outputs.update({k: v for k, v in run.outputs.items() if k not in outputs})
    pred = run.predictions
    manifest = dict(
        format="lrp_captum.wsi/1", params_hash=run.params_hash, outputs=outputs,
        slide=dict(params["slide"], vendor=slide.properties.get("openslide.vendor"),
                   dimensions=list(slide.dimensions), level_downsamples=list(slide.level_downsamples),
                   mpp=params["slide_mpp"]),
        model=dict(params["model"], classes=bundle.classes, tile_size=bundle.tile_size, mpp=bundle.mpp),
        output_downsample=run.output_downsample, relevance_shape=list(run.map_shape),
        overlay_mpp=params["slide_mpp"] * run.output_downsample, vmax=run.vmax, colormap=run.cmap,
        relevance_on_glass=run.relevance_on_glass,
        grid=run.grid.to_dict(), n_tiles=run.n_tiles,
        tissue=dict(threshold=run.tissue.threshold, area_fraction=run.tissue.area_fraction,
                    mask_downsample=run.tissue.downsample, pen_fraction=run.tissue.pen_fraction),
        parameters={k: params[k] for k in ("target", "composite", "output_mode", "target_mpp", "tile_size",
                                           "overlap", "min_tissue", "tissue_options", "mask_glass",
                                           "batch_size", "device")},
        positive_tiles={c: int((pred == k).sum()) for k, c in enumerate(bundle.classes)},
        versions=_versions(), timings=run.timings,
    )
    write_json(run.out / "manifest.json", manifest)
    if not run.quiet:
        print(f"wrote {run.out} ({run.n_tiles} tiles, {run.timings['total_s']:.1f} s)", file=sys.stderr)
    return manifest
