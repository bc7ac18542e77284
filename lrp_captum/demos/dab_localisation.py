"""Where a demo tile classifier's relevance for "positive" lies: on the DAB stain or not.

The demo task defines a positive tile by its DAB pixels (:mod:`lrp_captum.demos.slide_model`: more than
15 % of the pixels with DAB optical density above 0.10), so those pixels are the evidence for
"positive", and an explanation of "positive" should put its positive relevance there.

:func:`dab_relevance_share` measures it on held-out tiles: 128-px crops from rows 384-511 of the
IHC image (rows the models never train on; the same region as their validation tiles, other
crops), keeping the tiles labelled positive, explained for "positive". Per tile it computes the
share of positive relevance inside the tile's DAB mask (the relevance mass accuracy of Arras
et al. 2022, :func:`lrp_captum.evaluation.metrics.relevance_mass_accuracy`) and the mask's area fraction;
the result averages both over the tiles. A map that ignores the stain scores about its area
fraction; the demo models' target is at least twice that.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lrp_captum.evaluation.metrics import relevance_mass_accuracy
from lrp_captum.wsi.tile_relevance import TileExplainer
from lrp_captum.wsi.model import ModelBundle
from lrp_captum.demos.sample_slide import dab_mask
from lrp_captum.demos.slide_model import DAB_THRESHOLD, make_tiles

HELD_OUT_ROWS = (384, 512)  # rows of the IHC image no demo model trains on


@dataclass
class DabLocalisation:
    """Positive relevance on the DAB mask of held-out positive tiles.

    Attributes
    ----------
    share : float
        Mean over tiles of the share of positive relevance inside the DAB mask.
    area : float
        Mean over tiles of the DAB mask's area fraction (what an uninformative map scores).
    per_tile_share, per_tile_area : ndarray
        ``(T,)`` the same per tile.
    composite : str
        The composite that explained the tiles.
    """

    share: float
    area: float
    per_tile_share: np.ndarray
    per_tile_area: np.ndarray
    composite: str

    @property
    def ratio(self) -> float:
        """``share / area``: how many times more relevance the mask gets than its area."""
        return self.share / self.area

    @property
    def n_tiles(self) -> int:
        return len(self.per_tile_share)


def dab_relevance_share(bundle: ModelBundle, n_tiles: int = 128, seed: int = 7, composite=None,
                        batch_size: int = 16) -> DabLocalisation:
    """Share of positive relevance for "positive" on the DAB mask of held-out positive tiles.

    Parameters
    ----------
    bundle : a demo tile classifier (classes ``["negative", "positive"]``, 128-px tiles).
    n_tiles : held-out tiles drawn (about a third are positive and kept).
    seed : crop positions; the validation tiles of training use ``seed + 1`` of the training
        seed (1 by default), so the default 7 draws other crops of the same held-out rows.
    composite : as for :class:`~lrp_captum.wsi.tile_relevance.TileExplainer` (None: the model's default).
    batch_size : tiles per LRP call.

    Returns
    -------
    DabLocalisation
    """
    tiles, labels, _ = make_tiles(n_tiles, HELD_OUT_ROWS, seed, tile=bundle.tile_size)
    tiles = tiles[labels == 1]
    if len(tiles) == 0:
        raise ValueError(f"none of the {n_tiles} held-out tiles (seed {seed}) is positive; draw more")
    masks = torch.from_numpy(np.stack([dab_mask(t, DAB_THRESHOLD) for t in tiles]))
    explainer = TileExplainer(bundle, composite)
    relevance = np.concatenate([
        explainer.explain(torch.from_numpy(tiles[i:i + batch_size]), target="positive")[0]
        for i in range(0, len(tiles), batch_size)])
    share = relevance_mass_accuracy(torch.from_numpy(relevance), masks).numpy()
    area = masks.float().mean((1, 2)).numpy()
    name = getattr(explainer.composite, "name", explainer.composite)
    return DabLocalisation(share=float(share.mean()), area=float(area.mean()), per_tile_share=share,
                           per_tile_area=area, composite=str(name))
