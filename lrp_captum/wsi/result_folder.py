"""The result folder of a slide run: the per-tile tables, the images, moving the staged files into
place, and the manifest that marks the run complete (steps of :mod:`lrp_captum.wsi.pipeline`)."""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import numpy as np

from lrp_captum.provenance import versions
from lrp_captum.wsi.outputs import remove_path, replace_path, write_geojson, write_json, write_overlay_tiff, \
    write_overview_png, write_table
from lrp_captum.wsi.tissue import thumbnail_rgb

if TYPE_CHECKING:
    from lrp_captum.wsi.plan import SlideRun

OUTPUT_FILES = ("relevance.zarr", "overlay.tif", "tiles.csv", "tiles.parquet", "tiles.geojson", "overview.png")


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
        if name not in staged:
            remove_path(run.out / name)
    for name in sorted(staged):
        replace_path(run.stage / name, run.out / name)


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
                   quickhash=slide.properties.get("openslide.quickhash-1"),
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
        versions=versions(), timings=run.timings,
    )
    write_json(run.out / "manifest.json", manifest)
    if not run.quiet:
        print(f"wrote {run.out} ({run.n_tiles} tiles, {run.timings['total_s']:.1f} s)", file=sys.stderr)
    return manifest
