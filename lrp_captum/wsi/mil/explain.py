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

The folder is held, checked ("finished / damaged / other parameters"), staged, published and
given its manifest (with the package versions) by the same functions as a slide run's
(:mod:`lrp_captum.wsi.result_folder`). The embeddings come from the cache
(:func:`~lrp_captum.wsi.mil.embeddings.embed_slide`), so a second explanation of the same slide
with the same encoder never embeds a tile again.
"""
from __future__ import annotations

import inspect
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lrp_captum.wsi.cache_folder import cache_dir
from lrp_captum.wsi.outputs import atomic_path, write_overlay_tiff
from lrp_captum.wsi.reader import SlideTileDataset, open_slide
from lrp_captum.wsi.result_folder import finished_run, holding_result_folder, publish_outputs, slide_record, \
    write_manifest, write_overview, write_tables
from lrp_captum.wsi.run_plan import WORK, default_output_downsample, file_record, parameters_hash
from lrp_captum.wsi.slide_options import EXPLAIN_MIL, FEATURE_OPTIONS, MAX_THREADS, NON_NEGATIVE_INT, POSITIVE_INT, \
    SLIDE_OPTIONS, CompositeName, int_in, Option, OptionTable, OptionValues, Value, keyword_parameters
from lrp_captum.wsi.stitch import footprints, resample, stitch_bands
from lrp_captum.wsi.mil.embeddings import SlideBag, embed_slide
from lrp_captum.wsi.mil.encoders import TileEncoder, build_encoder
from lrp_captum.wsi.mil.evidence import check_method, tile_evidence
from lrp_captum.wsi.mil.head_files import MILHead, load_head
from lrp_captum.wsi.mil.pixel_maps import DEFAULT_PIXEL_COMPOSITE, default_pixel_composite, encoder_pixel_maps
from lrp_captum.wording import counted

FORMAT = "lrp_captum.wsi.mil.explain/1"
DEFAULT_METHOD = "xmil_lrp"
OUTPUT_FILES = ("evidence.zarr", "evidence.tif", "tiles.csv", "tiles.parquet", "tiles.geojson", "overview.png")

#: the options of :func:`explain_mil_slide`: its own, and the slide options ``explain-mil`` shares
#: (``target``, ``output_downsample``, ``min_tissue``, ``tissue_options``, ``slide_mpp_override``,
#: ``overwrite``, ``quiet``: :data:`~lrp_captum.wsi.slide_options.SLIDE_OPTIONS`)
MIL_OPTIONS = OptionTable([
    Option("method", DEFAULT_METHOD, Value(lambda v: isinstance(v, str) or callable(v), "a method name or callable"),
           "evidence method: xmil_lrp (default), attention, attention_norm, gradient, integrated_gradients, "
           "single, leave_one_out", commands=(EXPLAIN_MIL,)),
    Option("method_options", None, Value(lambda v: isinstance(v, dict), "a dict"),
           "keyword arguments of the method (CLI: --composite of xmil_lrp)", flag=None),
    Option("top_tiles", 8, NON_NEGATIVE_INT, "tiles that get pixel maps (default 8)", commands=(EXPLAIN_MIL,)),
    Option("pixel_composite", DEFAULT_PIXEL_COMPOSITE, CompositeName(),
           "LRP composite in the encoder (default: xmil_cnn for a CNN, xmil_vit for a transformer: biases out of "
           "the denominators, so a pixel map sums to its tile's evidence)",
           commands=(EXPLAIN_MIL,)),
    Option("encoder", None, Value(lambda v: isinstance(v, (TileEncoder, dict, str)), "an encoder or its spec"),
           "the tile encoder; default: rebuilt from the head's own spec", hashed=False, flag=None),
    Option("embeddings_dir", None, Value(lambda v: isinstance(v, (str, Path)), "a folder"),
           "embedding cache folder (default the lrp-captum cache); a slide's embeddings in the cache "
           "train-mil filled for the head are read from there", hashed=False, commands=(EXPLAIN_MIL,),
           flag="--embeddings"),
    Option("batch_size", 64, POSITIVE_INT, "tiles per embedding batch", hashed=False, flag=None),
    Option("num_workers", 0, int_in(0, MAX_THREADS), "DataLoader reader processes while embedding", hashed=False,
           flag=None),
    *FEATURE_OPTIONS,  # from TRIDENT/CLAM features: no encoder, no tile embedded
], shared=(SLIDE_OPTIONS, EXPLAIN_MIL))


class MILOptions(OptionValues):
    """Checked values of :data:`MIL_OPTIONS`."""

    table = MIL_OPTIONS


def default_embeddings_cache() -> Path:
    """``$LRP_CAPTUM_CACHE/mil_embeddings`` (default ``~/.cache/lrp-captum/mil_embeddings``)."""
    return cache_dir() / "mil_embeddings"


@dataclass(frozen=True)
class MILPlan:
    """What a MIL explanation does, fixed once the slide is embedded (nothing is written to ``out``).

    Attributes
    ----------
    slide_path, out : the slide and the output folder.
    head, encoder : the MIL head and its tile encoder (None for a run from features).
    bag : the slide's embedded tissue tiles, or the tiles of its feature file.
    options : the options as used (``output_downsample``, ``tissue_options`` filled in).
    parameters : what the outputs depend on (the hashed options, the method's name).
    params, params_hash : ``parameters`` with the slide, head and encoder identities and the grid; its SHA-256.
    timings : ``load_s``, ``embedding_s``.
    """

    slide_path: Path
    out: Path
    head: MILHead
    encoder: TileEncoder | None
    bag: SlideBag
    options: MILOptions
    parameters: dict
    params: dict
    params_hash: str
    timings: dict


@dataclass(frozen=True)
class SlideEvidence:
    """The head's prediction for a bag and the evidence per tile for ``target`` (class index).

    ``scores`` (N,) float64; ``per_dimension`` (N, D) or None; ``attention`` (N,) or None;
    ``order`` (N,) tiles by decreasing evidence; ``seconds`` the time it took.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    target: int
    scores: np.ndarray
    per_dimension: torch.Tensor | None
    attention: np.ndarray | None
    order: np.ndarray
    seconds: float


@dataclass(frozen=True)
class TopTileMaps:
    """The tiles of largest evidence ``top`` (k,) and their pixel maps ``maps`` (k, T, T)."""

    top: np.ndarray
    maps: np.ndarray
    seconds: float


def explain_mil_slide(slide_path, head, out_dir, options: MILOptions | dict | None = None, **kwargs) -> dict:
    """Explain a slide-level MIL prediction: evidence per tile, pixel maps of the top tiles.

    Parameters
    ----------
    slide_path : any slide OpenSlide reads.
    head : a MIL head JSON path (``lrp-captum slide train-mil``) or a loaded :class:`MILHead`.
    out_dir : output folder (see module docstring); rerunning the same call returns the finished
        manifest at once. A folder holding another slide's result is refused.
    options : a :class:`MILOptions` (or dict); keyword arguments are the same options
        (:data:`MIL_OPTIONS`):

        - ``method`` : evidence method name (:data:`lrp_captum.wsi.mil.evidence.METHODS`, default
          ``"xmil_lrp"``) or callable ``method(head, bag, target, **method_options)``;
        - ``target`` : ``"predicted"``, a class name or index of the head;
        - ``top_tiles`` : number of tiles (largest evidence) that get pixel maps; 0 for none.
          Pixel maps need a method with per-dimension relevance;
        - ``encoder`` : the tile encoder; default: rebuilt from the head's own spec. Any other
          encoder is refused (:class:`~lrp_captum.wsi.mil.encoders.EncoderMismatchError`);
        - ``features`` : TRIDENT/CLAM features of the slide instead of embedding its tiles: the
          feature file or a folder holding ``<slide>.h5`` / ``.pt``
          (:func:`~lrp_captum.wsi.mil.feature_bags.slide_features`); the tiles are the file's,
          there is no encoder and so no pixel maps. ``patches``, ``patch_size_level0``: where the
          tile size comes from when the file does not record it;
        - ``embeddings_dir`` : embedding cache (default :func:`default_embeddings_cache`); a slide
          whose embeddings are in the cache ``train-mil`` filled for the head (same encoder and
          tiling) is read from there and embeds nothing;
        - ``pixel_composite`` : LRP composite for the encoder's pixel maps (default
          :func:`~lrp_captum.wsi.mil.pixel_maps.default_pixel_composite`);
        - ``output_downsample`` : level-0 px per pixel of the maps (default about 16 px per tile);
        - ``min_tissue``, ``tissue_options``, ``slide_mpp_override`` : tiling, as for ``explain_slide``;
        - ``batch_size``, ``num_workers`` : embedding batches and DataLoader reader processes;
        - ``overwrite`` : replace a finished explanation with other parameters in ``out_dir``;
          ``quiet`` : no messages.

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
    opts = MILOptions(options, **kwargs)
    head = head if isinstance(head, MILHead) else load_head(head)
    enc = None
    if opts.features is None:
        enc = opts.encoder if isinstance(opts.encoder, TileEncoder) else build_encoder(opts.encoder or head.encoder_spec)
        head.check_encoder(enc)
    check_method(opts.method, **(opts.method_options or {}))
    if opts.target != "predicted":
        head.class_index(opts.target)  # an unknown class is refused before any tile is read
    load_s = time.perf_counter() - t_start
    with holding_result_folder(Path(out_dir), Path(slide_path)):
        plan = plan_mil_run(slide_path, out_dir, head, enc, opts, load_s)
        done = finished_run(plan.out, plan.params_hash, opts.overwrite, opts.quiet, plan.parameters)
        if done is not None:
            return done
        evidence = slide_evidence(plan)
        maps = top_tile_maps(plan, evidence)
        manifest = _write_result(plan, evidence, maps, t_start)
    if not opts.quiet:
        t = manifest["timings"]
        print(f"wrote {plan.out} ({counted(len(plan.bag), 'tile')}; embedding {t['embedding_s']:.1f} s, head "
              f"{t['head_s']:.2f} s, pixel maps {t['pixel_maps_s']:.1f} s)", file=sys.stderr)
    return manifest


explain_mil_slide.__signature__ = inspect.Signature([
    *list(inspect.signature(explain_mil_slide).parameters.values())[:4], *keyword_parameters(MIL_OPTIONS)])


def plan_mil_run(slide_path, out_dir, head: MILHead, encoder: TileEncoder | None, options: MILOptions,
                 load_s: float = 0.0) -> MILPlan:
    """Embed the slide (or read its embeddings from the cache, or its features from
    ``options.features``) and fix the run's parameters."""
    t0 = time.perf_counter()
    slide_path = Path(slide_path)
    if options.features is not None:
        bag = _features_bag(slide_path, head, options)
        source = dict(features=file_record(Path(bag.store)))
    else:
        bag = embed_slide(slide_path, encoder, options.embeddings_dir or default_embeddings_cache(),
                          min_tissue=options.min_tissue, tissue_options=options.tissue_options,
                          slide_mpp_override=options.slide_mpp_override, batch_size=options.batch_size,
                          num_workers=options.num_workers, quiet=options.quiet,
                          reuse_from=[head.embeddings_dir] if head.embeddings_dir else [])
        source = dict(encoder=encoder.identity)
        if not options.quiet and bag.embedded_now == 0:
            trained = head.embeddings_dir and Path(head.embeddings_dir) in Path(bag.store).parents
            where = f"the cache train-mil filled for this head ({head.embeddings_dir})" if trained else str(bag.store)
            print(f"{slide_path.name}: {counted(len(bag), 'tile embedding')} read from {where}; no tile embedded",
                  file=sys.stderr)
    used = options.replace(tissue_options=options.tissue_options or {}, output_downsample=(
        options.output_downsample or default_output_downsample(bag.grid.tile_size * bag.grid.scale)),
        pixel_composite=options.pixel_composite or (
            default_pixel_composite(encoder) if encoder is not None else None))
    method = options.method
    parameters = dict(used.hashed(), method=method if isinstance(method, str) else getattr(method, "__name__",
                                                                                           repr(method)))
    params = dict(slide=file_record(slide_path), head_sha256=head.weights_sha256, **source,
                  parameters=parameters, grid=bag.grid.to_dict(), n_tiles=len(bag))
    return MILPlan(slide_path, Path(out_dir), head, encoder, bag, used, parameters, params, parameters_hash(params),
                   dict(load_s=load_s, embedding_s=time.perf_counter() - t0))


def _features_bag(slide_path: Path, head: MILHead, options: MILOptions) -> SlideBag:
    """The bag of the slide's TRIDENT/CLAM features, checked against the slide and the head."""
    from lrp_captum.wsi.mil.feature_bags import features_bag, slide_features
    from lrp_captum.wsi.reader import slide_mpp

    slide = open_slide(slide_path)
    record = slide_features(options.features, slide, slide_path, in_dim=head.in_dim, patches=options.patches,
                            patch_size_level0=options.patch_size_level0)
    return features_bag(record, slide, slide_mpp(slide, slide_path, options.slide_mpp_override))


def slide_evidence(plan: MILPlan) -> SlideEvidence:
    """The head's prediction on the slide's bag and each tile's evidence for the target class."""
    t0 = time.perf_counter()
    head, options = plan.head, plan.options
    x = head.bag_input(plan.bag.features)
    with torch.no_grad():
        logits = head.model(x.unsqueeze(0))[0]
    probs = torch.softmax(logits, 0)
    t_idx = int(probs.argmax()) if options.target == "predicted" else head.class_index(options.target)
    ev = tile_evidence(options.method, head.model, x, t_idx, **(options.method_options or {}))
    scores = ev.scores.double().numpy()
    attention = None
    if hasattr(head.model, "attention_and_values"):
        with torch.no_grad():
            attention = head.model.attention_and_values(x.unsqueeze(0))[0][0].mean(0).numpy()
    return SlideEvidence(logits, probs, t_idx, scores, ev.per_dimension, attention,
                         np.argsort(-scores, kind="stable"), time.perf_counter() - t0)


def top_tile_maps(plan: MILPlan, evidence: SlideEvidence) -> TopTileMaps:
    """Pixel maps through the encoder of the ``top_tiles`` tiles of largest evidence (none for a
    method without per-dimension relevance)."""
    t0 = time.perf_counter()
    enc, bag = plan.encoder, plan.bag
    k = max(0, min(plan.options.top_tiles, len(bag))) if evidence.per_dimension is not None and enc else 0
    top = evidence.order[:k]
    side = enc.tile_size if enc else bag.grid.tile_size
    maps = np.zeros((0, side, side), np.float32)
    if len(top):
        ds = SlideTileDataset(plan.slide_path, bag.grid, bag.tiles)
        rgb = torch.stack([ds[int(i)][1] for i in top])
        relevance = evidence.per_dimension[torch.from_numpy(top.copy())].to(torch.float32)
        maps = encoder_pixel_maps(enc, rgb, relevance, plan.options.pixel_composite)
    return TopTileMaps(top, maps, time.perf_counter() - t0)


def _write_result(plan: MILPlan, evidence: SlideEvidence, maps: TopTileMaps, t_start: float) -> dict:
    """Stage the files, publish them into ``plan.out`` and write the manifest; returns it."""
    t0 = time.perf_counter()
    work = plan.out / WORK
    shutil.rmtree(work, ignore_errors=True)
    (work / "outputs").mkdir(parents=True)
    try:
        slide = open_slide(plan.slide_path)
        outputs = _write_outputs(work / "outputs", slide, plan, evidence, maps)
        publish_outputs(work / "outputs", plan.out, OUTPUT_FILES)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    timings = dict(plan.timings, head_s=evidence.seconds, pixel_maps_s=maps.seconds,
                   outputs_s=time.perf_counter() - t0, total_s=time.perf_counter() - t_start)
    return write_manifest(plan.out, _manifest(plan, slide, evidence, maps, outputs, timings))


def _write_outputs(stage: Path, slide, plan: MILPlan, evidence: SlideEvidence, maps: TopTileMaps) -> dict:
    """The files of a MIL explanation, into ``stage``; returns the manifest's ``outputs``."""
    import zarr

    bag, classes, d_out = plan.bag, plan.head.classes, plan.options.output_downsample
    vmax = _write_maps(stage, slide, bag, evidence, maps, d_out)
    target_name = classes[evidence.target]
    rank = np.empty(len(bag), np.int64)
    rank[evidence.order] = np.arange(1, len(bag) + 1)
    table = _tile_table(bag, evidence, rank, maps.top, [float(m.sum()) for m in maps.maps])
    geo = table.drop(columns=["pixel_map_sum", "pixel_map_to_evidence"]).rename(columns={
        "evidence": "relevance_sum", "evidence_pos": "relevance_pos", "evidence_neg": "relevance_neg"})
    geo["prediction"] = np.where(evidence.scores >= 0, f"for {target_name}", f"against {target_name}")
    tables = write_tables(stage, table, classes, geo)
    evidence_map = zarr.open_group(str(stage / "evidence.zarr"), mode="r")["evidence"]
    write_overlay_tiff(stage / "evidence.tif", evidence_map, mpp=bag.grid.slide_mpp * d_out, vmax=vmax)
    title = (f"{plan.slide_path.name}: {plan.head.name} predicts {classes[int(evidence.probs.argmax())]} "
             f"(p={float(evidence.probs.max()):.2f}); {plan.parameters['method']} evidence for {target_name}")
    write_overview(stage / "overview.png", slide, np.asarray(evidence_map[:]), d_out, vmax, title,
                   unit=f"evidence for {target_name} (logit units per tile)")
    return dict({"evidence": "evidence.zarr", "overlay": "evidence.tif"}, **tables, overview="overview.png")


def _manifest(plan: MILPlan, slide, evidence: SlideEvidence, maps: TopTileMaps, outputs: dict, timings: dict) -> dict:
    head, enc, bag, used = plan.head, plan.encoder, plan.bag, plan.options
    classes, t_idx, scores = head.classes, evidence.target, evidence.scores
    return dict(
        format=FORMAT, params_hash=plan.params_hash, outputs=outputs,
        slide=slide_record(plan.slide_path, slide, bag.grid.slide_mpp, plan.params["slide"]),
        head=dict(path=head.path, name=head.name, classes=classes, weights_sha256=head.weights_sha256),
        encoder=None if enc is None else dict(spec=enc.spec, identity=enc.identity, dim=enc.dim),
        features=None if enc is not None else dict(plan.params["features"], dim=int(bag.features.shape[1])),
        method=plan.parameters["method"], method_options=used.method_options or {},
        pixel_composite=used.pixel_composite, parameters=plan.parameters,
        prediction=dict(class_name=classes[int(evidence.probs.argmax())], probabilities=evidence.probs.tolist(),
                        logits=evidence.logits.tolist()),
        target=dict(class_name=classes[t_idx], index=t_idx, logit=float(evidence.logits[t_idx])),
        evidence_sum=float(scores.sum()), n_tiles=len(bag), grid=bag.grid.to_dict(),
        output_downsample=used.output_downsample, vmax=float(np.abs(scores).max()) or 1.0,
        top_tiles=[dict(tile_index=int(i), row=int(bag.tiles["row"][i]), col=int(bag.tiles["col"][i]),
                        evidence=float(scores[i]), pixel_relevance_sum=float(m.sum()),
                        pixel_to_evidence=_ratio(float(m.sum()), float(scores[i])))
                   for i, m in zip(maps.top, maps.maps)],
        sums=_sums(scores, float(evidence.logits[t_idx]), maps),
        embeddings=dict(store=str(bag.store), embedded_now=bag.embedded_now, cache_hit=bag.embedded_now == 0),
        timings=timings)


def _tile_table(bag: SlideBag, evidence: SlideEvidence, rank, top, pixel_sums):
    import pandas as pd

    tiles, grid = bag.tiles, bag.grid
    cols = {"tile_index": np.arange(len(bag)), "row": tiles["row"], "col": tiles["col"], "x0": tiles["x0"],
            "y0": tiles["y0"], "w0": tiles["w0"], "h0": tiles["h0"], "level": grid.level,
            "level_downsample": grid.level_downsample, "target_mpp": grid.target_mpp,
            "tissue_fraction": tiles["tissue"].astype(np.float64), "evidence": evidence.scores, "evidence_rank": rank}
    if evidence.per_dimension is not None:
        r = evidence.per_dimension.double().numpy()
        cols["evidence_pos"] = np.clip(r, 0, None).sum(1)
        cols["evidence_neg"] = np.clip(r, None, 0).sum(1)
    if evidence.attention is not None:
        cols["attention"] = evidence.attention.astype(np.float64)
    cols["pixel_map"] = np.isin(np.arange(len(bag)), top)
    pixel_sum = np.full(len(bag), np.nan)
    pixel_sum[np.asarray(top, np.int64)] = pixel_sums
    cols["pixel_map_sum"] = pixel_sum
    with np.errstate(divide="ignore", invalid="ignore"):
        cols["pixel_map_to_evidence"] = pixel_sum / evidence.scores
    return pd.DataFrame(cols)


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole != 0 else None


def _sums(scores: np.ndarray, logit: float, maps: TopTileMaps) -> dict:
    """How the explanation adds up: the tile evidence against the target logit, and each pixel
    map's sum against its tile's evidence (docs/mil.md, "Maps that add up")."""
    pixel = [float(m.sum()) for m in maps.maps]
    ratios = [r for r in (_ratio(p, float(scores[i])) for p, i in zip(pixel, maps.top)) if r is not None]
    return dict(evidence_sum=float(scores.sum()), target_logit=logit,
                evidence_to_logit=_ratio(float(scores.sum()), logit),
                pixel_map_to_evidence_min=min(ratios) if ratios else None,
                pixel_map_to_evidence_max=max(ratios) if ratios else None,
                pixel_maps_off_by_more_than_1_percent=sum(abs(r - 1.0) > 0.01 for r in ratios))


def _write_maps(stage: Path, slide, bag: SlideBag, evidence: SlideEvidence, top_maps: TopTileMaps, d_out) -> float:
    """Write ``evidence.zarr``; returns the colour scale (max |evidence|)."""
    import zarr

    scores, per_dimension = evidence.scores, evidence.per_dimension
    top, tile_maps = top_maps.top, top_maps.maps
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
    with atomic_path(stage / "evidence.zarr") as tmp:
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
