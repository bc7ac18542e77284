"""Tissue detection on a slide thumbnail: a saturation threshold, pen ink left out, and
morphological clean-up.

Glass is the dominant, nearly unsaturated peak of the thumbnail's HSV saturation histogram, so the
default threshold is the triangle method's (which cuts at the foot of a dominant peak) kept within
``[min_saturation, 0.15]``. Otsu's two-class split is not used by default: stained tissue is itself
bimodal (brown DAB vs pale hematoxylin), and Otsu then separates the stains instead of tissue
from glass.

Marker ink is as saturated as tissue, so it is found first (:func:`pen_mask`) and removed before
and after the closing step, which would otherwise join a stroke to the edge of a tissue island.
Green, cyan and blue inks absorb red more than green (HSV hue 70-240°); the stains do not:
haematoxylin is blue-*purple* (red above green, hue about 245°), eosin pink (about 305°), DAB
brown (about 20°). Black ink is darker than any stained tissue at thumbnail resolution.
A stroke's edge, where the ink thins out over glass, is paler than its core but still as
saturated as faint tissue: it is ink too when it has an ink hue, is nearly as bright as glass and
touches a stroke's core (a hysteresis from the core outwards). Left as tissue, such a halo beside a
stroke gave tiles with no tissue at all a tissue fraction above ``min_tissue``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: bounds of the automatic saturation threshold: below the lower one glass noise would count as
#: tissue (a blank slide must give an empty mask), above the upper one faint tissue would be lost
MIN_SATURATION = 0.03
MAX_SATURATION_THRESHOLD = 0.15
#: coloured ink: hue in [70°, 240°) (green to blue, red absorbed more than green) and at least
#: this saturation; the stains' pale blues at thumbnail resolution stay below 0.2
PEN_HUES = (70.0, 240.0)
PEN_MIN_SATURATION = 0.25
#: a stroke's thinning edge: ink hue, at least this saturation and at least this brightness
#: (brightest channel, fraction of full scale: ink thinned out over glass), joined to a core of
#: the stroke at least 5 px across (scattered bluish pixels of stained tissue are no core)
PEN_EDGE_SATURATION = 0.08
PEN_EDGE_MIN_VALUE = 0.8
PEN_CORE_RADIUS_PX = 2
#: black ink: brightest channel below this fraction of full scale (stained tissue at 8 µm/px
#: stays above 0.35)
PEN_MAX_VALUE = 0.25


@dataclass
class TissueMask:
    """Boolean tissue mask of a slide at a coarse resolution.

    Attributes
    ----------
    mask : (h, w) bool, True on tissue.
    downsample : level-0 pixels per mask pixel (same on both axes).
    threshold : the saturation threshold that was used (0..1).
    pen_fraction : share of the thumbnail taken as marker ink and left out of the mask.
    """

    mask: np.ndarray
    downsample: float
    threshold: float
    pen_fraction: float = 0.0

    def __post_init__(self):
        # integral image: the tissue fraction of any box is four look-ups
        self._integral = np.pad(self.mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    @property
    def area_fraction(self) -> float:
        return float(self.mask.mean())

    def at(self, x0: np.ndarray, y0: np.ndarray) -> np.ndarray:
        """Bool mask value at level-0 positions ``x0``, ``y0`` (broadcastable arrays; False outside
        the slide): the mask pixel that contains each position."""
        h, w = self.mask.shape
        c = np.floor(np.asarray(x0, np.float64) / self.downsample).astype(np.int64)
        r = np.floor(np.asarray(y0, np.float64) / self.downsample).astype(np.int64)
        inside = (c >= 0) & (c < w) & (r >= 0) & (r < h)
        return self.mask[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)] & inside

    def fraction(self, x0: float, y0: float, w0: float, h0: float) -> float:
        """Tissue fraction of the box ``(x0, y0, w0, h0)`` given in level-0 pixels (0 outside)."""
        h, w = self.mask.shape
        d = self.downsample
        c0, r0 = int(np.clip(np.floor(x0 / d), 0, w)), int(np.clip(np.floor(y0 / d), 0, h))
        c1, r1 = int(np.clip(np.ceil((x0 + w0) / d), 0, w)), int(np.clip(np.ceil((y0 + h0) / d), 0, h))
        full = max(1.0, np.ceil((x0 + w0) / d) - np.floor(x0 / d)) * max(1.0, np.ceil((y0 + h0) / d) - np.floor(y0 / d))
        if c1 <= c0 or r1 <= r0:
            return 0.0
        s = self._integral
        return float(s[r1, c1] - s[r0, c1] - s[r1, c0] + s[r0, c0]) / full


def thumbnail_rgb(slide, downsample: float) -> np.ndarray:
    """RGB uint8 image of the whole slide at ``downsample`` (level-0 px per pixel), glass white.

    Reads the best pyramid level; on a slide without a suitable level, block by block, so memory
    stays bounded whatever the slide (:func:`~lrp_captum.wsi.downsampled_region.read_downsampled`).
    """
    from lrp_captum.wsi.downsampled_region import read_downsampled

    w0, h0 = slide.dimensions
    size = (max(1, round(w0 / downsample)), max(1, round(h0 / downsample)))
    return read_downsampled(slide, (0, 0, w0, h0), size)


def _hue_degrees(rgb: np.ndarray, mx: np.ndarray, mn: np.ndarray) -> np.ndarray:
    """HSV hue in degrees [0, 360) of float RGB ``(h, w, 3)`` with channel max/min ``mx``, ``mn``."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    c = np.maximum(mx - mn, 1e-6)
    hue = np.where(mx == r, ((g - b) / c) % 6, np.where(mx == g, (b - r) / c + 2, (r - g) / c + 4))
    return (60.0 * hue) % 360.0


