"""``explain_mil_slide``: from a slide and a trained MIL head to slide-aligned evidence outputs.

Layout of ``out_dir`` (see docs/mil.md):

- ``manifest.json`` -- written last; its presence means the run is complete.
- ``evidence.zarr`` -- zarr group: ``evidence`` (H, W) float32, each tile's evidence painted over
  its footprint at ``output_downsample`` level-0 px per pixel (0 where no tile);
  ``pixel_relevance`` (H, W) the pixel maps of the top tiles on the same grid (mean relevance per
  tile pixel; 0 elsewhere); ``tile_maps`` (k, T, T) those maps at the encoder's resolution and
  ``tile_maps_index`` (k,) their tile indices; ``tile_evidence`` (N,) and, for methods with
  per-dimension relevance, ``embedding_relevance`` (N, D).
- ``evidence.tif`` -- colourised pyramidal TIFF of the evidence map (OpenSlide ``generic-tiff``).
- ``tiles.csv`` / ``tiles.parquet`` -- one row per tissue tile; ``tiles.geojson`` -- one QuPath
  tile per row, classified ``for <class>`` / ``against <class>``, whose measurement
  ``relevance_sum`` is the tile's evidence.
- ``overview.png`` -- thumbnail and the blended evidence map.

The embeddings come from the cache (:func:`~lrp_captum.wsi.mil.embeddings.embed_slide`), so a
second explanation of the same slide with the same encoder never embeds a tile again.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lrp_captum.wsi.outputs import (atomic_path, write_geojson, write_json, write_overlay_tiff, write_overview_png,
                                    write_table)
from lrp_captum.wsi.reader import SlideTileDataset, open_slide
from lrp_captum.wsi.stitch import footprints, resample, stitch_bands
from lrp_captum.wsi.tissue import thumbnail_rgb
from lrp_captum.demos.slide_model import default_cache_dir
from lrp_captum.wsi.mil.embeddings import embed_slide
from lrp_captum.wsi.mil.encoders import TileEncoder, build_encoder
from lrp_captum.wsi.mil.evidence import check_method, tile_evidence
from lrp_captum.wsi.mil.head_files import MILHead, load_head
from lrp_captum.wsi.mil.pixel_maps import DEFAULT_PIXEL_COMPOSITE, encoder_pixel_maps

FORMAT = "lrp_captum.wsi.mil.explain/1"
DEFAULT_METHOD = "xmil_lrp"
OUTPUT_FILES = ("evidence.zarr", "evidence.tif", "tiles.csv", "tiles.geojson", "overview.png")


def default_embeddings_cache() -> Path:
    """``$LRP_CAPTUM_CACHE/mil_embeddings`` (default ``~/.cache/lrp-captum/mil_embeddings``)."""
    return default_cache_dir() / "mil_embeddings"


def _output_downsample(tile_side0: float) -> int:
    """A power of two giving about 16 output pixels across one tile (level-0 px per output px)."""
    return int(2 ** max(0, round(math.log2(max(tile_side0 / 16, 1)))))


def _finished(out: Path, params_hash: str, overwrite: bool):
    """The manifest if ``out`` holds this exact finished run; raise if it holds another one."""
    manifest = out / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        m = json.loads(manifest.read_text())
    except (ValueError, OSError):
        m = {}
    if m.get("params_hash") == params_hash and all((out / f).exists() for f in m.get("outputs", {}).values()):
        return None if overwrite else m
    if not overwrite:
        raise FileExistsError(f"{out} already holds an explanation with other parameters; choose another "
                              f"folder or pass overwrite=True (CLI: --overwrite)")
    return None


def explain_mil_slide(slide_path, head, out_dir, *, method=DEFAULT_METHOD, method_options: dict | None = None,
                      target="predicted", top_tiles: int = 8, encoder: TileEncoder | dict | str | None = None,
                      embeddings_dir=None, pixel_composite: str = DEFAULT_PIXEL_COMPOSITE,
                      output_downsample: int | None = None, min_tissue: float = 0.1,
                      tissue_options: dict | None = None, slide_mpp_override: float | None = None,
                      batch_size: int = 64, num_workers: int = 0, overwrite: bool = False,
                      quiet: bool = False) -> dict:
    """Explain a slide-level MIL prediction: evidence per tile, pixel maps of the top tiles.

    Parameters
    ----------
    slide_path : any slide OpenSlide reads.
    head : a MIL head JSON path (``lrp-captum slide train-mil``) or a loaded :class:`MILHead`.
    out_dir : output folder (see module docstring); rerunning the same call returns the finished
        manifest at once.
    method : evidence method name (:data:`lrp_captum.wsi.mil.evidence.METHODS`, default
        ``"xmil_lrp"``) or callable ``method(head, bag, target, **method_options)``.
    target : ``"predicted"``, a class name or index of the head.
    top_tiles : number of tiles (largest evidence) that get pixel maps; 0 for none. Pixel maps
        need a method with per-dimension relevance.
    encoder : the tile encoder; default: rebuilt from the head's own spec. Any other encoder is
        refused (:class:`~lrp_captum.wsi.mil.encoders.EncoderMismatchError`).
    embeddings_dir : embedding cache (default :func:`default_embeddings_cache`).
    pixel_composite : LRP composite for the encoder's pixel maps.
    output_downsample : level-0 px per pixel of the maps (default about 16 px per tile).
    min_tissue, tissue_options, slide_mpp_override : tiling, as for ``explain_slide``.
    batch_size, num_workers : embedding batches and DataLoader reader processes.
    overwrite : replace a finished explanation with other parameters in ``out_dir``.

    Returns
    -------
    The manifest dict (also ``out_dir/manifest.json``), with ``timings`` split into embedding,
    head (evidence), pixel maps and outputs.

    Raises
    ------
    SlideError (unreadable slide, no resolution, empty bag), EncoderMismatchError,
    MethodUnavailableError, FileExistsError -- all with messages naming the file or argument.
    """
    t_start = time.perf_counter()
    timings = {}
    slide_path, out = Path(slide_path), Path(out_dir)
    head = head if isinstance(head, MILHead) else load_head(head)
    enc = encoder if isinstance(encoder, TileEncoder) else build_encoder(encoder or head.encoder_spec)
    head.check_encoder(enc)
    check_method(method, **(method_options or {}))
    target_index = None if target in (None, "predicted") else head.class_index(target)
    method_name = method if isinstance(method, str) else getattr(method, "__name__", repr(method))
    timings["load_s"] = time.perf_counter() - t_start

    t0 = time.perf_counter()
    bag = embed_slide(slide_path, enc, embeddings_dir or default_embeddings_cache(), min_tissue=min_tissue,
                      tissue_options=tissue_options, slide_mpp_override=slide_mpp_override, batch_size=batch_size,
                      num_workers=num_workers, quiet=quiet)
    timings["embedding_s"] = time.perf_counter() - t0

    st = slide_path.stat()
    params = dict(slide=dict(path=str(slide_path.resolve()), bytes=st.st_size, mtime_ns=st.st_mtime_ns),
                  head_sha256=head.weights_sha256, encoder=enc.identity, method=method_name,
                  method_options=method_options or {}, target=target, top_tiles=top_tiles,
                  pixel_composite=pixel_composite, output_downsample=output_downsample, min_tissue=min_tissue,
                  tissue_options=tissue_options or {}, grid=bag.grid.to_dict(), n_tiles=len(bag))
    params_hash = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    if out.exists():
        done = _finished(out, params_hash, overwrite)
        if done is not None:
            if not quiet:
                print(f"{out}: already complete (manifest.json matches these arguments)", file=sys.stderr)
            return done

    # ---- the head: prediction and evidence per tile ----
    t0 = time.perf_counter()
    x = head.bag_input(bag.features)
    with torch.no_grad():
        logits = head.model(x.unsqueeze(0))[0]
    probs = torch.softmax(logits, 0)
    t_idx = int(probs.argmax()) if target_index is None else target_index
    ev = tile_evidence(method, head.model, x, t_idx, **(method_options or {}))
    scores = ev.scores.double().numpy()
    attention = None
    if hasattr(head.model, "attention_and_values"):
        with torch.no_grad():
            attention = head.model.attention_and_values(x.unsqueeze(0))[0][0].mean(0).numpy()
    timings["head_s"] = time.perf_counter() - t0

    # ---- pixel maps of the top tiles through the encoder ----
    t0 = time.perf_counter()
    order = np.argsort(-scores, kind="stable")
    top = order[:max(0, min(int(top_tiles), len(bag)))] if ev.per_dimension is not None else order[:0]
    tile_maps = np.zeros((len(top), enc.tile_size, enc.tile_size), np.float32)
    if len(top):
        ds = SlideTileDataset(slide_path, bag.grid, bag.tiles)
        rgb = torch.stack([ds[int(i)][1] for i in top])
        tile_maps = encoder_pixel_maps(enc, rgb, ev.per_dimension[torch.from_numpy(top.copy())].to(torch.float32),
                                       pixel_composite)
    timings["pixel_maps_s"] = time.perf_counter() - t0

    # ---- outputs ----
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # a half-replaced run must not look finished
    slide = open_slide(slide_path)
    d_out = int(output_downsample or _output_downsample(enc.tile_size * bag.grid.scale))
    vmax = _write_maps(out, slide, bag, scores, ev.per_dimension, top, tile_maps, d_out)
    classes = head.classes
    target_name = classes[t_idx]
    rank = np.empty(len(bag), np.int64)
    rank[order] = np.arange(1, len(bag) + 1)
    tiles = bag.tiles
    table = _tile_table(bag, scores, rank, attention, ev.per_dimension, top)
    write_table(out / "tiles.csv", table)
    outputs = {"evidence": "evidence.zarr", "overlay": "evidence.tif", "tiles_csv": "tiles.csv",
               "tiles_geojson": "tiles.geojson", "overview": "overview.png"}
    try:
        write_table(out / "tiles.parquet", table)
        outputs["tiles_parquet"] = "tiles.parquet"
    except ImportError:
        pass
    geo = table.rename(columns={"evidence": "relevance_sum", "evidence_pos": "relevance_pos",
                                "evidence_neg": "relevance_neg"})
    geo["prediction"] = np.where(scores >= 0, f"for {target_name}", f"against {target_name}")
    write_geojson(out / "tiles.geojson", geo, classes)
    import zarr

    evidence_map = zarr.open_group(str(out / "evidence.zarr"), mode="r")["evidence"]
    write_overlay_tiff(out / "evidence.tif", evidence_map, mpp=bag.grid.slide_mpp * d_out, vmax=vmax)
    heat = np.asarray(evidence_map[:])
    thumb = thumbnail_rgb(slide, d_out)
    if thumb.shape[:2] != heat.shape:
        from PIL import Image

        thumb = np.asarray(Image.fromarray(thumb).resize((heat.shape[1], heat.shape[0]), Image.BILINEAR))
    write_overview_png(out / "overview.png", thumb, heat, vmax,
                       f"{slide_path.name}: {head.name} predicts {classes[int(probs.argmax())]} "
                       f"(p={float(probs.max()):.2f}); {method_name} evidence for {target_name}",
                       unit=f"evidence for {target_name} (logit units per tile)")
    timings["outputs_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start

    manifest = dict(
        format=FORMAT, params_hash=params_hash, outputs=outputs,
        slide=dict(params["slide"], dimensions=list(slide.dimensions), mpp=bag.grid.slide_mpp),
        head=dict(path=head.path, name=head.name, classes=classes,
                  weights_sha256=head.weights_sha256),
        encoder=dict(spec=enc.spec, identity=enc.identity, dim=enc.dim),
        method=method_name, method_options=method_options or {}, pixel_composite=pixel_composite,
        prediction=dict(class_name=classes[int(probs.argmax())], probabilities=probs.tolist(),
                        logits=logits.tolist()),
        target=dict(class_name=target_name, index=t_idx, logit=float(logits[t_idx])),
        evidence_sum=float(scores.sum()), n_tiles=len(bag), grid=bag.grid.to_dict(), output_downsample=d_out,
        vmax=vmax, top_tiles=[dict(tile_index=int(i), row=int(tiles["row"][i]), col=int(tiles["col"][i]),
                                   evidence=float(scores[i]), pixel_relevance_sum=float(m.sum()))
                              for i, m in zip(top, tile_maps)],
        embeddings=dict(store=str(bag.store), embedded_now=bag.embedded_now, cache_hit=bag.embedded_now == 0),
        timings=timings)
    write_json(out / "manifest.json", manifest)
    if not quiet:
        print(f"wrote {out} ({len(bag)} tiles; embedding {timings['embedding_s']:.1f} s, head "
              f"{timings['head_s']:.2f} s, pixel maps {timings['pixel_maps_s']:.1f} s)", file=sys.stderr)
    return manifest


def _tile_table(bag, scores, rank, attention, per_dimension, top):
    import pandas as pd

    tiles, grid = bag.tiles, bag.grid
    cols = {"tile_index": np.arange(len(bag)), "row": tiles["row"], "col": tiles["col"], "x0": tiles["x0"],
            "y0": tiles["y0"], "w0": tiles["w0"], "h0": tiles["h0"], "level": grid.level,
            "level_downsample": grid.level_downsample, "target_mpp": grid.target_mpp,
            "tissue_fraction": tiles["tissue"].astype(np.float64), "evidence": scores, "evidence_rank": rank}
    if per_dimension is not None:
        r = per_dimension.double().numpy()
        cols["evidence_pos"] = np.clip(r, 0, None).sum(1)
        cols["evidence_neg"] = np.clip(r, None, 0).sum(1)
    if attention is not None:
        cols["attention"] = attention.astype(np.float64)
    cols["pixel_map"] = np.isin(np.arange(len(bag)), top)
    return pd.DataFrame(cols)


def _write_maps(out: Path, slide, bag, scores, per_dimension, top, tile_maps, d_out) -> float:
    """Write ``evidence.zarr``; returns the colour scale (max |evidence|)."""
    import zarr

    W0, H0 = slide.dimensions
    H, W = -(-H0 // d_out), -(-W0 // d_out)
    boxes = footprints(bag.tiles, d_out)
    maps = {int(i): m for i, m in zip(top, tile_maps)}

    def fetch(i):
        x0, y0, x1, y1 = (int(v) for v in boxes[i])
        ev = np.full((1, y1 - y0, x1 - x0), scores[i], np.float32)
        if i in maps:
            px = resample(torch.from_numpy(maps[i])[None, None], y1 - y0, x1 - x0)[0].numpy()
        else:
            px = np.zeros_like(ev)
        return np.concatenate([ev, px])

    vmax = float(np.abs(scores).max()) or 1.0
    with atomic_path(out / "evidence.zarr") as tmp:
        group = zarr.open_group(str(tmp), mode="w")
        zev = group.create_array("evidence", shape=(H, W), chunks=(512, 512), dtype="float32", fill_value=0.0)
        zpx = group.create_array("pixel_relevance", shape=(H, W), chunks=(512, 512), dtype="float32", fill_value=0.0)
        for y, band in stitch_bands(boxes, fetch, (H, W), channels=2, overlap=0.0):
            band = np.nan_to_num(band, nan=0.0)
            zev[y:y + band.shape[1]] = band[0]
            zpx[y:y + band.shape[1]] = band[1]
        group.create_array("tile_maps", data=np.asarray(tile_maps, np.float32))
        group.create_array("tile_maps_index", data=np.asarray(top, np.int64))
        group.create_array("tile_evidence", data=np.asarray(scores, np.float64))
        if per_dimension is not None:
            group.create_array("embedding_relevance", data=per_dimension.float().numpy())
        group.attrs.update(output_downsample=d_out, level0_shape=[H0, W0], mpp=bag.grid.slide_mpp * d_out,
                           vmax=vmax, evidence_unit="target logit relevance per tile (painted over its footprint)",
                           pixel_unit="mean pixel relevance per tile pixel (summed over RGB)",
                           background="0 where no tissue tile")
    return vmax
