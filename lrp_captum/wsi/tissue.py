"""Tissue detection on a slide thumbnail: a saturation threshold plus morphological clean-up.

Glass is the dominant, nearly unsaturated peak of the thumbnail's HSV saturation histogram, so the
default threshold is the triangle method's (which cuts at the foot of a dominant peak) kept within
``[min_saturation, 0.15]``. Otsu's two-class split is not used by default: stained tissue is itself
bimodal (brown DAB vs pale hematoxylin), and Otsu then separates the stains instead of tissue
from glass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: bounds of the automatic saturation threshold: below the lower one glass noise would count as
#: tissue (a blank slide must give an empty mask), above the upper one faint tissue would be lost
MIN_SATURATION = 0.03
MAX_SATURATION_THRESHOLD = 0.15


@dataclass
class TissueMask:
    """Boolean tissue mask of a slide at a coarse resolution.

    Attributes
    ----------
    mask : (h, w) bool, True on tissue.
    downsample : level-0 pixels per mask pixel (same on both axes).
    threshold : the saturation threshold that was used (0..1).
    """

    mask: np.ndarray
    downsample: float
    threshold: float

    def __post_init__(self):
        # integral image: the tissue fraction of any box is four look-ups
        self._integral = np.pad(self.mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    @property
    def area_fraction(self) -> float:
        return float(self.mask.mean())

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

    Reads the best pyramid level and resizes it, so memory stays bounded by that level.
    """
    from PIL import Image

    w0, h0 = slide.dimensions
    size = (max(1, round(w0 / downsample)), max(1, round(h0 / downsample)))
    level = slide.get_best_level_for_downsample(downsample)
    img = slide.read_region((0, 0), level, slide.level_dimensions[level])
    bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
    img = Image.alpha_composite(bg, img).convert("RGB")
    if img.size != size:
        img = img.resize(size, Image.BILINEAR)
    return np.asarray(img)


def tissue_mask_from_rgb(rgb: np.ndarray, *, threshold: float | str | None = None, min_saturation: float = MIN_SATURATION,
                         closing_px: int = 3, min_object_px: int = 16, min_hole_px: int = 64):
    """(mask (h, w) bool, threshold) from an RGB thumbnail.

    ``threshold`` on HSV saturation (0..1) defaults to the triangle method's (``"otsu"`` selects
    Otsu's), kept within ``[min_saturation, 0.15]`` so a blank slide yields an empty mask instead of
    amplified noise. Then closing/opening with a disk of
    ``closing_px`` and removal of objects and holes smaller than the given pixel counts.
    """
    from scipy import ndimage
    from skimage import morphology
    from skimage.filters import threshold_otsu, threshold_triangle

    rgb = rgb.astype(np.float32)
    mx, mn = rgb.max(-1), rgb.min(-1)
    sat = np.where(mx > 0, (mx - mn) / np.maximum(mx, 1e-6), 0.0)
    if threshold is None or isinstance(threshold, str):
        method = threshold_otsu if threshold == "otsu" else threshold_triangle
        threshold = float(method(sat)) if sat.max() > sat.min() else min_saturation
        threshold = min(max(threshold, min_saturation), MAX_SATURATION_THRESHOLD)
    mask = sat > threshold
    if closing_px > 0:
        fp = morphology.disk(closing_px)
        mask = ndimage.binary_closing(np.pad(mask, closing_px), fp)[closing_px:-closing_px, closing_px:-closing_px]
        mask = ndimage.binary_opening(mask, fp)
    if min_object_px > 0:
        mask = morphology.remove_small_objects(mask, max_size=min_object_px)
    if min_hole_px > 0:
        mask = morphology.remove_small_holes(mask, max_size=min_hole_px)
    return mask, float(threshold)


def detect_tissue(slide, *, mask_mpp: float | None = 8.0, slide_mpp: float | None = None,
                  max_side: int = 4096, **options) -> TissueMask:
    """Tissue mask of an open OpenSlide slide.

    Parameters
    ----------
    slide : ``openslide.OpenSlide`` (or anything with its reading API).
    mask_mpp : resolution of the mask in µm/px (default 8); used when ``slide_mpp`` is known,
        otherwise the mask is made at 1/32 of level 0. The side is capped at ``max_side`` px.
    options : passed to :func:`tissue_mask_from_rgb` (threshold, min_saturation, closing_px, ...).
    """
    w0, h0 = slide.dimensions
    ds = mask_mpp / slide_mpp if (slide_mpp and mask_mpp) else 32.0
    ds = max(ds, max(w0, h0) / max_side, 1.0)
    rgb = thumbnail_rgb(slide, ds)
    ds = w0 / rgb.shape[1]
    mask, thr = tissue_mask_from_rgb(rgb, **options)
    return TissueMask(mask=mask, downsample=ds, threshold=thr)
