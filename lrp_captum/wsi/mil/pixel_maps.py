"""Pixel maps of single tiles: the evidence of a tile continued into the tile encoder.

The relevance a MIL explanation gives to each dimension of a tile's embedding is the initial
relevance of an LRP pass through the encoder (``LRP.attribute(..., output_mode=<(k, D) tensor>)``),
so the pixel map of a tile shows where in the tile its evidence for the slide logit comes from.
"""
from __future__ import annotations

import numpy as np
import torch

from lrp_captum.wsi.mil.encoders import TileEncoder

DEFAULT_PIXEL_COMPOSITE = "epsilon_plus_flat"


def encoder_pixel_maps(encoder: TileEncoder, tiles_uint8: torch.Tensor, relevance: torch.Tensor,
                       composite: str = DEFAULT_PIXEL_COMPOSITE) -> np.ndarray:
    """Pixel relevance of tiles whose embeddings carry the given relevance.

    Parameters
    ----------
    encoder : the tile encoder that made the embeddings.
    tiles_uint8 : (k, T, T, 3) uint8 RGB tiles at the encoder's resolution.
    relevance : (k, D) relevance of each embedding dimension (e.g.
        :attr:`TileEvidence.per_dimension` rows of these tiles).
    composite : LRP composite for the encoder (box composites get bounds from its normalisation).

    Returns
    -------
    (k, T, T) float32, relevance per pixel summed over RGB; each map sums to about its row of
    ``relevance`` (exactly as far as the composite conserves relevance).
    """
    from lrp_captum import LRP, get_composite

    if relevance.shape != (len(tiles_uint8), encoder.dim):
        raise ValueError(f"relevance must be (k, D) = ({len(tiles_uint8)}, {encoder.dim}), got {tuple(relevance.shape)}")
    x = encoder.normalise(tiles_uint8)
    lrp = LRP(encoder.model, composite=get_composite(composite, mean=encoder.mean, std=encoder.std))
    rel = lrp.attribute(x, output_mode=relevance.to(x))
    return rel.sum(1).float().cpu().numpy()
