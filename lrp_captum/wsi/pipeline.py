"""``explain_slide``: one self-contained, resumable call from a slide to an output folder.

Layout of ``out_dir`` (see docs/wsi.md):

- ``manifest.json`` -- written last; its presence means the run is complete.
- ``relevance.zarr`` -- zarr group: ``relevance`` (H, W) float32 at ``output_downsample`` level-0 px
  per pixel (0 where no tile or on glass), ``probability`` (C, H, W) float32 per class (NaN where
  no tile or on glass), ``tissue`` (H, W) uint8 tissue mask.
- ``overlay.tif`` -- colourised pyramidal TIFF of the relevance map (OpenSlide ``generic-tiff``).
- ``tiles.csv`` / ``tiles.parquet`` / ``tiles.geojson`` -- one row / feature per tissue tile.
- ``overview.png`` -- thumbnail, blended heatmap and colour legend.

While running, ``out_dir/explain.lock`` names the process that writes the folder (a second run
into it stops at once), and per-batch results are committed to ``out_dir/.lrp_work/`` (see
:mod:`lrp_captum.wsi.work`), so a killed run started again with the same arguments continues
where it stopped and produces the same files as an uninterrupted run.

The run is a sequence of steps, each taking what it needs and returning what it made:
:func:`plan_slide_run` (open the slide, load the model, find tissue, lay the grid, fix the
parameters; nothing is written) returns a frozen :class:`SlidePlan`;
:func:`explain_tiles` (per-batch results into the work folder) returns the
:class:`TileResults`; :func:`stitch_relevance` (``relevance.zarr``) the :class:`RelevanceMap`
(colour scale, overview map); :func:`write_tile_tables` (CSV, Parquet, GeoJSON) the
:class:`TileTables` (predictions); :func:`write_images` (overlay, overview) needs the relevance
map. All write into a staging folder inside the work folder; then :func:`publish_outputs` moves
the files into ``out_dir`` and :func:`write_manifest` writes :func:`slide_manifest`. All are
importable from this module. A run that fails therefore leaves no partial outputs: only the
work folder, from which the same command resumes.
"""
from __future__ import annotations

import inspect
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from lrp_captum.wsi.reader import SlideError
from lrp_captum.wsi.relevance_map import RelevanceMap, stitch_relevance
from lrp_captum.wsi.result_folder import OUTPUT_FILES, TileTables, check_out_dir, finished_run, \
    holding_result_folder, publish_outputs, slide_manifest, write_images, write_manifest, write_tile_tables
from lrp_captum.wsi.run_plan import WORK, SlidePlan, default_output_downsample, plan_slide_run
from lrp_captum.wsi.slide_options import DEFAULT_OVERLAP, SLIDE_OPTIONS, SlideOptions, check_options, \
    keyword_parameters
from lrp_captum.wsi.work import TileResults, explain_tiles, start_work_folder
from lrp_captum.wording import counted

__all__ = ["explain_slide", "SlideOptions", "SlidePlan", "plan_slide_run", "check_options", "explain_tiles",
           "TileResults", "stitch_relevance", "RelevanceMap", "write_tile_tables", "TileTables", "write_images",
           "publish_outputs", "slide_manifest", "write_manifest", "check_out_dir", "DEFAULT_OVERLAP",
           "default_output_downsample", "OUTPUT_FILES", "WORK"]


