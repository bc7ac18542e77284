"""The result folder of an explained slide, shared by ``explain_slide`` and ``explain_mil_slide``.

Both runs go the same way through a folder: hold it (:func:`holding_result_folder`: the lock,
and never a folder that holds another slide's result), decide whether it already holds this run
(:func:`check_out_dir`: finished, damaged, or other parameters), write every file into a staging
folder (the tables, the pyramidal TIFF, the overview), move them into place
(:func:`publish_outputs`) and write the manifest last (:func:`write_manifest`, with the versions
of the packages that made it). This module also holds the slide pipeline's own table and image
steps (:func:`write_tile_tables`, :func:`write_images`, :func:`slide_manifest`).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrp_captum.provenance import versions
from lrp_captum.wsi.folder_lock import EXPLAIN_LOCK, FolderLock
from lrp_captum.wsi.outputs import remove_path, replace_path, write_geojson, write_json, write_overlay_tiff, \
    write_overview_png, write_table
from lrp_captum.wsi.relevance_map import RelevanceMap
from lrp_captum.wsi.run_plan import WORK, SlidePlan
from lrp_captum.wsi.tissue import thumbnail_rgb
from lrp_captum.wsi.work import TileResults

OUTPUT_FILES = ("relevance.zarr", "overlay.tif", "tiles.csv", "tiles.parquet", "tiles.geojson", "overview.png")


# --- holding a folder, and what it already holds ---------------------------------------------------
def _recorded_slides(out: Path) -> list[str]:
    """The slide files a finished (``manifest.json``) or unfinished (``.lrp_work/state.json``) run
    in ``out`` records; unreadable records say nothing."""
    found = []
    for path, key in ((out / "manifest.json", ("slide", "path")), (out / WORK / "state.json", ("slide",))):
        try:
            value = json.loads(path.read_text())
            for k in key:
                value = value[k]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(value, str):
            found.append(value)
    return found


def check_result_owner(out: Path, slide_path: Path) -> None:
    """Raise ``FileExistsError`` when ``out`` holds the result (or unfinished run) of another slide file.

    Never overridden by ``overwrite``: one slide's result is not replaced by another's.
    """
    mine = str(Path(slide_path).resolve())
    other = next((s for s in _recorded_slides(Path(out)) if s != mine), None)
    if other is not None:
        raise FileExistsError(f"{out} holds the result of another slide ({other}); explain {Path(slide_path).name} "
                              f"into another folder, or delete {out} first")


@contextmanager
def holding_result_folder(out: Path, slide_path: Path, *, lock: bool = True):
    """Hold the output folder ``out`` for one run of ``slide_path``.

    Takes ``out/explain.lock`` (a second run into ``out`` stops with
    :class:`~lrp_captum.wsi.folder_lock.FolderLockedError` naming the holder; ``lock=False`` when
    the caller holds the folder already, as the cohort runner does), refuses a folder that holds
    another slide's result, and removes ``out`` again when the run fails leaving it empty.
    """
    out = Path(out)
    created = not out.exists()
    try:
        with FolderLock(out, EXPLAIN_LOCK, command=f"explaining {Path(slide_path).name}") if lock else nullcontext():
            check_result_owner(out, slide_path)
            yield out
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise


def check_out_dir(out: Path, params_hash: str, overwrite: bool):
    """Returns the finished manifest if ``out`` already holds this exact run, else None.

    Raises ``FileExistsError`` when ``out`` holds a finished or unfinished run with other
    parameters, this run with an output file missing, or a damaged manifest, and ``overwrite`` is
    False; with ``overwrite`` an unfinished run's work folder is discarded.
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
        missing = [f for f in m.get("outputs", {}).values() if not (out / f).exists()]
        if m.get("params_hash") == params_hash and not overwrite:
            if not missing:
                return m
            raise FileExistsError(f"{out} holds this run, but its output {', '.join(missing)} is missing (deleted?); "
                                  f"pass overwrite=True (CLI: --overwrite) to make the run again")
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


