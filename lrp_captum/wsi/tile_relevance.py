"""LRP on batches of slide tiles: per-pixel relevance maps and class probabilities."""
from __future__ import annotations

import numpy as np
import torch

DEFAULT_COMPOSITE = "epsilon_gamma_box"  # for CNNs; chosen by measurement, see docs/wsi.md
TRANSFORMER_COMPOSITE = "attnlrp_gamma"  # for models that compute attention; measured, see docs/wsi.md


def default_composite(bundle) -> str:
    """The composite a slide run uses when none is chosen: :data:`TRANSFORMER_COMPOSITE` for a
    model that computes attention (found by recording one forward pass on a blank tile, see
    :func:`lrp_captum.evaluation.attention_maps.computes_attention`), else :data:`DEFAULT_COMPOSITE`.

    Parameters
    ----------
    bundle : :class:`~lrp_captum.wsi.model.ModelBundle`
    """
    from lrp_captum.evaluation.attention_maps import computes_attention

    blank = torch.zeros(1, 3, bundle.tile_size, bundle.tile_size, device=bundle.device)
    return TRANSFORMER_COMPOSITE if computes_attention(bundle.model, blank) else DEFAULT_COMPOSITE


class TileExplainer:
    """LRP for one :class:`~lrp_captum.wsi.model.ModelBundle`, reused across batches.

    Parameters
    ----------
    bundle : the tile classifier.
    composite : a composite name from :func:`lrp_captum.list_composites` (composites that need
        input bounds get them from the model's normalisation of RGB in [0, 1]) or a ``Composite``;
        None for :func:`default_composite` (``attnlrp_gamma`` for transformers, ``epsilon_gamma_box``
        otherwise).
    output_mode : ``"logit"``, ``"probability"`` or ``"contrastive"`` (see ``LRP.attribute``).
    """

    def __init__(self, bundle, composite=None, output_mode: str = "logit"):
        from lrp_captum import LRP, get_composite

        self.bundle = bundle
        #: the composite's name (or the ``Composite`` given), after choosing the default
        self.composite = default_composite(bundle) if composite is None else composite
        composite = get_composite(self.composite, mean=bundle.mean, std=bundle.std, pixel_range=(0.0, 1.0))
        self.lrp = LRP(bundle.model, composite=composite, canonizers="auto")
        self.output_mode = output_mode

    def targets(self, probs: torch.Tensor, target) -> torch.Tensor:
        """(N,) class indices: the predicted class for ``"predicted"``, else the named/indexed class."""
        if target is None or target == "predicted":
            return probs.argmax(1)
        return torch.full((probs.shape[0],), self.bundle.class_index(target), dtype=torch.long,
                          device=probs.device)

    def explain(self, tiles_uint8: torch.Tensor, target="predicted"):
        """Relevance and probabilities for a batch of tiles.

        Parameters
        ----------
        tiles_uint8 : (N, H, W, 3) uint8 RGB tiles at the model's resolution.
        target : ``"predicted"``, a class index or a class name.

        Returns
        -------
        relevance : (N, H, W) float32 numpy, input relevance summed over colour channels.
        probs : (N, C) float32 numpy softmax probabilities.
        targets : (N,) int64 numpy, the explained class per tile.
        """
        x = self.bundle.normalise(tiles_uint8)
        with torch.no_grad():
            probs = torch.softmax(self.bundle.model(x).float(), dim=1)
        t = self.targets(probs, target)
        rel = self.lrp.attribute(x, target=t, output_mode=self.output_mode)
        return (rel.sum(1).float().cpu().numpy(), probs.cpu().numpy(), t.cpu().numpy())


def explain_tile(model_bundle, tile_rgb_uint8, target="predicted", composite=None,
                 output_mode: str = "logit"):
    """Relevance map of one tile, e.g. for an app that recomputes a tile the user clicked.

    Parameters
    ----------
    model_bundle : :class:`~lrp_captum.wsi.model.ModelBundle` (from ``load_model``).
    tile_rgb_uint8 : (H, W, 3) uint8 RGB at the model's resolution (``model_bundle.mpp``);
        H and W are usually ``model_bundle.tile_size``.
    target : ``"predicted"``, a class index or a class name.
    composite, output_mode : as for :class:`TileExplainer`.

    Returns
    -------
    relevance_hw : (H, W) float32, relevance per pixel summed over colour channels.
    probabilities : (C,) float32 softmax probabilities of the tile.
    """
    tile = np.asarray(tile_rgb_uint8)
    if tile.ndim != 3 or tile.shape[2] != 3 or tile.dtype != np.uint8:
        raise ValueError(f"tile must be an (H, W, 3) uint8 RGB array, got shape {tile.shape} dtype {tile.dtype}")
    rel, probs, _ = TileExplainer(model_bundle, composite, output_mode).explain(
        torch.from_numpy(np.array(tile, copy=True))[None], target)
    return rel[0], probs[0]