def explain_slide(slide_path, model_config, out_dir, options: SlideOptions | dict | None = None, *,
                  progress_callback=None, lock: bool = True, **kwargs) -> dict:
    """Explain every tissue tile of a slide and write slide-aligned outputs to ``out_dir``.

    Parameters
    ----------
    slide_path : any file OpenSlide opens.
    model_config : JSON config path or dict (see :mod:`lrp_captum.wsi.model`), or a ``ModelBundle``.
    out_dir : output folder (created). Rerunning with the same arguments resumes an interrupted
        run, or returns at once when the run is complete. A folder that holds another slide's
        result is refused, ``overwrite`` or not.
    options : a :class:`~lrp_captum.wsi.slide_options.SlideOptions` (or a dict of options);
        keyword arguments are the same options and take precedence. All options, with their
        defaults and meaning, are the table :data:`~lrp_captum.wsi.slide_options.SLIDE_OPTIONS`
        (``lrp-captum slide explain --help`` prints it); the main ones:

        - ``target`` : ``"predicted"`` (per tile), a class index or a class name;
        - ``composite`` : LRP composite name; None (default) chooses by model:
          ``attnlrp_gamma`` for a model that computes attention, else ``epsilon_gamma_box``;
        - ``output_mode`` : ``"logit"``, ``"probability"`` or ``"contrastive"``;
        - ``mpp``, ``tile_size`` : tile resolution (µm/px) and side (px); default: the model's;
        - ``overlap`` : fraction of a tile shared with each neighbour, blended on stitching;
        - ``output_downsample`` : level-0 px per pixel of the relevance map (about 16 px per tile);
        - ``min_tissue``, ``tissue_options`` : tiling (options of
          :func:`~lrp_captum.wsi.tissue.detect_tissue`); ``slide_mpp_override`` : µm/px of level 0
          for slides that do not record it;
        - ``mask_glass`` : no colour where the tissue mask says glass (relevance 0, probability
          NaN there; ``manifest.json`` records the share of |R| that fell on glass,
          ``relevance_on_glass``). Per-tile sums in the tables are the model's, unmasked;
        - ``batch_size``, ``num_workers``, ``device``, ``threads`` : batching, DataLoader reader
          processes, ``auto|cpu|cuda``, torch CPU threads (outputs are reproducible for a given
          thread count; a resumed run should use the same);
        - ``overwrite`` (discard a finished or unfinished run with other parameters),
          ``keep_work`` (keep ``.lrp_work``), ``quiet`` (no progress bar or messages).
    progress_callback : ``callback(done_tiles, total_tiles)`` after every committed batch (for apps).
    lock : hold ``out_dir/explain.lock`` while running (a second run into ``out_dir`` stops with
        :class:`~lrp_captum.wsi.folder_lock.FolderLockedError` naming this one); False only where
        the caller holds the folder already (the cohort runner holds the cohort's folder).

    Returns
    -------
    The manifest dict (also written to ``out_dir/manifest.json``).

    Raises
    ------
    ``ValueError`` naming a bad option (``TypeError`` for an unknown one) before anything is
    opened; SlideReadError, MissingMppError, EmptyTissueError (all ``SlideError``, a
    ``ValueError``) with a message naming the file; ``FileExistsError`` for a folder holding
    another run; ``out_dir`` is then left without outputs.
    """
    options = SlideOptions(options, **kwargs)
    slide_path = Path(slide_path)
    with _torch_threads(options.threads), holding_result_folder(Path(out_dir), slide_path, lock=lock):
        plan = plan_slide_run(slide_path, model_config, out_dir, options)
        return _run_steps(plan, progress_callback)


explain_slide.__signature__ = inspect.Signature([
    *list(inspect.signature(explain_slide).parameters.values())[:4],
    *keyword_parameters(SLIDE_OPTIONS),
    inspect.Parameter("progress_callback", inspect.Parameter.KEYWORD_ONLY, default=None),
    inspect.Parameter("lock", inspect.Parameter.KEYWORD_ONLY, default=True)])


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


def _run_steps(plan: SlidePlan, progress_callback) -> dict:
    """The steps of :func:`explain_slide` after planning: resume or skip, explain, write, clean up."""
    options = plan.options
    done = finished_run(plan.out, plan.params_hash, options.overwrite, options.quiet, plan.parameters)
    if done is not None:
        return done
    start_work_folder(plan)
    try:
        tiles = explain_tiles(plan, progress_callback=progress_callback)
        relevance = stitch_relevance(plan, tiles, plan.stage)
        tables = write_tile_tables(plan, tiles, plan.stage)
        images_s = write_images(plan, relevance, plan.stage)
        publish_outputs(plan.stage, plan.out, OUTPUT_FILES)
        manifest = write_manifest(plan.out, slide_manifest(plan, tiles, relevance, tables, images_s))
    except BaseException as exc:
        # an unusable file, or a failure before any batch was committed: nothing to resume, so
        # leave nothing behind that could be mistaken for results or block a corrected rerun
        if isinstance(exc, SlideError) or not any(plan.work.glob("batch_*.npz")):
            shutil.rmtree(plan.work, ignore_errors=True)
        raise
    if not options.keep_work:
        shutil.rmtree(plan.work, ignore_errors=True)
    if not options.quiet:
        print(f"wrote {plan.out} ({counted(plan.n_tiles, 'tile')}, {manifest['timings']['total_s']:.1f} s)",
              file=sys.stderr)
    return manifest