def pen_mask(rgb: np.ndarray, dilate_px: int = 1) -> np.ndarray:
    """(h, w) bool: pixels of green, blue or black marker ink in an RGB thumbnail ``(h, w, 3)``.

    Coloured ink is a hue in :data:`PEN_HUES` with saturation >= :data:`PEN_MIN_SATURATION`,
    and the pale, bright edge of such a stroke (:data:`PEN_EDGE_SATURATION`,
    :data:`PEN_EDGE_MIN_VALUE`) where it touches the stroke's core; black ink is darker than
    :data:`PEN_MAX_VALUE`. The result is dilated by ``dilate_px``
    pixels to take in the stroke's blurred edge.
    """
    f = np.asarray(rgb, dtype=np.float32)[..., :3]
    mx, mn = f.max(-1), f.min(-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    hue = _hue_degrees(f, mx, mn)
    ink_hue = (hue >= PEN_HUES[0]) & (hue < PEN_HUES[1])
    ink = ink_hue & (sat >= PEN_MIN_SATURATION)
    if not ink.any() and not (mx < PEN_MAX_VALUE * 255).any():
        return ink
    from scipy import ndimage
    from skimage import morphology

    core = ndimage.binary_opening(ink, morphology.disk(PEN_CORE_RADIUS_PX))
    edge = ink_hue & (sat >= PEN_EDGE_SATURATION) & (mx >= PEN_EDGE_MIN_VALUE * 255)
    ink |= ndimage.binary_propagation(core, mask=core | edge)
    ink |= mx < PEN_MAX_VALUE * 255
    if dilate_px > 0:
        ink = ndimage.binary_dilation(ink, morphology.disk(dilate_px))
    return ink


def tissue_mask_from_rgb(rgb: np.ndarray, *, threshold: float | str | None = None, min_saturation: float = MIN_SATURATION,
                         closing_px: int = 3, min_object_px: int = 16, min_hole_px: int = 64,
                         exclude_pen: bool = True, return_pen: bool = False):
    """(mask (h, w) bool, threshold) from an RGB thumbnail; with ``return_pen`` also the pen mask.

    ``threshold`` on HSV saturation (0..1) defaults to the triangle method's (``"otsu"`` selects
    Otsu's), kept within ``[min_saturation, 0.15]`` so a blank slide yields an empty mask instead of
    amplified noise. With ``exclude_pen``, marker ink (:func:`pen_mask`) is never tissue and does
    not enter the threshold. Then closing/opening with a disk of ``closing_px`` and removal of
    objects and holes smaller than the given pixel counts.
    """
    from scipy import ndimage
    from skimage import morphology
    from skimage.filters import threshold_otsu, threshold_triangle

    rgb = rgb.astype(np.float32)
    mx, mn = rgb.max(-1), rgb.min(-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    pen = pen_mask(rgb) if exclude_pen else np.zeros(sat.shape, bool)
    if threshold is None or isinstance(threshold, str):
        method = threshold_otsu if threshold == "otsu" else threshold_triangle
        clean = sat[~pen]
        threshold = float(method(clean)) if clean.size and clean.max() > clean.min() else min_saturation
        threshold = min(max(threshold, min_saturation), MAX_SATURATION_THRESHOLD)
    mask = (sat > threshold) & ~pen
    if closing_px > 0:
        fp = morphology.disk(closing_px)
        mask = ndimage.binary_closing(np.pad(mask, closing_px), fp)[closing_px:-closing_px, closing_px:-closing_px]
        mask = ndimage.binary_opening(mask, fp)
        mask &= ~pen  # closing may bridge into a stroke next to tissue
    if min_object_px > 0:
        mask = morphology.remove_small_objects(mask, max_size=min_object_px)
    if min_hole_px > 0:
        mask = morphology.remove_small_holes(mask, max_size=min_hole_px)
        mask &= ~pen
    return (mask, float(threshold), pen) if return_pen else (mask, float(threshold))


def detect_tissue(slide, *, mask_mpp: float | None = 8.0, slide_mpp: float | None = None,
                  max_side: int = 4096, **options) -> TissueMask:
    """Tissue mask of an open OpenSlide slide.

    Parameters
    ----------
    slide : ``openslide.OpenSlide`` (or anything with its reading API).
    mask_mpp : resolution of the mask in µm/px (default 8); used when ``slide_mpp`` is known,
        otherwise the mask is made at 1/32 of level 0. The side is capped at ``max_side`` px.
    options : passed to :func:`tissue_mask_from_rgb` (threshold, min_saturation, closing_px,
        exclude_pen, ...).
    """
    w0, h0 = slide.dimensions
    ds = mask_mpp / slide_mpp if (slide_mpp and mask_mpp) else 32.0
    ds = max(ds, max(w0, h0) / max_side, 1.0)
    rgb = thumbnail_rgb(slide, ds)
    ds = w0 / rgb.shape[1]
    mask, thr, pen = tissue_mask_from_rgb(rgb, return_pen=True, **options)
    return TissueMask(mask=mask, downsample=ds, threshold=thr, pen_fraction=float(pen.mean()))
