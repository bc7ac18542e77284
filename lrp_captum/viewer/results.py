"""Find slides and their WSI-pipeline result folders, and load a result with clear errors.

A result folder (written by :func:`lrp_captum.wsi.pipeline.explain_slide`) holds
``manifest.json``, ``relevance.zarr`` (float32 map at ``manifest["output_downsample"]`` relative
to level 0), ``tiles.csv`` (level-0 tile boxes with measurements), ``overlay.tif`` and
``overview.png``. A MIL explanation (:func:`lrp_captum.wsi.mil.explain.explain_mil_slide`,
``kind == "mil"``) holds ``evidence.zarr`` instead, whose ``evidence`` map is shown as the
relevance, and ``tiles.csv`` with each tile's ``evidence`` and ``attention``. This module only
reads them; it computes nothing but display statistics.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from lrp_captum.csv_cells import read_csv_frame
from lrp_captum.model_files import class_names
from lrp_captum.viewer.paths import UnsafePathError, check_inside, is_inside, resolve_under, shown_path
from lrp_captum.wsi.slide_files import SLIDE_SUFFIXES, ResultNameClash, result_name
REQUIRED_TILE_COLUMNS = ("x0", "y0", "w0", "h0")
# Maps larger than this are read lazily from zarr instead of held in memory.
IN_MEMORY_MAP_BYTES = 512 * 2**20
# A chunk is read whole: one larger than this is refused (the pipeline writes 1 MiB chunks), so a
# small file cannot claim a chunk that decompresses to gigabytes.
MAX_CHUNK_BYTES = 64 * 2**20
# Without a slide to compare with, a map of more pixels than this is refused.
MAX_UNCHECKED_MAP_PIXELS = 2**31


class ResultError(RuntimeError):
    """A result folder is missing, incomplete or unreadable; the message says which file and why."""


@dataclass
class SlideEntry:
    """One slide under the slides folder and the state of its result."""

    rel_path: str            # '/'-separated path relative to the slides folder
    path: Path
    result_dir: Path | None  # where its result is (or will be written); None when refused
    status: str              # "explained", "not explained", "incomplete", "corrupt", "refused"
    detail: str = ""


@dataclass
class SlideResult:
    """An opened result folder.

    Attributes
    ----------
    relevance : array-like, shape (H_d, W_d)
        Relevance map; pixel ``(i, j)`` covers level-0 pixels
        ``[j*downsample, (j+1)*downsample) x [i*downsample, (i+1)*downsample)``.
    probability : array-like or None, shape (C, H_d, W_d)
        Per-class probability maps on the same grid (NaN off tissue), when the pipeline wrote
        them; a 2-D map in the file is read as one class.
    downsample : float
        Map pixel size in level-0 pixels.
    tiles : pandas.DataFrame
        One row per tile; boxes ``x0, y0, w0, h0`` in level-0 pixels.
    vmax : float
        Colour-scale limit: the pipeline's recorded ``vmax`` (so the viewer matches overlay.tif),
        else the 99.5th percentile of |relevance| over finite non-zero pixels.
    """

    result_dir: Path
    manifest: dict
    relevance: object
    probability: object | None
    downsample: float
    tiles: object
    vmax: float
    classes: list = field(default_factory=list)
    kind: str = "tiles"  # "tiles" (explain_slide) or "mil" (explain_mil_slide: the relevance is the tile evidence)

    @property
    def map_shape(self) -> tuple[int, int]:
        return tuple(self.relevance.shape)

    def parameter(self, key: str, default=None):
        """A run parameter (composite, target, output_mode, ...) from the manifest."""
        params = self.manifest.get("parameters")
        if isinstance(params, dict) and key in params:
            return params[key]
        return self.manifest.get(key, default)


def result_dir_for(slide_rel_path: str, results_dir: str | Path, slides_dir: str | Path | None = None) -> Path:
    """Folder where the result of a slide is written: ``results/<relative path without suffix>``
    (:func:`lrp_captum.wsi.slide_files.result_name`, the name ``slide cohort`` gives it too).

    Returns
    -------
    Path
        The folder with symbolic links resolved; it lies inside ``results_dir`` (it may not exist).

    Raises
    ------
    UnsafePathError
        When the folder, or one above it, is a symbolic link that leaves ``results_dir``; and,
        given ``slides_dir``, when another slide file there would have the same result folder.
    """
    rel = PurePosixPath(slide_rel_path)
    try:
        name = result_name(Path(slides_dir, *rel.parts)) if slides_dir is not None else rel.stem
    except ResultNameClash as exc:
        raise UnsafePathError(str(exc)) from None
    stem = (rel.parent / name).as_posix()
    root = Path(results_dir)
    if not root.is_dir():  # nothing written yet, so no link to follow
        return root.resolve().joinpath(*PurePosixPath(stem).parts)
    try:
        return resolve_under(root, stem)
    except UnsafePathError:
        raise UnsafePathError(f"the result folder of {slide_rel_path} ({stem}/) lies outside the results "
                              "folder (symbolic link?); it is not read. Remove the link.") from None


def check_result_files(result_dir: Path, results_dir: str | Path, deep: bool = True) -> None:
    """Refuse a result whose files lead outside ``results_dir`` through symbolic links.

    Checks the folder and its entries, and with ``deep`` every link inside them (a walk over the
    chunk files of ``relevance.zarr``: done when a result is loaded, not each time slides are
    listed); :func:`lrp_captum.viewer.paths.check_inside`, as for every page.

    Raises
    ------
    UnsafePathError
        Naming the first file that leaves the folder.
    """
    check_inside(results_dir, [result_dir], depth=None if deep else 1)


def _result_status(result_dir: Path, results_dir: Path) -> tuple[str, str]:
    if not result_dir.is_dir():
        return "not explained", ""
    try:
        check_result_files(result_dir, results_dir, deep=False)
    except UnsafePathError as exc:
        return "refused", str(exc)
    manifest = result_dir / "manifest.json"
    if not manifest.is_file():
        return "incomplete", "no manifest.json yet (a run may be in progress or was interrupted)"
    try:
        maps = "evidence.zarr" if is_mil_manifest(json.loads(manifest.read_text())) else "relevance.zarr"
    except (OSError, ValueError) as exc:
        return "corrupt", f"manifest.json unreadable: {exc}"
    missing = [n for n in (maps, "tiles.csv") if not (result_dir / n).exists()]
    if missing:
        return "corrupt", "missing " + ", ".join(missing)
    return "explained", ""


def list_slides(slides_dir: str | Path, results_dir: str | Path, max_depth: int = 3) -> list[SlideEntry]:
    """List OpenSlide-readable files under ``slides_dir`` (recursively) with their result status.

    Only regular files inside ``slides_dir`` are listed; symbolic links leaving it are skipped.
    A slide whose result folder leads outside ``results_dir`` is listed as ``refused``, with no
    result folder.
    """
    base = Path(slides_dir).resolve()
    if not base.is_dir():
        raise ResultError("the slides folder does not exist; pass an existing folder with --slides")
    entries = []
    for path in sorted(base.rglob("*")):
        rel = path.relative_to(base)
        if len(rel.parts) > max_depth or path.suffix.lower() not in SLIDE_SUFFIXES or not path.is_file():
            continue
        if any(part.startswith(".") for part in rel.parts):
            continue
        resolved = path.resolve()
        if resolved == base or not is_inside(resolved, base):
            continue
        rel_posix = rel.as_posix()
        try:
            rdir = result_dir_for(rel_posix, results_dir, base)
        except UnsafePathError as exc:
            entries.append(SlideEntry(rel_posix, resolved, None, "refused", str(exc)))
            continue
        status, detail = _result_status(rdir, Path(results_dir))
        entries.append(SlideEntry(rel_posix, resolved, rdir, status, detail))
    return entries


def _open_maps(zarr_path: Path, name: str):
    import zarr

    try:
        node = zarr.open(str(zarr_path), mode="r")
    except Exception as exc:  # zarr raises several unrelated types for damaged stores
        raise ResultError(f"{name} cannot be opened as zarr ({type(exc).__name__}); "
                          "re-run the explanation for this slide") from exc
    if hasattr(node, "shape"):
        return node, None
    keys = set(node.array_keys())
    rel_key = next((k for k in ("relevance", "evidence", "map", "0") if k in keys), None)
    if rel_key is None:
        raise ResultError(f"{name} holds no 'relevance' array (found: {sorted(keys)}); "
                          "re-run the explanation for this slide")
    prob_key = next((k for k in ("probability", "prob", "probabilities") if k in keys), None)
    return node[rel_key], (node[prob_key] if prob_key else None)


def _materialise(arr, what: str, name: str, ndim: int = 2):
    if arr is None:
        return None
    if arr.ndim != ndim:
        want = "(rows, cols)" if ndim == 2 else "(classes, rows, cols)"
        raise ResultError(f"{name}: {what} map has shape {arr.shape}, expected {ndim}-D {want}; "
                          "re-run the explanation")
    if arr.nbytes > IN_MEMORY_MAP_BYTES:
        return arr
    try:
        return np.asarray(arr[...], dtype=np.float32)
    except Exception as exc:
        raise ResultError(f"{name}: {what} map cannot be read ({type(exc).__name__}); "
                          "the file is damaged, re-run the explanation") from exc


def robust_vmax(relevance, q: float = 99.5, max_samples: int = 4_000_000, windows: int = 16,
                window: int = 512) -> float:
    """Colour-scale limit: ``q``-th percentile of |relevance| over finite non-zero pixels.

    A map in memory is sampled on a regular grid of at most ``max_samples`` pixels; a map read
    from disk (larger than :data:`IN_MEMORY_MAP_BYTES`) through at most ``windows`` windows of
    ``window`` x ``window`` pixels, each inside one chunk, so the work is bounded whatever the
    map claims to be.
    """
    h, w = relevance.shape
    if isinstance(relevance, np.ndarray):
        step = max(1, int(np.ceil(np.sqrt(h * w / max_samples))))
        sample = np.abs(np.asarray(relevance[::step, ::step], dtype=np.float64))
    else:
        ch, cw = (tuple(getattr(relevance, "chunks", (window, window)))[-2:] + (window, window))[:2]
        side = max(1, int(np.sqrt(windows)))
        rows = np.unique(np.linspace(0, max(h - 1, 0), side).astype(int) // ch * ch)
        cols = np.unique(np.linspace(0, max(w - 1, 0), side).astype(int) // cw * cw)
        parts = [np.asarray(relevance[r:r + min(window, ch), c:c + min(window, cw)], dtype=np.float64).ravel()
                 for r in rows for c in cols]
        sample = np.abs(np.concatenate(parts)) if parts else np.zeros(0)
    sample = sample[np.isfinite(sample) & (sample > 0)]
    if sample.size == 0:
        return 1.0
    vmax = float(np.percentile(sample, q))
    return vmax if vmax > 0 else float(sample.max())


def expected_map_shape(manifest: dict, downsample: float, slide_dimensions=None) -> tuple[int, int] | None:
    """``(rows, cols)`` a result's map must have: its slide's level-0 size over ``downsample``.

    The slide's size is ``slide_dimensions`` (the slide the result is shown on) or, without it,
    the one recorded in the manifest; None when neither is known.
    """
    dims = slide_dimensions
    if dims is None:
        recorded = manifest.get("slide") if isinstance(manifest.get("slide"), dict) else {}
        dims = recorded.get("dimensions")
    try:
        w0, h0 = (int(v) for v in dims)
    except (TypeError, ValueError):
        return None
    return int(np.ceil(h0 / downsample)), int(np.ceil(w0 / downsample))


def check_map_shape(arr, what: str, name: str, expected: tuple[int, int] | None, manifest: dict) -> None:
    """Refuse a map, before any of it is read, whose size does not fit its slide and manifest.

    Raises
    ------
    ResultError
        The map has another number of pixels than the slide gives at the result's downsample
        (1 px of rounding allowed) or than the manifest's ``relevance_shape``, more pixels than
        :data:`MAX_UNCHECKED_MAP_PIXELS` with nothing to compare with, or chunks larger than
        :data:`MAX_CHUNK_BYTES`.
    """
    shape = tuple(int(n) for n in arr.shape)
    if len(shape) not in (2, 3):
        return  # the dimension check of _materialise names it
    rows, cols = shape[-2:]
    recorded = manifest.get("relevance_shape")
    again = "the file does not belong to this result or is damaged: re-run the explanation"
    if isinstance(recorded, list) and len(recorded) == 2 and [rows, cols] != [int(n) for n in recorded]:
        raise ResultError(f"{name}: the {what} map is {cols} x {rows} px but the manifest records "
                          f"{recorded[1]} x {recorded[0]}; {again}")
    if expected is not None and (abs(rows - expected[0]) > 1 or abs(cols - expected[1]) > 1):
        raise ResultError(f"{name}: the {what} map is {cols} x {rows} px but this slide needs "
                          f"{expected[1]} x {expected[0]} at its downsample; {again}")
    if expected is None and rows * cols > MAX_UNCHECKED_MAP_PIXELS:
        raise ResultError(f"{name}: the {what} map claims {cols} x {rows} px and the slide's size is not "
                          f"known to check it; {again}")
    chunks = getattr(arr, "chunks", None)
    itemsize = getattr(getattr(arr, "dtype", None), "itemsize", 4)
    if chunks is not None and int(np.prod([int(c) for c in chunks])) * itemsize > MAX_CHUNK_BYTES:
        raise ResultError(f"{name}: the {what} map is stored in chunks of {tuple(int(c) for c in chunks)} px, "
                          f"too large to read safely; {again}")


def load_result(result_dir: str | Path, results_dir: str | Path | None = None,
                slide_dimensions: tuple[int, int] | None = None) -> SlideResult:
    """Open a result folder; raise :class:`ResultError` naming the bad file for anything wrong.

    Parameters
    ----------
    result_dir : path
        The folder written by the WSI pipeline.
    results_dir : path, optional
        The configured results folder: files are named relative to it in messages, and any file
        that leads outside it (symbolic link) is refused with :class:`UnsafePathError`.
        Without it, files are named relative to the result folder's parent.
    slide_dimensions : (width, height), optional
        Level-0 size of the slide the result is shown on: the maps must fit it
        (:func:`check_map_shape`, before anything is read); without it, the size recorded in
        the manifest is used.
    """

    rdir = Path(result_dir)
    root = Path(results_dir) if results_dir is not None else rdir.parent

    def name(path: Path) -> str:
        return shown_path(path, root)

    if not rdir.is_dir():
        raise ResultError(f"no result folder {name(rdir)}; explain the slide first")
    if results_dir is not None:
        check_result_files(rdir, results_dir)
    mpath = rdir / "manifest.json"
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise ResultError(f"{name(mpath)} is missing: the explanation has not finished; run it (again)") from None
    except (OSError, ValueError) as exc:
        raise ResultError(f"{name(mpath)} is not valid JSON ({exc}); re-run the explanation") from exc
    if not isinstance(manifest, dict):
        raise ResultError(f"{name(mpath)} does not hold a JSON object; re-run the explanation")
    try:
        downsample = float(manifest["output_downsample"])
    except (KeyError, TypeError, ValueError):
        raise ResultError(f"{name(mpath)} lacks a numeric 'output_downsample'; re-run the explanation") from None
    if not downsample > 0:
        raise ResultError(f"{name(mpath)}: output_downsample must be > 0, got {downsample}")

    mil = is_mil_manifest(manifest)
    zpath = rdir / ("evidence.zarr" if mil else "relevance.zarr")
    if not zpath.exists():
        raise ResultError(f"{name(zpath)} is missing; re-run the explanation")
    rel, prob = _open_maps(zpath, name(zpath))
    expected = expected_map_shape(manifest, downsample, slide_dimensions)
    for arr, what in ((rel, "relevance"), (prob, "probability")):
        if arr is not None:
            check_map_shape(arr, what, name(zpath), expected, manifest if what == "relevance" else {})
    if rel.ndim == 3 and rel.shape[0] == 1:
        rel = rel[0]
    relevance = _materialise(rel, "relevance", name(zpath))
    if prob is not None and prob.ndim == 2:
        prob = np.asarray(prob[...], dtype=np.float32)[None]
    probability = _materialise(prob, "probability", name(zpath), ndim=3)
    if probability is not None and probability.shape[1:] != relevance.shape:
        raise ResultError(f"{name(zpath)}: probability map {probability.shape} and relevance map "
                          f"{relevance.shape} differ in shape; re-run the explanation")

    tpath = rdir / "tiles.csv"
    try:
        tiles = read_csv_frame(tpath)
    except FileNotFoundError:
        raise ResultError(f"{name(tpath)} is missing; re-run the explanation") from None
    except Exception as exc:
        raise ResultError(f"{name(tpath)} cannot be read as CSV ({type(exc).__name__}); "
                          "re-run the explanation") from exc
    missing = [c for c in REQUIRED_TILE_COLUMNS if c not in tiles.columns]
    if missing:
        raise ResultError(f"{name(tpath)} lacks column(s) {', '.join(missing)}; re-run the explanation")
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    head = manifest.get("head") if isinstance(manifest.get("head"), dict) else {}
    classes = manifest.get("classes") or model.get("classes") or head.get("classes") or []
    try:
        classes = class_names(classes, name(rdir / "manifest.json")) if classes else []
    except ValueError as exc:
        raise ResultError(f"{exc}; re-run the explanation") from None
    try:
        vmax = float(manifest["vmax"])
    except (KeyError, TypeError, ValueError):
        vmax = 0.0
    if not (np.isfinite(vmax) and vmax > 0):
        vmax = robust_vmax(relevance)
    return SlideResult(rdir, manifest, relevance, probability, downsample, tiles, vmax, list(classes),
                       "mil" if mil else "tiles")


def is_mil_manifest(manifest) -> bool:
    """Whether a result's manifest is a MIL explanation's (:func:`~lrp_captum.wsi.mil.explain.explain_mil_slide`)."""
    from lrp_captum.wsi.mil.explain import FORMAT

    return isinstance(manifest, dict) and manifest.get("format") == FORMAT


def top_tiles(tiles, k: int = 8, by: str = "relevance_pos", negative: bool = False):
    """The ``k`` tiles with the largest positive relevance, or the most negative relevance.

    Negative relevance of a tile is ``relevance_sum - relevance_pos`` (its negative part) when
    ``relevance_neg`` is not in the table.
    """
    df = tiles.copy()
    if negative:
        if "relevance_neg" in df.columns:
            col = "relevance_neg"
        elif {"relevance_sum", "relevance_pos"} <= set(df.columns):
            df["relevance_neg"] = df["relevance_sum"] - df["relevance_pos"]
            col = "relevance_neg"
        else:
            col = "relevance_sum"
        df = df[df[col] < 0]
        return df.nsmallest(k, col)
    if by not in df.columns:
        by = "relevance_sum" if "relevance_sum" in df.columns else None
    if by is None:
        return df.head(0)
    df = df[df[by] > 0]
    return df.nlargest(k, by)
