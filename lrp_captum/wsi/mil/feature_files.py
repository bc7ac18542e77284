"""Per-slide tile features that TRIDENT or CLAM already computed, read into one record.

Layouts read (coordinates are always the tile's top-left corner in level-0 pixels):

- TRIDENT ``<job>/<mag>x_<ps>px_<ov>px_overlap/features_<encoder>/<slide>.h5``: datasets
  ``features`` (N, D) and ``coords`` (N, 2); the patching attributes (``patch_size``,
  ``level0_magnification``, ``target_magnification``, ``patch_size_level0``, ``overlap``,
  optionally ``level0_width``/``level0_height``) sit on ``coords``. A features file made from
  CLAM coordinates carries CLAM's attributes instead; both dialects are recognised.
- CLAM ``<feat_dir>/h5_files/<slide>.h5``: ``features`` and ``coords`` with no attributes; the
  tile size comes from CLAM's patch file ``patches/<slide>.h5`` (attributes ``patch_size`` at
  ``patch_level``, ``downsample``) or from ``patch_size_level0``.
- CLAM ``<feat_dir>/pt_files/<slide>.pt``: a (N, D) tensor (read with ``weights_only=True``),
  its coordinates from the sibling ``h5_files/<slide>.h5`` or the patch file, in the same order.
- A TRIDENT job folder as a whole: :func:`trident_feature_files` maps slide names to files.

:func:`read_feature_file` checks the file on its own (N features = N coordinates, N > 0, finite
features, tile size known); :func:`check_against_slide` checks it against the slide (level-0
bounds, pyramid level, the head's input size D). Each mismatch is a ``ValueError`` naming the
file, the numbers and what to do.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lrp_captum.wording import counted

__all__ = ["SlideFeatures", "read_feature_file", "check_against_slide", "trident_feature_files",
           "TRIDENT_ENCODER_DIMS"]

#: feature size of TRIDENT's patch encoders (``features_<name>`` folders), for error messages
TRIDENT_ENCODER_DIMS = {
    "uni_v1": 1024, "uni_v2": 1536, "conch_v1": 512, "conch_v15": 768, "virchow": 2560, "virchow2": 2560,
    "phikon": 768, "phikon_v2": 1024, "gigapath": 1536, "hoptimus0": 1536, "hoptimus1": 1536,
    "ctranspath": 768, "resnet50": 1024, "musk": 1024, "hibou_l": 1024,
}
_CDIR = re.compile(r"^[\d.]+x_\d+px_\d+px_overlap$")


@dataclass
class SlideFeatures:
    """The tile features of one slide and where its tiles are.

    Attributes
    ----------
    features : (N, D) float32 tile features, row i belonging to ``coords[i]``.
    coords : (N, 2) int64 top-left (x, y) of each tile in level-0 pixels.
    tile_side0 : side of a tile in level-0 pixels.
    source_format : ``"trident_h5"``, ``"clam_h5"`` or ``"clam_pt"``.
    path : the features file; ``coords_path`` the file the coordinates and attributes came from.
    patch_size : tile side in pixels at ``level`` or at ``magnification``, as the file says.
    level : CLAM's ``patch_level`` (pyramid level the tiles were read at), or None.
    magnification : TRIDENT's ``target_magnification`` (×), or None.
    level0_magnification : TRIDENT's estimate of the slide's level-0 magnification, or None.
    downsample : CLAM's level downsample (dx, dy) of ``level``, or None.
    level0_size : (W, H) of the slide the coordinates were made on, when the file records it.
    encoder : the encoder name the file records, or "".
    slide_name : the slide name the file records, or "".
    """

    features: torch.Tensor
    coords: torch.Tensor
    tile_side0: float
    source_format: str
    path: str
    coords_path: str
    patch_size: Optional[int] = None
    level: Optional[int] = None
    magnification: Optional[float] = None
    level0_magnification: Optional[float] = None
    downsample: Optional[tuple] = None
    level0_size: Optional[tuple] = None
    encoder: str = ""
    slide_name: str = ""
    attrs: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return int(self.features.shape[0])


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("reading TRIDENT/CLAM feature files needs h5py: pip install 'lrp-captum[mil]'") from None
    return h5py


def _attr(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return tuple(value.tolist())
    return value.item() if isinstance(value, np.generic) else value


def _read_h5(path: Path, need_features: bool) -> tuple[Optional[np.ndarray], np.ndarray, dict, dict]:
    """(features or None, coords, coords attributes, features attributes) of an HDF5 file."""
    h5py = _h5py()
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path} is not an HDF5 file ({exc}); expected a TRIDENT/CLAM features or patch file") from None
    with f:
        names = sorted(f.keys())
        wanted = ("features", "coords") if need_features else ("coords",)
        for name in wanted:
            if name not in f or not isinstance(f[name], h5py.Dataset):
                old = " (CLAM's old non-fp patch layout with 'imgs': re-run create_patches_fp.py)" if "imgs" in f else ""
                raise ValueError(f"{path}: no dataset {name!r} (found: {names}){old}")
        # one read per dataset: the writers chunk row by row, reading rows singly would be slow
        feats = f["features"][()] if need_features else None
        return feats, f["coords"][()], {k: _attr(v) for k, v in f["coords"].attrs.items()}, \
            ({k: _attr(v) for k, v in f["features"].attrs.items()} if need_features else {})


def _tile_geometry(attrs: dict, where: Path) -> Optional[dict]:
    """Tile side at level 0 and the patching facts from coords attributes (either dialect), or None."""
    if "patch_level" in attrs and "patch_size" in attrs:  # CLAM dialect
        ds = attrs.get("downsample", (1.0, 1.0))
        ds = tuple(float(d) for d in (ds if isinstance(ds, tuple) else (ds, ds)))
        side = float(attrs["patch_size"]) * ds[0] * float(attrs.get("custom_downsample", 1))
        return dict(tile_side0=side, patch_size=int(attrs["patch_size"]), level=int(attrs["patch_level"]),
                    downsample=ds)
    if {"patch_size", "level0_magnification", "target_magnification"} <= attrs.keys():  # TRIDENT dialect
        mag0, mag = float(attrs["level0_magnification"]), float(attrs["target_magnification"])
        side = float(round(int(attrs["patch_size"]) * mag0 / mag))
        stated = attrs.get("patch_size_level0")
        if stated is not None and abs(float(stated) - side) > 1:
            warnings.warn(f"{where}: patch_size_level0 = {stated} but patch_size × level0/target magnification "
                          f"= {side:g}; using {side:g}, the size TRIDENT reads", stacklevel=3)
        return dict(tile_side0=side, patch_size=int(attrs["patch_size"]), magnification=mag,
                    level0_magnification=mag0)
    if "patch_size_level0" in attrs:
        return dict(tile_side0=float(attrs["patch_size_level0"]))
    return None


def _patch_file(features_path: Path, patches) -> tuple[Optional[Path], list]:
    """CLAM's patch file for a features file: ``patches`` (a file, or a folder holding
    ``<slide>.h5`` or ``patches/<slide>.h5``), else ``<feat_dir>/../patches/<slide>.h5``."""
    stem = features_path.stem
    if patches is not None:
        patches = Path(patches)
        tried = [patches] if patches.suffix == ".h5" else [patches / f"{stem}.h5", patches / "patches" / f"{stem}.h5",
                                                          patches / f"{stem}_patches.h5"]
    else:
        tried = [features_path.parent.parent / "patches" / f"{stem}.h5",
                 features_path.parent.parent.parent / "patches" / f"{stem}.h5"]
    return next((p for p in tried if p.is_file()), None), tried


def _read_pt_features(path: Path) -> np.ndarray:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- any refusal of the unpickler is the same answer
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"it pickles {refused.group(1)}" if refused else type(exc).__name__
        raise ValueError(f"{path} is not a plain tensor file ({what}; read with torch.load(weights_only=True)). "
                         f"CLAM's pt_files hold a (N, D) tensor; for TRIDENT use the .h5 feature files") from None
    if not torch.is_tensor(obj) or obj.dim() != 2:
        shape = f" of shape {tuple(obj.shape)}" if torch.is_tensor(obj) else ""
        raise ValueError(f"{path} holds a {type(obj).__name__}{shape}, not a (N, D) feature tensor as CLAM's "
                         f"pt_files do")
    return obj.float().numpy()


def read_feature_file(path, *, patches=None, patch_size_level0: Optional[float] = None) -> SlideFeatures:
    """Read one slide's TRIDENT or CLAM feature file and check it on its own.

    Parameters
    ----------
    path : a features ``.h5`` (TRIDENT, or CLAM ``h5_files/``) or CLAM ``pt_files/<slide>.pt``.
    patches : CLAM's patch file ``<slide>.h5`` or the folder holding it (directly or under
        ``patches/``); default: ``../patches/<slide>.h5`` next to the features folder. Needed for
        the tile size of ``h5_files`` and for the coordinates of a ``.pt`` without ``h5_files``.
    patch_size_level0 : tile side in level-0 pixels, when no file records it (overrides the
        attributes if given).

    Returns
    -------
    :class:`SlideFeatures`.

    Raises
    ------
    ValueError naming the file: not HDF5, no ``features``/``coords``, N features ≠ N
    coordinates, no tiles, non-finite features, tile size unknown, a pickled object.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature file {path} does not exist")
    coords_path, patch_attrs, tried = path, {}, []
    if path.suffix == ".pt":
        feats = _read_pt_features(path)
        sibling = path.parent.parent / "h5_files" / f"{path.stem}.h5"
        if sibling.is_file():
            h5_feats, coords, _, _ = _read_h5(sibling, need_features=True)
            if h5_feats.shape != feats.shape:
                raise ValueError(f"{path}: features of shape {feats.shape} but {sibling} holds {h5_feats.shape}; "
                                 f"the two come from different runs")
            coords_path = sibling
        patch, tried = _patch_file(path, patches)
        if patch is not None:
            _, patch_coords, patch_attrs, _ = _read_h5(patch, need_features=False)
            if coords_path == path:
                coords, coords_path = patch_coords, patch
        elif coords_path == path:
            raise ValueError(f"{path}: a .pt feature file has no coordinates and neither {sibling} nor a patch file "
                             f"({', '.join(map(str, tried))}) exists; pass patches=<CLAM patches folder>")
        source, attrs, feat_attrs = "clam_pt", patch_attrs, {}
    else:
        feats, coords, attrs, feat_attrs = _read_h5(path, need_features=True)
        source = "trident_h5" if attrs else "clam_h5"
        if not attrs:
            patch, tried = _patch_file(path, patches)
            if patch is not None:
                _, _, attrs, _ = _read_h5(patch, need_features=False)
                coords_path = patch
    n_feat = feats.shape[0] if feats.ndim else 0
    if feats.ndim != 2 or n_feat == 0:
        raise ValueError(f"{path}: no tiles (features of shape {feats.shape}); the slide had no tissue tiles "
                         f"at this setting, so there is nothing to explain")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"{coords_path}: coords of shape {coords.shape}, expected (N, 2) level-0 (x, y)")
    if n_feat != len(coords):
        raise ValueError(f"{path}: {n_feat} feature rows but {len(coords)} coordinates in {coords_path}; "
                         f"features and coordinates must come from the same patching run")
    if not np.isfinite(feats).all():
        bad = int((~np.isfinite(feats)).any(axis=1).sum())
        raise ValueError(f"{path}: {bad} of {n_feat} feature rows hold NaN or infinity; re-extract the features")
    geometry = _tile_geometry(attrs, coords_path)
    if patch_size_level0 is not None:
        geometry = dict(geometry or {}, tile_side0=float(patch_size_level0))
    if geometry is None:
        why = f"coords attributes: {', '.join(sorted(attrs)) or 'none'}"
        if tried:
            why += f"; no CLAM patch file at {' or '.join(map(str, tried))}"
        raise ValueError(f"{path}: tile size unknown ({why}); pass patches=<CLAM patch file or folder> or "
                         f"patch_size_level0=<tile side in level-0 px> (CLI: --patch-size-level0)")
    if len(np.unique(coords, axis=0)) != len(coords):
        warnings.warn(f"{coords_path}: {len(coords) - len(np.unique(coords, axis=0))} duplicate coordinates "
                      f"(a file appended to twice?)", stacklevel=2)
    size = (attrs.get("level0_width"), attrs.get("level0_height"))
    return SlideFeatures(
        features=torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)),
        coords=torch.from_numpy(np.ascontiguousarray(coords, dtype=np.int64)), source_format=source,
        path=str(path), coords_path=str(coords_path),
        level0_size=None if None in size else (int(size[0]), int(size[1])),
        encoder="" if feat_attrs.get("encoder") in (None, "None") else str(feat_attrs["encoder"]),
        slide_name=str(feat_attrs.get("name", attrs.get("name", ""))), attrs=attrs, **geometry)


