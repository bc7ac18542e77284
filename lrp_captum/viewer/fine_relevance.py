"""Relevance at the model's own resolution for the deepest zoom levels of the viewer.

A result's stored map is coarse (``output_downsample`` level-0 pixels per map pixel, 8 or 16):
zoomed in further, the viewer would show blocks. There the relevance layer is drawn from each
analysed tile's own map instead, computed as the tile view computes it (the tile read at the
model's resolution, :class:`~lrp_captum.wsi.tile_relevance.TileExplainer` with the run's
composite, output mode and per-tile target) and cached per tile. The units are the stored map's:
mean input relevance per model-input pixel, summed over RGB. Where analysed tiles overlap, each
pixel comes from the tile it lies deepest in, as the pipeline's blending weights hand it.
"""
from __future__ import annotations

import threading

import numpy as np

from lrp_captum.viewer.tile_view import read_tile_rgb


class FineRelevance:
    """Per-tile full-resolution relevance of one result, computed on demand.

    Parameters
    ----------
    bundle : lrp_captum.wsi.model.ModelBundle
        The result's tile classifier.
    composite : str or None
        The run's composite (None: the model's default).
    output_mode : str
        The run's output mode.
    cache : int
        Tile maps kept (each ``tile_size`` squared float32).
    """

    def __init__(self, bundle, composite=None, output_mode: str = "logit", cache: int = 512):
        from lrp_captum.wsi.tile_relevance import TileExplainer

        self.bundle = bundle
        self.explainer = TileExplainer(bundle, composite, output_mode or "logit")
        self._lock = threading.Lock()  # LRP hooks on one model are not re-entrant
        self._maps: dict = {}
        self._cache = cache

    def tile_map(self, slide, box, target) -> np.ndarray:
        """(tile_size, tile_size) float32 relevance of the analysed tile at level-0 ``box`` (x, y, w, h)."""
        import torch

        key = (tuple(int(v) for v in box), str(target))
        hit = self._maps.get(key)
        if hit is not None:
            return hit
        size = self.bundle.tile_size
        rgb = read_tile_rgb(slide, *key[0], out_size=(size, size))
        with self._lock:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # one tile gains nothing from intra-op threads on a busy CPU
            try:
                rel = self.explainer.explain(torch.from_numpy(np.array(rgb, copy=True))[None], target)[0][0]
            finally:
                torch.set_num_threads(threads)
            if len(self._maps) >= self._cache:
                self._maps.pop(next(iter(self._maps)))
            self._maps[key] = rel.astype(np.float32)
        return self._maps[key]

    def raster(self, slide, tiles, box_level0, size) -> tuple[np.ndarray, np.ndarray]:
        """The analysed tiles' own maps painted on an output raster covering a level-0 box.

        Parameters
        ----------
        slide : openslide.OpenSlide
        tiles : pandas.DataFrame
            The result's tiles (``x0, y0, w0, h0`` in level-0 pixels; ``target`` when recorded).
        box_level0 : (x0, y0, x1, y1)
            Output extent in level-0 pixels.
        size : (width, height)
            Output raster size.

        Returns
        -------
        values : ndarray, shape (height, width), float32
        valid : ndarray of bool, shape (height, width)
            True where an analysed tile covers the pixel.
        """
        w, h = size
        x0, y0, x1, y1 = box_level0
        px, py = (x1 - x0) / w, (y1 - y0) / h
        xs, ys = x0 + (np.arange(w) + 0.5) * px, y0 + (np.arange(h) + 0.5) * py  # pixel centres, level 0
        values = np.zeros((h, w), np.float32)
        depth = np.full((h, w), -np.inf)
        b = tiles[["x0", "y0", "w0", "h0"]].to_numpy(np.float64)
        hit = np.flatnonzero((b[:, 0] < x1) & (b[:, 0] + b[:, 2] > x0) & (b[:, 1] < y1) & (b[:, 1] + b[:, 3] > y0))
        targets = tiles["target"].astype(str).to_numpy() if "target" in tiles.columns else None
        for i in hit:
            bx, by, bw, bh = b[i]
            cols = np.flatnonzero((xs >= bx) & (xs < bx + bw))
            rows = np.flatnonzero((ys >= by) & (ys < by + bh))
            if not len(cols) or not len(rows):
                continue
            tile = self.tile_map(slide, (bx, by, bw, bh), targets[i] if targets is not None else "predicted")
            n = tile.shape[0]
            ci = np.minimum(((xs[cols] - bx) / bw * n).astype(int), n - 1)
            ri = np.minimum(((ys[rows] - by) / bh * n).astype(int), n - 1)
            # how deep each pixel lies in this tile: its distance to the nearest edge
            dx = np.minimum(xs[cols] - bx, bx + bw - xs[cols])
            dy = np.minimum(ys[rows] - by, by + bh - ys[rows])
            here = np.minimum(dy[:, None], dx[None, :])
            sub = np.ix_(rows, cols)
            better = here > depth[sub]
            values[sub] = np.where(better, tile[np.ix_(ri, ci)], values[sub])
            depth[sub] = np.where(better, here, depth[sub])
        return values, np.isfinite(depth)