def finished_run(out: Path, params_hash: str, overwrite: bool, quiet: bool) -> dict | None:
    """:func:`check_out_dir`, saying so on stderr (unless ``quiet``) when the run is finished."""
    done = check_out_dir(out, params_hash, overwrite)
    if done is not None and not quiet:
        print(f"{out}: already complete (manifest.json matches these arguments)", file=sys.stderr)
    return done


# --- files written by both runs --------------------------------------------------------------------
def write_tables(stage: Path, table, classes, geo_table=None) -> dict:
    """``tiles.csv``, ``tiles.parquet`` (when pyarrow is installed) and ``tiles.geojson`` of the
    per-tile ``table`` (GeoJSON from ``geo_table`` when given); returns their manifest entries."""
    write_table(stage / "tiles.csv", table)
    outputs = {"tiles_csv": "tiles.csv", "tiles_geojson": "tiles.geojson"}
    try:
        write_table(stage / "tiles.parquet", table)
        outputs["tiles_parquet"] = "tiles.parquet"
    except ImportError:
        pass
    write_geojson(stage / "tiles.geojson", table if geo_table is None else geo_table, classes)
    return outputs


def write_overview(path: Path, slide, heat: np.ndarray, downsample: float, vmax: float, title: str,
                   unit: str = "relevance per model pixel", cmap: str | None = None) -> None:
    """``overview.png``: the slide's thumbnail beside it with ``heat`` (a map at ``downsample``
    level-0 px per pixel) blended in, and the colour legend."""
    thumb = thumbnail_rgb(slide, downsample)
    if thumb.shape[:2] != heat.shape:
        from PIL import Image

        thumb = np.asarray(Image.fromarray(thumb).resize((heat.shape[1], heat.shape[0]), Image.BILINEAR))
    write_overview_png(path, thumb, heat, vmax, title, unit=unit, **({"cmap": cmap} if cmap else {}))


def publish_outputs(stage: Path, out: Path, names) -> None:
    """Move the staged files ``names`` into ``out``, replacing those of an earlier run.

    A finished run's ``manifest.json`` is removed first, so that ``out`` never looks complete
    while it holds a mix of old and new files; outputs of an earlier run that this run does not
    write are removed. Only ``names`` move: nothing else in the staging folder (a temporary file
    of a killed writer) reaches ``out``.
    """
    (out / "manifest.json").unlink(missing_ok=True)
    for name in names:
        if not (stage / name).exists():
            remove_path(out / name)
    for name in names:
        if (stage / name).exists():
            replace_path(stage / name, out / name)


def slide_record(slide_path: Path, slide, mpp: float, params_slide: dict) -> dict:
    """The manifest's ``slide`` entry: the file (``params_slide``), what OpenSlide reports, the mpp in use."""
    return dict(params_slide, vendor=slide.properties.get("openslide.vendor"),
                quickhash=slide.properties.get("openslide.quickhash-1"), dimensions=list(slide.dimensions),
                level_downsamples=list(slide.level_downsamples), mpp=mpp)


def write_manifest(out: Path, manifest: dict) -> dict:
    """Write ``manifest.json`` with the package ``versions`` (last: its presence marks the run as
    complete) and return it."""
    manifest = dict(manifest, versions=versions())
    write_json(out / "manifest.json", manifest)
    return manifest


# --- the slide pipeline's steps --------------------------------------------------------------------
@dataclass(frozen=True)
class TileTables:
    """What :func:`write_tile_tables` wrote: manifest ``outputs`` entries, the predicted class index
    per tile (N,), and how long it took."""

    outputs: dict
    predictions: np.ndarray
    seconds: float


