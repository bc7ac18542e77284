"""Writers for the files of an explained slide; each is written under a temporary name and
renamed into place, so a file that exists is complete."""
from __future__ import annotations

import json
import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lrp_captum.csv_cells import write_csv_frame
from lrp_captum.visualization.colormaps import SLIDE_CMAP, colorize, matplotlib_colormap

OVERLAY_TILE = 256


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary sibling of ``path``; on success rename it onto ``path`` (files or folders)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    remove_path(tmp)
    try:
        yield tmp
        replace_path(tmp, path)
    finally:
        remove_path(tmp)


def replace_path(src: Path, dst: Path) -> None:
    """Rename ``src`` onto ``dst``, a file or a folder; an existing folder ``dst`` is set aside
    first (a rename cannot replace a non-empty folder) and removed afterwards."""
    if dst.is_dir() and not dst.is_symlink():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old)
    else:
        os.replace(src, dst)


def remove_path(p: Path) -> None:
    """Remove the file, link or folder ``p`` if it exists."""
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()


def write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default))


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    h, w = a.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    p = np.zeros((hp, wp), np.float64)
    n = np.zeros((hp, wp), np.float64)
    p[:h, :w] = a
    n[:h, :w] = 1
    return (p.reshape(hp // f, f, wp // f, f).sum((1, 3)) / n.reshape(hp // f, f, wp // f, f).sum((1, 3))).astype(np.float32)


def write_overlay_tiff(path, array, mpp: float, vmax: float, cmap: str = SLIDE_CMAP, band_rows: int = 512):
    """Colourised pyramidal TIFF of a 2-D zarr/numpy map; OpenSlide opens it as ``generic-tiff``.

    Level 0 has the map's size (H, W); its resolution ``mpp`` (µm/px) is written as TIFF
    resolution tags, so the overlay is physically aligned with the slide. Reduced level ``k`` is
    ``ceil(H / 4**k) x ceil(W / 4**k)`` (block means, the last partial block averaging what it
    covers), down to <= 1024 px. Level 0 is streamed from ``array`` in bands of ``band_rows``;
    reduced levels are kept in memory only at 1/16 of the map's area or less.
    """
    import tifffile

    H, W = array.shape
    downs = [1]
    while max(H, W) / downs[-1] > 1024:
        downs.append(downs[-1] * 4)
    # a multiple of the tile side, hence of 4: bands reduce without remainder, except the last
    band_rows = max(OVERLAY_TILE, band_rows // OVERLAY_TILE * OVERLAY_TILE)
    reduced = []
    T = OVERLAY_TILE

    def level0_tiles():
        for y in range(0, H, band_rows):
            band = np.asarray(array[y:min(H, y + band_rows), :], dtype=np.float32)
            # reduce before yielding: the writer stops pulling after the last tile, so code after
            # the final yield would never run
            if len(downs) > 1:
                reduced.append(_block_mean(band, 4))
            rgb = colorize(band, vmax, cmap)
            for ty in range(0, band.shape[0], T):
                for tx in range(0, W, T):
                    tile = np.full((T, T, 3), 255, np.uint8)
                    blk = rgb[ty:ty + T, tx:tx + T]
                    tile[:blk.shape[0], :blk.shape[1]] = blk
                    yield tile

    with atomic_path(path) as tmp:
        res = 1e4 / mpp
        with tifffile.TiffWriter(tmp, bigtiff=H * W * 3 > 2**31) as tif:
            kw = dict(photometric="rgb", compression="zlib", tile=(T, T), dtype=np.uint8,
                      resolutionunit="CENTIMETER", metadata=None,
                      description="lrp_captum relevance overlay")
            tif.write(level0_tiles(), shape=(H, W, 3), resolution=(res, res), **kw)
            if len(downs) > 1:
                level = np.concatenate(reduced, 0)
                for i, d in enumerate(downs[1:]):
                    if i > 0:
                        level = _block_mean(level, 4)
                    tif.write(colorize(level, vmax, cmap), resolution=(res / d, res / d),
                              subfiletype=1, **kw)
    return Path(path)


def write_geojson(path, table, classes):
    """QuPath-readable GeoJSON FeatureCollection: one square polygon per tile in level-0 pixels,
    classified by prediction, with the per-tile numbers as ``measurements`` (a number that is not
    finite, e.g. the tissue fraction of tiles read from a features file, is left out: NaN is not JSON)."""
    meas_cols = [c for c in table.columns if c in ("probability", "relevance_sum", "relevance_pos",
                                                   "relevance_neg", "tissue_fraction")
                 or c.startswith("p_")]
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write('{"type": "FeatureCollection", "features": [\n')
        columns = list(table.columns)  # by name: itertuples renames columns that are no identifiers (p_<class>)
        for k, row in enumerate(table.itertuples(index=False, name=None)):
            r = dict(zip(columns, row))
            x0, y0, x1, y1 = r["x0"], r["y0"], r["x0"] + r["w0"], r["y0"] + r["h0"]
            feat = {"type": "Feature", "id": f"tile-{r['tile_index']}",
                    "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1],
                                                                     [x0, y1], [x0, y0]]]},
                    "properties": {"objectType": "tile", "name": f"tile {r['row']},{r['col']}",
                                   "classification": {"name": str(r["prediction"])},
                                   "measurements": {c: float(r[c]) for c in meas_cols
                                                    if math.isfinite(float(r[c]))}}}
            f.write(("" if k == 0 else ",\n") + json.dumps(feat))
        f.write("\n]}\n")


def write_table(path, table):
    """CSV (``.csv``) or Parquet (``.parquet``) of the per-tile table."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            write_csv_frame(tmp, table, float_format="%.7g")


def write_overview_png(path, thumbnail_rgb: np.ndarray, heat: np.ndarray, vmax: float, title: str,
                       cmap: str = SLIDE_CMAP, unit: str = "relevance per model pixel"):
    """PNG: slide thumbnail | thumbnail with the relevance heatmap blended in | colour legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb = colorize(heat, vmax, cmap).astype(np.float32)
    alpha = np.clip(np.abs(np.nan_to_num(heat)) / max(vmax, 1e-30), 0, 1)[..., None] * 0.85
    blend = (thumbnail_rgb * (1 - alpha) + rgb * alpha).astype(np.uint8)
    h, w = thumbnail_rgb.shape[:2]
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4 * h / w + 0.6), dpi=120)
    for ax, img, t in zip(axes, (thumbnail_rgb, blend), ("slide", "relevance")):
        ax.imshow(img)
        ax.set_title(t)
        ax.axis("off")
    sm = plt.cm.ScalarMappable(cmap=matplotlib_colormap(cmap), norm=matplotlib.colors.Normalize(-vmax, vmax))
    fig.colorbar(sm, ax=axes, fraction=0.03, label=unit)
    fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
