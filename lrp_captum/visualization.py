"""Relevance heatmaps: a diverging colour map with 0 at its centre (blue < 0 < red).

Numpy only; writing PNG files needs Pillow (``pip install 'lrp-captum[vision]'``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

# anchors of a blue-white-red map (colour-blind safe pair, as in ColorBrewer RdBu)
_ANCHORS = np.array([
    [5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240],
    [247, 247, 247],
    [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31],
], dtype=np.float64) / 255.0


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


def colorize(relevance, vmax: Optional[float] = None, percentile: float = 99.5) -> np.ndarray:
    """Map relevance to RGB ``uint8`` ``(H, W, 3)``; white is 0, red positive, blue negative.

    Parameters
    ----------
    relevance : array or Tensor
        See :func:`relevance_map`.
    vmax : float, optional
        Value shown at full colour; default: the ``percentile`` of ``|relevance|``.
    """
    r = relevance_map(relevance)
    if vmax is None:
        vmax = float(np.percentile(np.abs(r), percentile)) if r.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    t = np.clip(r / vmax, -1.0, 1.0) * 0.5 + 0.5  # 0..1, 0.5 is zero relevance
    pos = t * (len(_ANCHORS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    rgb = _ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac
    return (rgb * 255 + 0.5).astype(np.uint8)


def save_heatmap(path: Union[str, Path], relevance, image: Optional[np.ndarray] = None,
                 alpha: float = 0.6, vmax: Optional[float] = None) -> Path:
    """Write a PNG heatmap, optionally blended over ``image`` (``(H, W, 3)`` uint8).

    Returns the path written.
    """
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("save_heatmap needs Pillow: pip install 'lrp-captum[vision]'") from exc
    rgb = colorize(relevance, vmax=vmax).astype(np.float64)
    if image is not None:
        img = np.asarray(image, dtype=np.float64)
        if img.shape[:2] != rgb.shape[:2]:
            raise ValueError(f"image {img.shape[:2]} and relevance {rgb.shape[:2]} differ in size")
        rgb = (1 - alpha) * img[..., :3] + alpha * rgb
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(path)
    return path
