"""``explain_slide``: one self-contained, resumable call from a slide to an output folder.

Layout of ``out_dir`` (see docs/wsi.md):

- ``manifest.json`` -- written last; its presence means the run is complete.
- ``relevance.zarr`` -- zarr group: ``relevance`` (H, W) float32 at ``output_downsample`` level-0 px
  per pixel (0 where no tile or on glass), ``probability`` (C, H, W) float32 per class (NaN where
  no tile or on glass), ``tissue`` (H, W) uint8 tissue mask.
- ``overlay.tif`` -- colourised pyramidal TIFF of the relevance map (OpenSlide ``generic-tiff``).
- ``tiles.csv`` / ``tiles.parquet`` / ``tiles.geojson`` -- one row / feature per tissue tile.
- ``overview.png`` -- thumbnail, blended heatmap and colour legend.

While running, per-batch results are committed to ``out_dir/.lrp_work/`` (see
:mod:`lrp_captum.wsi.work`), so a killed run started again with the same arguments continues
where it stopped and produces the same files as an uninterrupted run.

The run is a sequence of named steps sharing one :class:`~lrp_captum.wsi.plan.SlideRun`:
:func:`~lrp_captum.wsi.plan.plan_run` (open the slide, load the model, find tissue, lay the
grid; nothing is written), :func:`~lrp_captum.wsi.work.explain_tiles` (per-batch results into
the work folder), :func:`~lrp_captum.wsi.stitch.stitch_relevance` (``relevance.zarr``), and from
:mod:`lrp_captum.wsi.result_folder` :func:`write_tile_tables` (CSV, Parquet, GeoJSON) and
:func:`write_images` (overlay, overview), all into a staging folder inside the work folder, then
:func:`publish_outputs` (moves them into ``out_dir``) and :func:`write_manifest`. All are
importable from this module. A run that fails therefore leaves no partial outputs:
only the work folder, from which the same command resumes.
"""
from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager

import torch

from lrp_captum.wsi.outputs import write_json
from lrp_captum.wsi.plan import DEFAULT_OVERLAP, SlideRun, check_options, default_output_downsample, plan_run
from lrp_captum.wsi.reader import SlideError
from lrp_captum.wsi.result_folder import OUTPUT_FILES, publish_outputs, write_images, write_manifest, write_tile_tables
from lrp_captum.wsi.stitch import stitch_relevance
from lrp_captum.wsi.work import WORK, check_out_dir, explain_tiles

__all__ = ["explain_slide", "SlideRun", "plan_run", "check_options", "explain_tiles", "stitch_relevance",
           "write_tile_tables", "write_images", "publish_outputs", "write_manifest", "DEFAULT_OVERLAP",
           "default_output_downsample", "OUTPUT_FILES", "WORK"]


def explain_slide(slide_path, model_config, out_dir, *, target="predicted", composite=None,
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
    composite : LRP composite name (``lrp_captum.list_composites()``); None (default) chooses by
        model: ``attnlrp_gamma`` when the model computes attention (a Vision Transformer), else
        ``epsilon_gamma_box`` (:func:`~lrp_captum.wsi.tile_relevance.default_composite`).
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
