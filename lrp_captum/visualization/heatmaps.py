"""Relevance heatmaps: a diverging colour map with 0 at its centre (blue < 0 < red by default).

Numpy only; writing PNG files needs Pillow (``pip install 'lrp-captum[vision]'``). Colour maps
come from :mod:`lrp_captum.visualization.colormaps`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from lrp_captum.visualization import colormaps


def relevance_map(relevance: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    """Collapse relevance of one example to a 2-D map ``(H, W)`` by summing channels.

    Accepts ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)``.
    """
    r = relevance.detach().cpu().numpy() if torch.is_tensor(relevance) else np.asarray(relevance)
    r = r.astype(np.float64)
    while r.ndim > 3 and r.shape[0] == 1:
        r = r[0]
    if r.ndim == 3:
        r = r.sum(0)
    if r.ndim != 2:
        raise ValueError(f"expected relevance of shape (H, W), (C, H, W) or (1, C, H, W), "
                         f"got {tuple(relevance.shape)}")
    return r


def colorize(relevance, vmax: Optional[float] = None, percentile: float = 99.5,
             cmap: str = colormaps.FIGURE_CMAP) -> np.ndarray:
    """Map relevance to RGB ``uint8`` ``(H, W, 3)``; 0 is the map's (white) centre.

    Parameters
    ----------
    relevance : array or Tensor
        See :func:`relevance_map`.
    vmax : float, optional
        Value shown at full colour; default: the ``percentile`` of ``|relevance|``.
    cmap : str
        A diverging map of :mod:`lrp_captum.visualization.colormaps` (default RdBu: red positive, blue
        negative; ``"teal_red"`` for stained tissue).
    """
    r = relevance_map(relevance)
    if vmax is None:
        vmax = float(np.percentile(np.abs(r), percentile)) if r.size else 1.0
    return colormaps.colorize(r, vmax if vmax > 0 else 1.0, cmap)


def save_heatmap(path: Union[str, Path], relevance, image: Optional[np.ndarray] = None,
                 alpha: float = 0.6, vmax: Optional[float] = None,
                 cmap: str = colormaps.FIGURE_CMAP) -> Path:
    """Write a PNG heatmap, optionally blended over ``image`` (``(H, W, 3)`` uint8).

    Returns the path written.
    """
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("save_heatmap needs Pillow: pip install 'lrp-captum[vision]'") from exc
    rgb = colorize(relevance, vmax=vmax, cmap=cmap).astype(np.float64)
    if image is not None:
        img = np.asarray(image, dtype=np.float64)
        if img.shape[:2] != rgb.shape[:2]:
            raise ValueError(f"image {img.shape[:2]} and relevance {rgb.shape[:2]} differ in size")
        rgb = (1 - alpha) * img[..., :3] + alpha * rgb
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
    return path