def _magnification_bucket(mpp: float) -> int:
    """TRIDENT's level-0 magnification estimate from µm per pixel."""
    for limit, mag in ((0.16, 80), (0.2, 60), (0.3, 40), (0.6, 20), (1.2, 10), (2.4, 5)):
        if mpp < limit:
            return mag
    return 0


def check_against_slide(features: SlideFeatures, slide=None, *, level0_size=None, in_dim: Optional[int] = None,
                        encoder_dims: dict = TRIDENT_ENCODER_DIMS) -> None:
    """Raise ``ValueError`` unless the features fit the slide and the head.

    Parameters
    ----------
    features : from :func:`read_feature_file`.
    slide : an OpenSlide handle (level-0 size, pyramid levels and mpp are checked), or None.
    level0_size : (W, H) in level-0 pixels, when no handle is given.
    in_dim : the head's input size D, or None to skip that check.

    Every tile's top-left must lie inside the slide (tiles at the right and bottom edges may hang
    over, as TRIDENT and CLAM cut them); a recorded ``level0_width``/``level0_height`` must equal
    the slide's; CLAM's ``patch_level`` must exist and its downsample agree with the slide's
    within 1 %.
    """
    where = features.path
    if in_dim is not None and features.dim != in_dim:
        enc = f" (encoder {features.encoder!r})" if features.encoder else ""
        known = [k for k, d in encoder_dims.items() if d == in_dim]
        hint = f"; TRIDENT encoders giving {in_dim}-d features: {', '.join(known)}" if known else ""
        raise ValueError(f"{where}: features are {features.dim}-d{enc} but the head expects {in_dim}; use the "
                         f"features of the encoder the head was trained on{hint}")
    if slide is not None:
        level0_size = slide.dimensions
    if level0_size is None:
        return
    W, H = int(level0_size[0]), int(level0_size[1])
    if features.level0_size is not None and tuple(features.level0_size) != (W, H):
        raise ValueError(f"{features.coords_path}: made on a slide of {features.level0_size[0]}×"
                         f"{features.level0_size[1]} level-0 px, but this slide is {W}×{H}; pair the features "
                         f"with the slide they were extracted from")
    xy = features.coords.numpy()
    outside = (xy[:, 0] < 0) | (xy[:, 0] >= W) | (xy[:, 1] < 0) | (xy[:, 1] >= H)
    if outside.any():
        first = ", ".join(f"({x}, {y})" for x, y in xy[outside][:3].tolist())
        raise ValueError(f"{features.coords_path}: {int(outside.sum())} of {len(xy)} tile corners lie outside the "
                         f"slide's {W}×{H} level-0 px (first: {first}); these coordinates belong to another "
                         f"slide or are not at level 0")
    overhang = np.maximum(xy + features.tile_side0 - np.array([W, H]), 0).max(axis=1)
    over = int((overhang >= features.tile_side0 / 2).sum())
    if over:
        warnings.warn(f"{features.coords_path}: {counted(over, 'tile')} {'hangs' if over == 1 else 'hang'} over the "
                      f"slide edge by half {'its' if over == 1 else 'their'} side or more", stacklevel=2)
    if slide is None:
        return
    if features.level is not None:
        if features.level >= slide.level_count:
            raise ValueError(f"{features.coords_path}: patch_level {features.level} but the slide has "
                             f"{slide.level_count} levels; pair the features with the slide they come from")
        ds, ds_file = float(slide.level_downsamples[features.level]), features.downsample[0]
        if abs(ds_file - ds) > 0.01 * ds:
            raise ValueError(f"{features.coords_path}: downsample {ds_file:g} at patch_level {features.level} "
                             f"but the slide's is {ds:g}; the features were made on another scan")
    if features.level0_magnification is not None:
        mpp = slide.properties.get("openslide.mpp-x")
        if mpp is not None and _magnification_bucket(float(mpp)) != features.level0_magnification:
            warnings.warn(f"{where}: level0_magnification {features.level0_magnification:g} but the slide's "
                          f"{float(mpp):g} µm/px suggests {_magnification_bucket(float(mpp))}; tile size "
                          f"{features.tile_side0:g} level-0 px taken from the file", stacklevel=2)


