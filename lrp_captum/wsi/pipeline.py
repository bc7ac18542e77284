"""``explain_slide``: one self-contained, resumable call from a slide to an output folder.

Layout of ``out_dir`` (see docs/wsi.md):

- ``manifest.json`` -- written last; its presence means the run is complete.
- ``relevance.zarr`` -- zarr group: ``relevance`` (H, W) float32 at ``output_downsample`` level-0 px
  per pixel (0 where no tile), ``probability`` (C, H, W) float32 per class (NaN where no tile).
- ``overlay.tif`` -- colourised pyramidal TIFF of the relevance map (OpenSlide ``generic-tiff``).
- ``tiles.csv`` / ``tiles.parquet`` / ``tiles.geojson`` -- one row / feature per tissue tile.
- ``overview.png`` -- thumbnail, blended heatmap and colour legend.

While running, per-batch results are committed to ``out_dir/.lrp_work/`` (each file written under a
temporary name and renamed), so a killed run started again with the same arguments continues
where it stopped and produces the same files as an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from .explain import DEFAULT_COMPOSITE, TileExplainer
from .grid import make_grid, tissue_tiles
from .model import ModelBundle, load_model
from .outputs import (atomic_path, write_geojson, write_json, write_overlay_tiff, write_overview_png,
                      write_table)
from .reader import EmptyTissueError, SlideError, SlideReadError, SlideTileDataset, open_slide, slide_mpp
from .stitch import footprints, resample, stitch_bands
from .tissue import detect_tissue, thumbnail_rgb

WORK = ".lrp_work"
OUTPUT_FILES = ("relevance.zarr", "overlay.tif", "tiles.csv", "tiles.parquet", "tiles.geojson", "overview.png")
BAND = 512


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


def _save_batch(path: Path, **arrays):
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # the rename is what makes a batch survive SIGKILL; no fsync, which only guards against
    # power loss and stalls every batch on a busy disk
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


class _BatchStore:
    """Reads committed batch files, keeping the few most recent in memory."""

    def __init__(self, work: Path, batch_size: int, keep: int = 4):
        self.work, self.batch_size, self.keep = work, batch_size, keep
        self.cache: OrderedDict[int, dict] = OrderedDict()

    def batch(self, b: int) -> dict:
        if b not in self.cache:
            with np.load(self.work / f"batch_{b:06d}.npz") as z:
                self.cache[b] = {k: z[k] for k in z.files}
            while len(self.cache) > self.keep:
                self.cache.popitem(last=False)
        self.cache.move_to_end(b)
        return self.cache[b]

    def tile_map(self, i: int) -> np.ndarray:
        d = self.batch(i // self.batch_size)
        j = i - int(d["tile_index"][0])
        off, (h, w) = int(d["map_offsets"][j]), d["map_shapes"][j]
        return d["maps"][off:off + h * w].reshape(h, w)


def _check_out_dir(out: Path, params_hash: str, overwrite: bool):
    """Returns the finished manifest if ``out`` already holds this exact run, else None."""
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


def explain_slide(slide_path, model_config, out_dir, *, target="predicted", composite=DEFAULT_COMPOSITE,
                  output_mode: str = "logit", mpp: float | None = None, tile_size: int | None = None,
                  overlap: float = 0.0, output_downsample: int | None = None, min_tissue: float = 0.1,
                  tissue_options: dict | None = None, slide_mpp_override: float | None = None,
                  batch_size: int = 32, num_workers: int | None = None, device: str = "auto",
                  overwrite: bool = False, quiet: bool = False, keep_work: bool = False,
                  threads: int | None = None, progress_callback=None) -> dict:
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

    Returns
    -------
    The manifest dict (also written to ``out_dir/manifest.json``).

    Raises
    ------
    SlideReadError, MissingMppError, EmptyTissueError (all ``SlideError``, a ``ValueError``) with
    a message naming the file; ``out_dir`` is then left without outputs.
    """
    if threads:
        before = torch.get_num_threads()
        torch.set_num_threads(int(threads))
        try:
            return explain_slide(slide_path, model_config, out_dir, target=target, composite=composite,
                                 output_mode=output_mode, mpp=mpp, tile_size=tile_size, overlap=overlap,
                                 output_downsample=output_downsample, min_tissue=min_tissue,
                                 tissue_options=tissue_options, slide_mpp_override=slide_mpp_override,
                                 batch_size=batch_size, num_workers=num_workers, device=device,
                                 overwrite=overwrite, quiet=quiet, keep_work=keep_work,
                                 progress_callback=progress_callback)
        finally:
            torch.set_num_threads(before)
    timings = {}
    t_start = time.perf_counter()
    slide_path = Path(slide_path)
    out = Path(out_dir)
    slide = open_slide(slide_path)
    mpp0 = slide_mpp(slide, slide_path, slide_mpp_override)
    bundle = model_config if isinstance(model_config, ModelBundle) else load_model(model_config, device)
    target_mpp = float(mpp or bundle.mpp)
    tile_size = int(tile_size or bundle.tile_size)
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
    d_out = int(output_downsample or default_output_downsample(tile_size * grid.scale))
    timings["open_tissue_grid_s"] = time.perf_counter() - t_start

    st = slide_path.stat()
    params = dict(slide=dict(path=str(slide_path.resolve()), bytes=st.st_size, mtime_ns=st.st_mtime_ns),
                  model=dict(config={k: v for k, v in bundle.config.items()}, weights_sha256=bundle.weights_sha256),
                  target=target, composite=str(composite), output_mode=output_mode, target_mpp=target_mpp,
                  tile_size=tile_size, overlap=overlap, output_downsample=d_out, min_tissue=min_tissue,
                  tissue_options=tissue_options or {}, slide_mpp=mpp0, batch_size=batch_size,
                  device=bundle.device.type, torch_threads=torch.get_num_threads(), n_tiles=len(tiles),
                  tiles_sha256=hashlib.sha256(tiles.tobytes()).hexdigest())
    params_hash = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    done = _check_out_dir(out, params_hash, overwrite) if out.exists() else None
    if done is not None:
        if not quiet:
            print(f"{out}: already complete (manifest.json matches these arguments)", file=sys.stderr)
        return done

    created_out = not out.exists()
    work = out / WORK
    work.mkdir(parents=True, exist_ok=True)
    write_json(work / "state.json", dict(params_hash=params_hash, n_tiles=len(tiles), batch_size=batch_size))
    for leftover in work.glob(".*.tmp-*"):
        leftover.unlink()
    try:
        manifest = _run(slide, slide_path, bundle, tiles, grid, tissue, out, work, params, params_hash,
                        d_out, composite, output_mode, target, batch_size, num_workers, quiet, timings, t_start,
                        progress_callback)
    except SlideError:
        # unusable file: leave nothing behind that could be mistaken for results
        shutil.rmtree(work, ignore_errors=True)
        if created_out and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return manifest


