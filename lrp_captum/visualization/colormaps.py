"""Colour maps for relevance and probability, one source for every plot, overlay and page.

Relevance is signed, so it gets a diverging map with 0 at the centre; probabilities get a
sequential map. Used by :mod:`lrp_captum.visualization.heatmaps`, the slide outputs
(:mod:`lrp_captum.wsi.outputs`), the viewer (:mod:`lrp_captum.viewer`), EEG figures and text
highlighting; numpy only, except maps that only matplotlib defines (``bwr``, ``viridis``, ...).

Maps
----
``RdBu_r``
    ColorBrewer's RdBu, blue < 0 < red: safe for the common colour-vision deficiencies. The
    default for figures and text (:data:`FIGURE_CMAP`).
``cyan_lime``
    Cyan < 0 < lime: the default for slides (:data:`SLIDE_CMAP`). Stained tissue is blue-purple
    (haematoxylin, hue about 245°), pink (eosin, about 305°) or brown (DAB, about 13-22°); red
    relevance lay 13-21° from DAB and read as stain on IHC slides, and blue reads as nuclei.
    Cyan (hue 180°) and lime (hue 90°) lie in the green-cyan band that none of the stains
    occupies, 60° or more from each: CIEDE2000 from the nearest stain colour (optical density
    0.3-1.5) is at least 34 at both ends (red: 13 from DAB; teal: 30 from haematoxylin). Both ends
    have the same lightness (CIELAB L* 78), and the signs stay apart for deuteranopes and
    protanopes (CIEDE2000 >= 29 down to half of vmax). Measured in docs/app.md.
``teal_red``
    Teal < 0 < red: the former slide default, kept for comparison.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["DIVERGING_CMAPS", "SEQUENTIAL_CMAPS", "RELEVANCE_MODES", "SLIDE_CMAP", "FIGURE_CMAP",
           "POSITIVE_RGB", "NEGATIVE_RGB", "colormap_lut", "matplotlib_colormap", "colorize",
           "relevance_to_rgba", "probability_to_rgba", "legend_stops", "legend_words", "relevance_heatmap_rgb"]

# anchors from the negative end to the positive end, evenly spaced, centre in the middle
_ANCHORS = {
    "RdBu_r": ((5, 48, 97), (33, 102, 172), (67, 147, 195), (146, 197, 222), (209, 229, 240),
               (247, 247, 247),
               (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43), (103, 0, 31)),
    # ends of equal lightness (CIELAB L* 78.5 and 78.2), so neither sign looks stronger
    "cyan_lime": ((0, 216, 216), (247, 247, 247), (126, 216, 0)),
    # ends of equal lightness (CIELAB L* 39.8 and 38.4)
    "teal_red": ((0, 105, 105), (40, 150, 145), (120, 200, 190), (200, 235, 230),
                 (247, 247, 247),
                 (253, 219, 199), (244, 165, 130), (214, 96, 77), (178, 24, 43)),
}

#: default diverging map of slide heatmaps: its negative colour does not collide with H&E or IHC stains
SLIDE_CMAP = "cyan_lime"
#: default diverging map of figures and text (a matplotlib name as well)
FIGURE_CMAP = "RdBu_r"
#: strong positive / negative colours of :data:`FIGURE_CMAP` (RdBu #b2182b, #2166ac)
POSITIVE_RGB = _ANCHORS["RdBu_r"][9]
NEGATIVE_RGB = _ANCHORS["RdBu_r"][1]

DIVERGING_CMAPS = (SLIDE_CMAP, "teal_red", "bwr", "coolwarm", "RdBu_r", "seismic")
#: what a reader calls the negative and the positive end of each diverging map
END_COLOUR_NAMES = {"cyan_lime": ("cyan", "lime"), "teal_red": ("teal", "red"), "bwr": ("blue", "red"),
                    "coolwarm": ("blue", "red"), "RdBu_r": ("blue", "red"), "seismic": ("blue", "red")}
SEQUENTIAL_CMAPS = ("viridis", "magma", "inferno")
RELEVANCE_MODES = ("both", "positive", "negative")


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 RGB lookup table of an allowed colour map (index 127.5 is the centre).

    Maps defined here by anchors need no matplotlib; the others are matplotlib's.
    """
    if name not in DIVERGING_CMAPS + SEQUENTIAL_CMAPS:
        raise ValueError(f"unknown colour map {name!r}; choose one of {DIVERGING_CMAPS + SEQUENTIAL_CMAPS}")
    if name in _ANCHORS:
        anchors = np.asarray(_ANCHORS[name], np.float64)
        pos = np.linspace(0, len(anchors) - 1, 256)
        lo = np.minimum(np.floor(pos).astype(int), len(anchors) - 2)
        frac = (pos - lo)[:, None]
        lut = (anchors[lo] * (1 - frac) + anchors[lo + 1] * frac) / 255
    else:
        from matplotlib import colormaps

        lut = colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    lut = np.round(lut * 255).astype(np.uint8)
    lut.flags.writeable = False
    return lut


def matplotlib_colormap(name: str):
    """A matplotlib ``Colormap`` with the same 256 colours as :func:`colormap_lut` (for colour bars)."""
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormap_lut(name) / 255.0, name=name)


def _signed_scale(values: np.ndarray, vmax: float) -> np.ndarray:
    """``values / vmax`` clipped to [-1, 1], float32; NaN and inf count as 0."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(v / np.float32(vmax if vmax > 0 else 1.0), -1.0, 1.0)


def _lut_index(scale: np.ndarray) -> np.ndarray:
    """LUT indices of values in [-1, 1] (0 -> the centre, 127.5)."""
    return np.round((scale + 1.0) * 127.5).astype(np.uint8)


def colorize(values: np.ndarray, vmax: float, cmap: str = SLIDE_CMAP) -> np.ndarray:
    """Opaque (H, W, 3) uint8 colours of relevance ``values`` (H, W): 0 at the map's centre, ±``vmax``
    at its ends (clipped beyond), NaN as 0."""
    return colormap_lut(cmap)[_lut_index(_signed_scale(values, vmax))]


def relevance_heatmap_rgb(values: np.ndarray, vmax: float | None = None, cmap: str = SLIDE_CMAP) -> np.ndarray:
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
    if vmax is None:
        vmax = float(np.abs(np.nan_to_num(np.asarray(values, dtype=np.float32))).max())
    return colorize(values, vmax, cmap)


def relevance_to_rgba(values: np.ndarray, vmax: float, mode: str = "both", cmap: str = SLIDE_CMAP,
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
    scale = _signed_scale(values, vmax)
    if mode == "positive":
        scale = np.maximum(scale, 0.0)
    elif mode == "negative":
        scale = np.minimum(scale, 0.0)
    out = np.empty(scale.shape + (4,), dtype=np.uint8)
    out[..., :3] = colormap_lut(cmap)[_lut_index(scale)]
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


def legend_words(cmap: str, vmax: float) -> str:
    """The scale of an opaque heatmap in words, e.g. ``"cyan −0.0025 · white 0 · lime +0.0025"``."""
    negative, positive = END_COLOUR_NAMES.get(cmap, ("low end", "high end"))
    return f"{negative} −{vmax:.3g} · white 0 · {positive} +{vmax:.3g}"