def write_tile_tables(plan: SlidePlan, tiles: TileResults, stage: Path) -> TileTables:
    """Write ``tiles.csv``, ``tiles.parquet`` (when pyarrow is installed) and ``tiles.geojson``."""
    import pandas as pd

    t0 = time.perf_counter()
    grid, classes, n = plan.grid, plan.bundle.classes, plan.n_tiles
    cols = tiles.columns("probs", "target", "relevance_sum", "relevance_pos", "relevance_neg")
    probs = cols["probs"]
    pred = probs.argmax(1)
    boxes = plan.tiles
    table = pd.DataFrame({
        "tile_index": np.arange(n), "row": boxes["row"], "col": boxes["col"],
        "x0": boxes["x0"], "y0": boxes["y0"], "w0": boxes["w0"], "h0": boxes["h0"],
        "level": grid.level, "level_downsample": grid.level_downsample, "target_mpp": grid.target_mpp,
        "tissue_fraction": boxes["tissue"].astype(np.float64),
        "prediction": [classes[i] for i in pred], "prediction_index": pred,
        "probability": probs[np.arange(n), pred].astype(np.float64),
        **{f"p_{c}": probs[:, k].astype(np.float64) for k, c in enumerate(classes)},
        "target": [classes[i] for i in cols["target"]],
        "relevance_sum": cols["relevance_sum"], "relevance_pos": cols["relevance_pos"],
        "relevance_neg": cols["relevance_neg"],
    })
    outputs = write_tables(stage, table, classes)
    return TileTables(outputs, pred, time.perf_counter() - t0)


def write_images(plan: SlidePlan, relevance: RelevanceMap, stage: Path) -> float:
    """Write ``overlay.tif`` (streamed from the stitched ``relevance.zarr``) and ``overview.png``;
    returns the seconds taken."""
    import zarr

    t0 = time.perf_counter()
    zr = zarr.open_group(str(relevance.path), mode="r")["relevance"]
    d_out = plan.output_downsample
    write_overlay_tiff(stage / "overlay.tif", zr, mpp=plan.slide_mpp * d_out, vmax=relevance.vmax, cmap=plan.cmap)
    title = (f"{plan.slide_path.name}: {plan.composite} / {plan.options.output_mode}, target {plan.options.target}, "
             f"{plan.n_tiles} tiles at {plan.grid.target_mpp:g} µm/px")
    write_overview(stage / "overview.png", plan.slide, relevance.heat, d_out * relevance.heat_downsample,
                   relevance.vmax, title, cmap=plan.cmap)
    return time.perf_counter() - t0


def slide_manifest(plan: SlidePlan, tiles: TileResults, relevance: RelevanceMap, tables: TileTables,
                   images_s: float) -> dict:
    """The manifest of a finished slide run (without ``versions``, added by :func:`write_manifest`)."""
    bundle = plan.bundle
    outputs = {"relevance": "relevance.zarr", "overlay": "overlay.tif", "tiles_csv": "tiles.csv",
               "tiles_geojson": "tiles.geojson", "overview": "overview.png"}
    outputs.update({k: v for k, v in tables.outputs.items() if k not in outputs})
    timings = dict(open_tissue_grid_s=plan.seconds, **tiles.timings, stitch_s=relevance.seconds,
                   outputs_s=tables.seconds + images_s, total_s=time.perf_counter() - plan.t_start)
    return dict(
        format="lrp_captum.wsi/1", params_hash=plan.params_hash, outputs=outputs,
        slide=slide_record(plan.slide_path, plan.slide, plan.slide_mpp, plan.params["slide"]),
        model=dict(plan.params["model"], classes=bundle.classes, tile_size=bundle.tile_size, mpp=bundle.mpp),
        output_downsample=plan.output_downsample, relevance_shape=list(plan.map_shape),
        overlay_mpp=plan.slide_mpp * plan.output_downsample, vmax=relevance.vmax, colormap=plan.cmap,
        relevance_on_glass=relevance.relevance_on_glass,
        grid=plan.grid.to_dict(), n_tiles=plan.n_tiles,
        tissue=dict(threshold=plan.tissue.threshold, area_fraction=plan.tissue.area_fraction,
                    mask_downsample=plan.tissue.downsample, pen_fraction=plan.tissue.pen_fraction),
        parameters=plan.parameters,
        positive_tiles={c: int((tables.predictions == k).sum()) for k, c in enumerate(bundle.classes)},
        timings=timings,
    )