def _run(slide, slide_path, bundle, tiles, grid, tissue, out, work, params, params_hash, d_out, composite,
         output_mode, target, batch_size, num_workers, quiet, timings, t_start, progress_callback=None):
    from tqdm.auto import tqdm

    n = len(tiles)
    n_batches = -(-n // batch_size)
    boxes = footprints(tiles, d_out)
    pending = [b for b in range(n_batches) if not (work / f"batch_{b:06d}.npz").is_file()]
    done_tiles = done_before = n - sum(min(n, (b + 1) * batch_size) - b * batch_size for b in pending)
    if num_workers is None:
        num_workers = min(4, max(0, (os.cpu_count() or 1) - 1))
    explainer = TileExplainer(bundle, composite, output_mode)
    t_loop = time.perf_counter()
    t_attr = 0.0
    if pending:
        loader = torch.utils.data.DataLoader(
            SlideTileDataset(slide_path, grid, tiles),
            batch_sampler=[list(range(b * batch_size, min(n, (b + 1) * batch_size))) for b in pending],
            num_workers=num_workers, pin_memory=bundle.device.type == "cuda")
        bar = tqdm(total=n, initial=done_tiles, unit="tile", desc=slide_path.name, disable=quiet,
                   dynamic_ncols=True, smoothing=0.1)
        try:
            for idx, batch in loader:
                ta = time.perf_counter()
                rel, probs, tgt = explainer.explain(batch, target)
                t_attr += time.perf_counter() - ta
                idx = idx.numpy()
                # footprints differ by at most a pixel (rounding): resample each size group at once
                sizes = [(int(boxes[i][3] - boxes[i][1]), int(boxes[i][2] - boxes[i][0])) for i in idx]
                resampled = [None] * len(idx)
                rel_t = torch.from_numpy(rel)[:, None]
                for size in set(sizes):
                    js = [j for j, sz in enumerate(sizes) if sz == size]
                    out_maps = resample(rel_t[js], *size)[:, 0].numpy()
                    for k, j in enumerate(js):
                        resampled[j] = out_maps[k]
                maps = [m.ravel() for m in resampled]
                shapes = sizes
                offsets = np.concatenate([[0], np.cumsum([m.size for m in maps])[:-1]])
                _save_batch(work / f"batch_{idx[0] // batch_size:06d}.npz", tile_index=idx,
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
    timings["tiles_s"] = time.perf_counter() - t_loop
    timings["attribution_s"] = t_attr
    timings["tiles_explained_this_run"] = n - done_before

    # ---- stitch, streamed band by band into a zarr written under a temporary name ----
    t0 = time.perf_counter()
    import pandas as pd
    import zarr

    store = _BatchStore(work, batch_size)
    W0, H0 = slide.dimensions
    H, W = -(-H0 // d_out), -(-W0 // d_out)
    C = len(bundle.classes)
    f = int(2 ** max(0, math.ceil(math.log2(max(H, W) / 1024)))) if max(H, W) > 1024 else 1
    f = min(f, BAND)
    heat = np.zeros((-(-H // f), -(-W // f)), np.float32)
    stride = max(1, math.ceil(H * W / 1e6))
    samples = []

    def fetch(i):
        m = store.tile_map(i)
        p = store.batch(i // batch_size)["probs"][i - (i // batch_size) * batch_size]
        return np.concatenate([m[None], np.broadcast_to(p[:, None, None], (C,) + m.shape)], 0)

    zpath = out / "relevance.zarr"
    with atomic_path(zpath) as ztmp:
        group = zarr.open_group(str(ztmp), mode="w")
        zrel = group.create_array("relevance", shape=(H, W), chunks=(BAND, BAND), dtype="float32", fill_value=0.0)
        zprob = group.create_array("probability", shape=(C, H, W), chunks=(1, BAND, BAND), dtype="float32",
                                   fill_value=float("nan"))
        for y, band in stitch_bands(boxes, fetch, (H, W), 1 + C, grid.overlap, BAND):
            rel = np.nan_to_num(band[0], nan=0.0)
            zrel[y:y + rel.shape[0], :] = rel
            zprob[:, y:y + rel.shape[0], :] = band[1:]
            covered = ~np.isnan(band[0])
            samples.append(np.abs(rel[covered]).ravel()[::stride])
            hb = rel.shape[0]
            pad = np.zeros((-(-hb // f) * f, heat.shape[1] * f), np.float32)
            pad[:hb, :W] = rel
            heat[y // f:y // f + pad.shape[0] // f] = pad.reshape(pad.shape[0] // f, f, -1, f).mean((1, 3))
        allv = np.concatenate(samples) if samples else np.zeros(1, np.float32)
        vmax = float(np.quantile(allv, 0.995)) if allv.size else 1.0
        vmax = vmax if vmax > 0 else 1.0
        attrs = dict(output_downsample=d_out, level0_shape=[H0, W0], mpp=params["slide_mpp"] * d_out,
                     slide_mpp=params["slide_mpp"], classes=bundle.classes, vmax=vmax,
                     relevance_unit="mean input relevance per model-input pixel (summed over RGB)",
                     background="relevance 0 / probability NaN where no tissue tile")
        group.attrs.update(attrs)
    timings["stitch_s"] = time.perf_counter() - t0

    # ---- per-tile table, GeoJSON, overlay, overview ----
    t0 = time.perf_counter()
    cols = {k: [] for k in ("probs", "target", "relevance_sum", "relevance_pos", "relevance_neg")}
    for b in range(n_batches):
        d = store.batch(b)
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
        "prediction": [bundle.classes[i] for i in pred], "prediction_index": pred,
        "probability": probs[np.arange(n), pred].astype(np.float64),
        **{f"p_{c}": probs[:, k].astype(np.float64) for k, c in enumerate(bundle.classes)},
        "target": [bundle.classes[i] for i in cols["target"]],
        "relevance_sum": cols["relevance_sum"], "relevance_pos": cols["relevance_pos"],
        "relevance_neg": cols["relevance_neg"],
    })
    write_table(out / "tiles.csv", table)
    try:
        write_table(out / "tiles.parquet", table)
        parquet = True
    except ImportError:
        parquet = False
    write_geojson(out / "tiles.geojson", table, bundle.classes)
    zr = zarr.open_group(str(zpath), mode="r")["relevance"]
    write_overlay_tiff(out / "overlay.tif", zr, mpp=params["slide_mpp"] * d_out, vmax=vmax)
    thumb = thumbnail_rgb(slide, d_out * f)
    if thumb.shape[:2] != heat.shape:
        from PIL import Image

        thumb = np.asarray(Image.fromarray(thumb).resize((heat.shape[1], heat.shape[0]), Image.BILINEAR))
    title = (f"{slide_path.name}: {params['composite']} / {output_mode}, target {target}, "
             f"{n} tiles at {grid.target_mpp:g} µm/px")
    write_overview_png(out / "overview.png", thumb, heat, vmax, title)
    timings["outputs_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start

    outputs = {"relevance": "relevance.zarr", "overlay": "overlay.tif", "tiles_csv": "tiles.csv",
               "tiles_geojson": "tiles.geojson", "overview": "overview.png"}
    if parquet:
        outputs["tiles_parquet"] = "tiles.parquet"
    manifest = dict(
        format="lrp_captum.wsi/1", params_hash=params_hash, outputs=outputs,
        slide=dict(params["slide"], vendor=slide.properties.get("openslide.vendor"),
                   dimensions=list(slide.dimensions), level_downsamples=list(slide.level_downsamples),
                   mpp=params["slide_mpp"]),
        model=dict(params["model"], classes=bundle.classes, tile_size=bundle.tile_size, mpp=bundle.mpp),
        output_downsample=d_out, relevance_shape=[H, W], overlay_mpp=params["slide_mpp"] * d_out, vmax=vmax,
        grid=grid.to_dict(), n_tiles=n, tissue=dict(threshold=tissue.threshold,
                                                    area_fraction=tissue.area_fraction,
                                                    mask_downsample=tissue.downsample),
        parameters={k: params[k] for k in ("target", "composite", "output_mode", "target_mpp", "tile_size",
                                           "overlap", "min_tissue", "tissue_options", "batch_size", "device")},
        positive_tiles={c: int((pred == k).sum()) for k, c in enumerate(bundle.classes)},
        versions=_versions(), timings=timings,
    )
    write_json(out / "manifest.json", manifest)
    if not quiet:
        print(f"wrote {out} ({n} tiles, {timings['total_s']:.1f} s)", file=sys.stderr)
    return manifest
