"""Pixel maps of single tiles: the evidence of a tile continued into the tile encoder.

The relevance a MIL explanation gives to each dimension of a tile's embedding is the initial
relevance of an LRP pass through the encoder (``LRP.attribute(..., output_mode=<(k, D) tensor>)``),
so the pixel map of a tile shows where in the tile its evidence for the slide logit comes from.
By default the encoder's rules leave every bias out of the denominators, as ``xmil`` does in the
head, so that a tile's pixel map sums to its evidence (docs/mil.md, "Maps that add up").
"""
from __future__ import annotations

import numpy as np
import torch

from lrp_captum.wsi.mil.encoders import TileEncoder

#: None: :func:`default_pixel_composite` chooses by the encoder
DEFAULT_PIXEL_COMPOSITE = None
#: the default for an encoder without attention (CNNs) and for one with attention (ViTs)
CNN_PIXEL_COMPOSITE, TRANSFORMER_PIXEL_COMPOSITE = "xmil_cnn", "xmil_vit"


def default_pixel_composite(encoder: TileEncoder) -> str:
    """:data:`TRANSFORMER_PIXEL_COMPOSITE` (``xmil_vit``: CP-LRP with the biases and LayerNorm
    shifts out of the denominators) for an encoder that computes attention, else :data:`CNN_PIXEL_COMPOSITE`
    (``xmil_cnn``: flat, z⁺ and ε with the biases out of the denominators)."""
    from lrp_captum.evaluation.attention_maps import computes_attention

    blank = torch.zeros(1, 3, encoder.tile_size, encoder.tile_size, device=encoder.device)
    return TRANSFORMER_PIXEL_COMPOSITE if computes_attention(encoder.model, blank) else CNN_PIXEL_COMPOSITE


def encoder_pixel_maps(encoder: TileEncoder, tiles_uint8: torch.Tensor, relevance: torch.Tensor,
                       composite: str | None = DEFAULT_PIXEL_COMPOSITE) -> np.ndarray:
    """Pixel relevance of tiles whose embeddings carry the given relevance.

    Parameters
    ----------
    encoder : the tile encoder that made the embeddings.
    tiles_uint8 : (k, T, T, 3) uint8 RGB tiles at the encoder's resolution.
    relevance : (k, D) relevance of each embedding dimension (e.g.
        :attr:`TileEvidence.per_dimension` rows of these tiles).
    composite : LRP composite for the encoder (box composites get bounds from its normalisation);
        None for :func:`default_pixel_composite`.

    Returns
    -------
    (k, T, T) float32, relevance per pixel summed over RGB; each map sums to about its row of
    ``relevance`` (exactly as far as the composite conserves relevance).
    """
    from lrp_captum import LRP, get_composite

    if relevance.shape != (len(tiles_uint8), encoder.dim):
        raise ValueError(f"relevance must be (k, D) = ({len(tiles_uint8)}, {encoder.dim}), got {tuple(relevance.shape)}")
    composite = default_pixel_composite(encoder) if composite is None else composite
    x = encoder.normalise(tiles_uint8)
    lrp = LRP(encoder.model, composite=get_composite(composite, mean=encoder.mean, std=encoder.std))
    rel = lrp.attribute(x, output_mode=relevance.to(x))
    return rel.sum(1).float().cpu().numpy()
