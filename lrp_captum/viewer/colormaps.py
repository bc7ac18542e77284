"""Colour maps for overlays: diverging for relevance (0 at the centre), sequential for probability."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

DIVERGING_CMAPS = ("bwr", "coolwarm", "RdBu_r", "seismic")
SEQUENTIAL_CMAPS = ("viridis", "magma", "inferno")
RELEVANCE_MODES = ("both", "positive", "negative")


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 RGB lookup table of a matplotlib colour map from the allowed list."""
    if name not in DIVERGING_CMAPS + SEQUENTIAL_CMAPS:
        raise ValueError(f"unknown colour map {name!r}; choose one of {DIVERGING_CMAPS + SEQUENTIAL_CMAPS}")
    from matplotlib import colormaps

    lut = colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(lut * 255).astype(np.uint8)


def relevance_to_rgba(values: np.ndarray, vmax: float, mode: str = "both", cmap: str = "bwr",
                      valid: np.ndarray | None = None) -> np.ndarray:
    """Colourise relevance: colour from a diverging map centred on 0, alpha from |relevance|.

    Parameters
    ----------
    values : ndarray, shape (H, W)
        Relevance.
    vmax : float
        |relevance| mapped to the ends of the colour map and to full alpha.
    mode : {"both", "positive", "negative"}
        Which sign to show; the other becomes transparent.
    valid : ndarray of bool, shape (H, W), optional
        False where no data (transparent).

    Returns
    -------
    ndarray, shape (H, W, 4), uint8
        Alpha is ``255 * min(|r| / vmax, 1)``: the near-white centre of a diverging map would
        otherwise veil the tissue wherever relevance is weak.
    """
    if mode not in RELEVANCE_MODES:
        raise ValueError(f"mode must be one of {RELEVANCE_MODES}, got {mode!r}")
    v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    scale = np.clip(v / np.float32(vmax if vmax > 0 else 1.0), -1.0, 1.0)
    if mode == "positive":
        scale = np.maximum(scale, 0.0)
    elif mode == "negative":
        scale = np.minimum(scale, 0.0)
    idx = np.round((scale + 1.0) * 127.5).astype(np.uint8)
    out = np.empty(v.shape + (4,), dtype=np.uint8)
    out[..., :3] = colormap_lut(cmap)[idx]
    alpha = np.abs(scale) * 255.0
    if valid is not None:
        alpha = np.where(valid, alpha, 0.0)
    out[..., 3] = np.round(alpha).astype(np.uint8)
    return out


def probability_to_rgba(values: np.ndarray, cmap: str = "viridis", alpha: int = 200,
                        valid: np.ndarray | None = None) -> np.ndarray:
    """Colourise probabilities in [0, 1] with a sequential map; NaN/invalid pixels transparent.

    Returns
    -------
    ndarray, shape (H, W, 4), uint8
    """
    v = np.asarray(values, dtype=np.float32)
    ok = np.isfinite(v) if valid is None else (valid & np.isfinite(v))
    idx = np.round(np.clip(np.nan_to_num(v, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    out = np.empty(v.shape + (4,), dtype=np.uint8)
    out[..., :3] = colormap_lut(cmap)[idx]
    out[..., 3] = np.where(ok, alpha, 0).astype(np.uint8)
    return out


def legend_stops(cmap: str, n: int = 9) -> list[str]:
    """``n`` CSS hex colours evenly along a colour map, for an HTML gradient legend."""
    lut = colormap_lut(cmap)
    return ["#%02x%02x%02x" % tuple(lut[int(round(i * 255 / (n - 1)))]) for i in range(n)]


def relevance_heatmap_rgb(values: np.ndarray, vmax: float | None = None, cmap: str = "bwr") -> np.ndarray:
    """Opaque heatmap of relevance, 0 at the colour map's centre, ±vmax at its ends.

    Parameters
    ----------
    values : ndarray, shape (H, W)
    vmax : float, optional
        Defaults to max |values| (so the strongest pixel is saturated).

    Returns
    -------
    ndarray, shape (H, W, 3), uint8
    """
    v = np.nan_to_num(np.asarray(values, dtype=np.float32))
    if vmax is None:
        vmax = float(np.abs(v).max())
    scale = np.clip(v / (vmax if vmax > 0 else 1.0), -1.0, 1.0)
    return colormap_lut(cmap)[np.round((scale + 1.0) * 127.5).astype(np.uint8)]
