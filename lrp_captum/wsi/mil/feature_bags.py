"""A slide's TRIDENT/CLAM features as the MIL bag an explanation is written from: no tile is embedded.

:func:`feature_files_in` finds the feature file of every slide in a folder (a TRIDENT job
folder, CLAM's feature folder or its ``h5_files/``/``pt_files/``), :func:`slide_features` reads
one slide's and checks it against the slide and the head, and :func:`features_bag` turns it into
a :class:`~lrp_captum.wsi.mil.embeddings.SlideBag`: the tile table (level-0 boxes from the
coordinates and the tile side the file records) and a grid whose tiles are the file's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lrp_captum.wsi.grid import TileGrid
from lrp_captum.wsi.mil.embeddings import SlideBag
from lrp_captum.wsi.mil.feature_files import SlideFeatures, check_against_slide, read_feature_file, \
    trident_feature_files

__all__ = ["feature_files_in", "slide_features", "features_bag"]


def feature_files_in(folder) -> dict[str, Path]:
    """Slide name (file name without suffix) -> feature file, for every slide of ``folder``.

    ``folder`` is a TRIDENT job folder (or its patching or ``features_<encoder>`` folder), CLAM's
    feature folder (holding ``h5_files/``), or a folder of ``<slide>.h5`` / ``<slide>.pt`` files
    (CLAM's ``h5_files/``, ``pt_files/``). Raises ``ValueError`` naming the folder when it holds
    none, or several TRIDENT encoders or patchings to choose from.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"features folder {folder} does not exist")
    if (folder / "h5_files").is_dir():
        folder = folder / "h5_files"
    for suffix in (".h5", ".pt"):
        direct = {p.stem: p for p in sorted(folder.glob(f"*{suffix}")) if p.is_file()}
        if direct:
            return direct
    try:
        return trident_feature_files(folder)
    except ValueError as exc:
        if "no TRIDENT patching folders" not in str(exc):
            raise
        raise ValueError(f"{folder} holds no feature files (<slide>.h5 or <slide>.pt) and is no TRIDENT job "
                         f"folder (<mag>x_<ps>px_<ov>px_overlap/features_<encoder>/); pass the folder TRIDENT "
                         f"or CLAM wrote") from None


def slide_features(features, slide, slide_path, *, in_dim: int, patches=None,
                   patch_size_level0: float | None = None) -> SlideFeatures:
    """Read the features of ``slide_path`` and check them against the slide and the head.

    Parameters
    ----------
    features : the feature file, or a folder holding one per slide (:func:`feature_files_in`),
        where ``<slide stem>.h5`` / ``.pt`` is taken.
    slide : the slide's OpenSlide handle.
    in_dim : the head's input size D.
    patches, patch_size_level0 : as for :func:`~lrp_captum.wsi.mil.feature_files.read_feature_file`.

    Raises ``ValueError`` naming the file and the numbers for each mismatch (wrong D, tiles
    outside the slide, N features ≠ N coordinates, no tile size, a pickled object, ...).
    """
    path, name = Path(features), Path(slide_path).stem
    if path.is_dir():
        files = feature_files_in(path)
        if name not in files:
            shown = ", ".join(sorted(files)[:5]) + (" ..." if len(files) > 5 else "")
            raise ValueError(f"{path} holds no features of slide {name!r} (no {name}.h5 or {name}.pt; it has: "
                             f"{shown})")
        path = files[name]
    record = read_feature_file(path, patches=patches, patch_size_level0=patch_size_level0)
    check_against_slide(record, slide, in_dim=in_dim)
    return record


def features_bag(features: SlideFeatures, slide, slide_mpp: float) -> SlideBag:
    """The :class:`SlideBag` of a slide's features: one tile per coordinate, in the file's order.

    The tiles are squares of ``features.tile_side0`` level-0 px at the file's corners (``row``,
    ``col`` = corner / side, rounded); ``tissue`` is NaN (the file does not record it). The grid
    has the file's patch size (in px at the level or magnification it was read at) and the
    resolution that follows from it: ``target_mpp = slide_mpp × tile_side0 / patch_size``.
    """
    side = float(features.tile_side0)
    tile_size = int(features.patch_size or round(side))
    level = int(features.level or 0)
    W, H = slide.dimensions
    grid = TileGrid(int(W), int(H), float(slide_mpp), float(slide_mpp) * side / tile_size, tile_size, tile_size,
                    level, float(slide.level_downsamples[level]))
    xy = features.coords.numpy().astype(np.float64)
    tiles = np.zeros(len(xy), dtype=[("row", "i4"), ("col", "i4"), ("x0", "f8"), ("y0", "f8"), ("w0", "f8"),
                                     ("h0", "f8"), ("tissue", "f4")])
    tiles["col"], tiles["row"] = np.round(xy[:, 0] / side), np.round(xy[:, 1] / side)
    tiles["x0"], tiles["y0"], tiles["w0"], tiles["h0"], tiles["tissue"] = xy[:, 0], xy[:, 1], side, side, np.nan
    return SlideBag(features=features.features.numpy(), tiles=tiles, grid=grid, encoder_identity="",
                    store=Path(features.path), embedded_now=0)