def trident_feature_files(job_dir, *, encoder: Optional[str] = None,
                          patching: Optional[str] = None) -> dict[str, Path]:
    """Slide name -> features ``.h5`` of a TRIDENT job folder.

    Parameters
    ----------
    job_dir : the TRIDENT ``--job_dir``, one patching folder in it
        (``<mag>x_<ps>px_<ov>px_overlap``), or a ``features_<encoder>`` folder.
    encoder : the encoder name of ``features_<encoder>``; needed when there are several.
    patching : the patching folder's name; needed when there are several.

    Raises ``ValueError`` listing the candidates when the choice is ambiguous or there is none.
    """
    job = Path(job_dir)
    if not job.is_dir():
        raise FileNotFoundError(f"TRIDENT job folder {job} does not exist")
    if job.name.startswith("features_"):
        feature_dir = job
    else:
        cdir = job if _CDIR.match(job.name) else job / _the_one(
            job, [p.name for p in job.iterdir() if p.is_dir() and _CDIR.match(p.name)], patching,
            "TRIDENT patching folders (<mag>x_<ps>px_<ov>px_overlap)", "patching")
        feature_dir = cdir / ("features_" + _the_one(
            cdir, [p.name[len("features_"):] for p in cdir.glob("features_*") if p.is_dir()], encoder,
            "features_<encoder> folders", "encoder"))
    files = {p.stem: p for p in sorted(feature_dir.glob("*.h5"))}
    if not files:
        raise ValueError(f"{feature_dir}: no <slide>.h5 feature files")
    return files


def _the_one(parent: Path, names: list, chosen: Optional[str], what: str, option: str) -> str:
    """The one of ``names`` (or the ``chosen`` one); ``ValueError`` listing them otherwise."""
    names = sorted(n for n in names if chosen is None or n == chosen)
    if len(names) != 1:
        matching = f" matching {chosen!r}" if chosen else ""
        raise ValueError(f"{parent}: {len(names) or 'no'} {what}{matching}{': ' + ', '.join(names) if names else ''}; "
                         f"pass {option}=<name>")
    return names[0]
