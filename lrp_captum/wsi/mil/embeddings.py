"""Tile embeddings of a slide, computed once per encoder and cached in zarr with the tile grid.

A slide is tiled as :func:`lrp_captum.wsi.pipeline.explain_slide` tiles it (tissue mask, grid at
the encoder's µm/px and tile size, tiles with enough tissue) and every tissue tile is embedded.
The cache holds one zarr group per (slide file, encoder identity)::

    <cache_dir>/<slide stem>-<hash of its path>/<encoder identity[:16]>.zarr
        features   (N, D) float32, chunks of ``chunk`` tiles
        done       (n_chunks,) bool -- set after a chunk's features are written
        row, col, x0, y0, w0, h0, tissue   (N,) the tile table (level-0 px)
        attrs: fingerprint (slide size/mtime, grid, tissue settings, tile table hash, encoder), grid

A killed run continues with the chunks not marked done. When the slide file, the tiling or the
encoder differ from the fingerprint, the group is discarded and the slide is embedded again:
cached and new embeddings are never mixed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lrp_captum.wsi.grid import TileGrid
from lrp_captum.wsi.run_plan import tissue_tiling
from lrp_captum.wsi.reader import SlideTileDataset, open_slide, slide_mpp
from lrp_captum.wsi.mil.encoders import TileEncoder
from lrp_captum.wording import counted

FORMAT = "lrp_captum.wsi.mil.embeddings/1"
TILE_FIELDS = ("row", "col", "x0", "y0", "w0", "h0", "tissue")


@dataclass
class SlideBag:
    """The embedded tissue tiles of one slide: a MIL bag with its geometry.

    Attributes
    ----------
    features : (N, D) float32 embeddings, row ``i`` for ``tiles[i]``.
    tiles : structured (N,) array, fields ``row, col`` (grid), ``x0, y0, w0, h0`` (level-0 px),
        ``tissue`` (fraction), as :func:`lrp_captum.wsi.grid.tissue_tiles`.
    grid : the tile grid.
    encoder_identity : identity of the encoder that made ``features``.
    store : the zarr group holding them.
    embedded_now : tiles embedded by the call that returned this bag (0 = all from the cache).
    """

    features: np.ndarray
    tiles: np.ndarray
    grid: TileGrid
    encoder_identity: str
    store: Path
    embedded_now: int

    def __len__(self) -> int:
        return len(self.tiles)

    def tensor(self, dtype=torch.float32) -> torch.Tensor:
        """(N, D) features as a tensor."""
        return torch.from_numpy(self.features).to(dtype)


def store_path(cache_dir, slide_path, encoder: TileEncoder) -> Path:
    """Where the embeddings of ``slide_path`` by ``encoder`` are cached under ``cache_dir``."""
    slide_path = Path(slide_path).resolve()
    key = hashlib.sha256(str(slide_path).encode()).hexdigest()[:10]
    return Path(cache_dir) / f"{slide_path.stem}-{key}" / f"{encoder.identity[:16]}.zarr"


def slide_tiling(slide_path, encoder: TileEncoder, *, min_tissue: float = 0.1, tissue_options: dict | None = None,
                 slide_mpp_override: float | None = None):
    """(grid, tiles) of the tissue tiles of a slide at the encoder's resolution and tile size.

    Raises :class:`~lrp_captum.wsi.reader.EmptyTissueError` when no tile has enough tissue: an
    empty bag cannot be classified.
    """
    slide = open_slide(slide_path)
    mpp0 = slide_mpp(slide, slide_path, slide_mpp_override)
    _, grid, tiles = tissue_tiling(slide, slide_path, mpp0, target_mpp=encoder.mpp, tile_size=encoder.tile_size,
                                   min_tissue=min_tissue, tissue_options=tissue_options,
                                   empty=", so the bag is empty and a MIL head has nothing to classify")
    return grid, tiles


def _fingerprint(slide_path: Path, encoder: TileEncoder, grid: TileGrid, tiles: np.ndarray,
                 min_tissue: float, tissue_options: dict | None) -> dict:
    st = slide_path.stat()
    return dict(format=FORMAT, slide=dict(path=str(slide_path.resolve()), bytes=st.st_size, mtime_ns=st.st_mtime_ns),
                encoder=encoder.identity, dim=encoder.dim, grid=grid.to_dict(), min_tissue=min_tissue,
                tissue_options=tissue_options or {}, n_tiles=len(tiles),
                tiles_sha256=hashlib.sha256(tiles.tobytes()).hexdigest())


def _open_store(path: Path, fingerprint: dict, tiles: np.ndarray, dim: int, chunk: int, quiet: bool):
    """The zarr group at ``path`` for ``fingerprint``, created (or re-created) when needed."""
    import zarr

    if path.exists():
        try:
            group = zarr.open_group(str(path), mode="a")
            same = json.dumps(group.attrs.get("fingerprint"), sort_keys=True) == json.dumps(fingerprint, sort_keys=True)
        except Exception:  # noqa: BLE001 -- a damaged cache is rebuilt, never trusted
            same = False
        if same:
            return group
        if not quiet:
            print(f"{path}: the slide, its tile grid or the encoder changed; embedding it again", file=sys.stderr)
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    group = zarr.open_group(str(tmp), mode="w")
    n = len(tiles)
    group.create_array("features", shape=(n, dim), chunks=(chunk, dim), dtype="float32", fill_value=np.nan)
    group.create_array("done", shape=(-(-n // chunk),), chunks=(-(-n // chunk),), dtype="bool", fill_value=False)
    for f in TILE_FIELDS:
        group.create_array(f, data=np.ascontiguousarray(tiles[f]))
    group.attrs.update(fingerprint=fingerprint, chunk=chunk, grid=fingerprint["grid"])
    tmp.rename(path)  # the tile table is complete before the group can be found
    return zarr.open_group(str(path), mode="a")


def _complete_features(path: Path, fingerprint: dict) -> np.ndarray | None:
    """(N, D) features of the cache group at ``path`` when it was made for ``fingerprint`` and
    every chunk is done, else None; the group is only read."""
    import zarr

    if not path.is_dir():
        return None
    try:
        group = zarr.open_group(str(path), mode="r")
        same = json.dumps(group.attrs.get("fingerprint"), sort_keys=True) == json.dumps(fingerprint, sort_keys=True)
        return group["features"][:] if same and bool(group["done"][:].all()) else None
    except Exception:  # noqa: BLE001 -- a damaged or foreign folder is simply not reused
        return None


def embed_slide(slide_path, encoder: TileEncoder, cache_dir, *, min_tissue: float = 0.1,
                tissue_options: dict | None = None, slide_mpp_override: float | None = None,
                batch_size: int = 64, num_workers: int = 0, quiet: bool = True, reuse_from=()) -> SlideBag:
    """Embed every tissue tile of a slide, or read the embeddings from the cache.

    Parameters
    ----------
    slide_path : any slide OpenSlide reads.
    encoder : the tile encoder (:func:`~lrp_captum.wsi.mil.encoders.build_encoder`).
    cache_dir : folder of the embedding cache (see module docstring).
    min_tissue, tissue_options, slide_mpp_override : tiling, as for ``explain_slide``.
    batch_size : tiles per encoder call and per cache chunk (a resumed run keeps the chunk size
        it started with).
    num_workers : DataLoader reader processes (0 reads in this process).
    quiet : no progress messages.
    reuse_from : more cache folders, looked in first and never written: when one holds this
        slide's complete embeddings by ``encoder`` with the same tiling (e.g. the cache
        ``train-mil`` filled for a head's cohort), they are read from there and nothing is embedded.

    Returns
    -------
    SlideBag

    Raises
    ------
    SlideError (a ``ValueError``) naming the file: unreadable slide, no resolution, empty bag.
    """
    from tqdm.auto import tqdm

    slide_path = Path(slide_path)
    grid, tiles = slide_tiling(slide_path, encoder, min_tissue=min_tissue, tissue_options=tissue_options,
                               slide_mpp_override=slide_mpp_override)
    fp = _fingerprint(slide_path, encoder, grid, tiles, min_tissue, tissue_options)
    for folder in reuse_from:
        found = store_path(folder, slide_path, encoder)
        features = _complete_features(found, fp)
        if features is not None:
            return SlideBag(features=features, tiles=tiles, grid=grid, encoder_identity=encoder.identity, store=found,
                            embedded_now=0)
    path = store_path(cache_dir, slide_path, encoder)
    group = _open_store(path, fp, tiles, encoder.dim, int(batch_size), quiet)
    chunk = int(group.attrs["chunk"])
    done = group["done"][:]
    pending = [int(b) for b in np.flatnonzero(~done)]
    n = len(tiles)
    embedded = 0
    if pending:
        loader = torch.utils.data.DataLoader(
            SlideTileDataset(slide_path, grid, tiles),
            batch_sampler=[list(range(b * chunk, min(n, (b + 1) * chunk))) for b in pending],
            num_workers=num_workers)
        t0 = time.perf_counter()
        with tqdm(total=n, initial=n - sum(min(n, (b + 1) * chunk) - b * chunk for b in pending), unit="tile",
                  desc=f"embed {slide_path.name}", disable=quiet) as bar:
            for idx, batch in loader:
                b = int(idx[0]) // chunk
                group["features"][b * chunk:b * chunk + len(idx)] = encoder.embed(batch).numpy()
                group["done"][b] = True  # after the features: a chunk marked done is complete
                embedded += len(idx)
                bar.update(len(idx))
        if not quiet:
            print(f"{slide_path.name}: embedded {counted(embedded, 'tile')} in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr)
    features = group["features"][:]
    return SlideBag(features=features, tiles=tiles, grid=grid, encoder_identity=encoder.identity, store=path,
                    embedded_now=embedded)
