"""A synthetic slide cohort for multiple-instance learning, with pixel-exact lesion masks.

Every slide is a sample slide (:mod:`lrp_captum.demos.sample_slide`: the scikit-image IHC field tiled
over a random tissue layout) with a few *foci* painted into its tissue:

- a **decoy** focus is DAB-rich tissue at the normal cell size: the IHC field with its DAB
  optical density doubled (``skimage.color.rgb2hed`` channel 2, times ``DAB_GAIN``);
- a **lesion** focus has the same stain (same DAB gain, so the same mean colour) but a different
  texture: the DAB-rich field shrunk ``LESION_SHRINK`` times and repeated, i.e. small crowded
  cells.

A slide is ``lesion`` (label 1) when it holds one lesion focus, else ``negative`` (label 0).
Negative slides get one decoy more than lesion slides, so the amount of brown tissue does not
tell the classes apart; only the texture of the focus does. Each slide is written with its
lesion mask: a level-0 uint8 TIFF (255 inside the lesion, 0 elsewhere) that marks exactly the
level-0 pixels the renderer painted with the lesion texture.

All geometry is in level-0 pixels. The cohort table is the library's labelled-cohort format
(:mod:`lrp_captum.wsi.mil.labelled_cohort`), so ``train-mil`` reads it as any other cohort.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lrp_captum.demos.sample_slide import (SOURCE_PATCH, TILE, SlideLayout, SlideRenderer, dihedral_transforms,
                                           downscale_mean, ihc_image, level_downsamples)
from lrp_captum.wsi.mil.labelled_cohort import CohortEntry, read_cohort, tile_lesion_fraction, write_cohort_csv
from lrp_captum.wording import counted

__all__ = ["CLASSES", "CohortSlide", "CohortRenderer", "write_cohort_slide", "write_cohort", "dab_rich",
           "shrunk_texture", "CohortEntry", "read_cohort", "tile_lesion_fraction"]

CLASSES = ["negative", "lesion"]
DAB_GAIN = 2.0
LESION_SHRINK = 8
FOCUS_RADIUS = (170.0, 280.0)  # level-0 px; tiles of the demo encoder are 128 px
COHORT_FORMAT = "lrp_captum.demos.mil_cohort/1"


def dab_rich(rgb: np.ndarray, gain: float = DAB_GAIN) -> np.ndarray:
    """(H, W, 3) uint8 RGB with the DAB optical density multiplied by ``gain`` (H&E unchanged)."""
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(rgb)
    hed[..., 2] *= gain
    return (np.clip(hed2rgb(hed), 0, 1) * 255 + 0.5).astype(np.uint8)


def shrunk_texture(rgb: np.ndarray, factor: int = LESION_SHRINK) -> np.ndarray:
    """``rgb`` (S, S, 3) block-averaged ``factor`` times and repeated ``factor`` x ``factor`` times.

    Same size and mean colour, structures ``factor`` times smaller.
    """
    small = downscale_mean(rgb, factor)
    return np.clip(np.tile(small, (factor, factor, 1)) + 0.5, 0, 255).astype(np.uint8)


@dataclass
class Focus:
    """A wobbly elliptical focus ``kind`` ("lesion" or "decoy") inside the tissue.

    ``shape`` is ``(cx, cy, rx, ry, angle, wobble amplitude, wobble k, phase)`` in level-0 px
    and radians, the same parametrisation as the tissue blobs of :class:`SlideLayout`.
    """

    kind: str
    shape: tuple

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return SlideLayout.inside(self.shape, x, y)

    def bbox(self) -> tuple[float, float, float, float]:
        return SlideLayout.bbox(self.shape)


@dataclass
class CohortSlide:
    """One cohort slide: its tissue layout, its foci and its label."""

    layout: SlideLayout
    foci: list = field(default_factory=list)

    @property
    def label(self) -> int:
        return int(any(f.kind == "lesion" for f in self.foci))

    @classmethod
    def random(cls, width: int, height: int, seed: int, lesion: bool, n_decoys: int) -> "CohortSlide":
        """Random layout with ``n_decoys`` decoys (+1 lesion when ``lesion``) centred in tissue.

        Foci do not overlap each other. Raises ``ValueError`` when the tissue is too small for them.
        """
        layout = SlideLayout.random(width, height, seed)
        rng = np.random.default_rng([seed, 7])
        kinds = (["lesion"] if lesion else []) + ["decoy"] * n_decoys
        foci: list[Focus] = []
        for kind in kinds:
            for _ in range(2000):
                r = rng.uniform(*FOCUS_RADIUS)
                cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
                # the centre and four points at 60 % of the radius must be tissue
                px = cx + 0.6 * r * np.array([0, 1, -1, 0, 0])
                py = cy + 0.6 * r * np.array([0, 0, 0, 1, -1])
                if not layout.tissue(px, py).all():
                    continue
                if any(math.hypot(cx - f.shape[0], cy - f.shape[1]) < r + max(f.shape[2:4]) + 64
                       for f in foci):
                    continue
                ry = r * rng.uniform(0.7, 1.0)
                foci.append(Focus(kind, (cx, cy, r, ry, rng.uniform(0, math.pi), rng.uniform(0.05, 0.15),
                                         int(rng.integers(3, 6)), rng.uniform(0, 2 * math.pi))))
                break
            else:
                raise ValueError(f"slide seed {seed}: no room for a {kind} focus in the tissue of a "
                                 f"{width}x{height} slide; use a larger --size")
        return cls(layout, foci)

    def focus_mask(self, kind: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Boolean mask of tissue covered by foci of ``kind`` at level-0 positions ``x``, ``y``."""
        x, y = np.broadcast_arrays(x, y)
        m = np.zeros(x.shape, bool)
        for f in self.foci:
            if f.kind == kind:
                m |= f.contains(x, y)
        return m & self.layout.tissue(x, y)

    def to_dict(self) -> dict:
        return dict(seed=self.layout.seed, label=self.label,
                    foci=[dict(kind=f.kind, shape=[float(v) for v in f.shape]) for f in self.foci])


class CohortRenderer(SlideRenderer):
    """A sample-slide renderer that paints the foci of a :class:`CohortSlide`.

    A level-k pixel belongs to a focus when its centre, mapped to level 0, lies in the focus and
    in tissue -- the same rule that :meth:`lesion_mask` uses at level 0.
    """

    def __init__(self, slide: CohortSlide):
        super().__init__(slide.layout)
        self.slide = slide
        self._focus_tex: dict[tuple[str, int], np.ndarray] = {}

    def focus_texture(self, kind: str, d: int) -> np.ndarray:
        """(8, 512/d, 512/d, 3) dihedral transforms of a focus texture, averaged over d x d blocks."""
        if (kind, d) not in self._focus_tex:
            rich = dab_rich(ihc_image())
            base = shrunk_texture(rich) if kind == "lesion" else rich
            self._focus_tex[(kind, d)] = np.stack([downscale_mean(t, d) for t in dihedral_transforms(base)])
        return self._focus_tex[(kind, d)]

    def region(self, level_downsample: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        out = super().region(level_downsample, x, y, w, h)
        d = level_downsample
        box = (x * d, y * d, (x + w) * d, (y + h) * d)
        for kind in ("decoy", "lesion"):
            if not any(f.kind == kind and _overlaps(f.bbox(), box) for f in self.slide.foci):
                continue
            xs, ys = np.arange(x, x + w), np.arange(y, y + h)
            mask = self.slide.focus_mask(kind, ((xs + 0.5) * d)[None, :], ((ys + 0.5) * d)[:, None])
            if not mask.any():
                continue
            tex = self.focus_texture(kind, d)
            ps = SOURCE_PATCH // d
            pt = self.layout.patch_transform
            tid = pt[np.minimum(ys // ps, pt.shape[0] - 1)[:, None], np.minimum(xs // ps, pt.shape[1] - 1)[None, :]]
            vals = tex[tid, (ys % ps)[:, None], (xs % ps)[None, :]]
            out[mask] = np.clip(vals[mask] + 0.5, 0, 255).astype(np.uint8) if vals.dtype != np.uint8 else vals[mask]
        return out

    def lesion_mask(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """(h, w) bool lesion mask of the level-0 region at ``(x, y)``."""
        xs, ys = np.arange(x, x + w) + 0.5, np.arange(y, y + h) + 0.5
        if not any(f.kind == "lesion" and _overlaps(f.bbox(), (x, y, x + w, y + h)) for f in self.slide.foci):
            return np.zeros((h, w), bool)
        return self.slide.focus_mask("lesion", xs[None, :], ys[:, None])


def _overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _write_tiled_tiff(path: Path, levels, width: int, height: int, mpp: float, *, photometric: str,
                      compression: str, description: str, compressionargs: dict | None = None):
    """Write ``levels`` -- ``[(downsample, tile generator)]`` -- as a pyramid OpenSlide opens.

    Written under a temporary name and renamed, so the file exists only when complete.
    """
    import tifffile

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    res = 1e4 / mpp
    channels = 3 if photometric == "rgb" else 1
    try:
        with tifffile.TiffWriter(tmp, bigtiff=width * height * channels > 2**31) as tif:
            for i, (d, tiles) in enumerate(levels):
                lw, lh = max(1, width // d), max(1, height // d)
                shape = (lh, lw, 3) if channels == 3 else (lh, lw)
                tif.write(tiles, shape=shape, dtype=np.uint8, tile=(TILE, TILE), photometric=photometric,
                          compression=compression, compressionargs=compressionargs,
                          resolution=(res / d, res / d), resolutionunit="CENTIMETER",
                          description=description, metadata=None, **({"subfiletype": 1} if i else {}))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_cohort_slide(slide_path, mask_path, slide: CohortSlide, width: int, height: int, *,
                       mpp: float = 0.5, quality: int = 90) -> dict:
    """Write a cohort slide (JPEG tiled pyramid, vendor ``generic-tiff``) and its lesion mask.

    The mask is one level-0 page, uint8, 255 on lesion pixels, zlib-compressed, with the same
    resolution tags. Returns ``{"lesion_px": ..., "decoy_px": ...}`` (level-0 pixel counts).
    """
    renderer = CohortRenderer(slide)
    counts = {"lesion_px": 0}

    def slide_tiles(d):
        lw, lh = max(1, width // d), max(1, height // d)
        for ty in range(0, lh, TILE):
            for tx in range(0, lw, TILE):
                yield renderer.region(d, tx, ty, TILE, TILE)

    def mask_tiles():
        for ty in range(0, height, TILE):
            for tx in range(0, width, TILE):
                m = renderer.lesion_mask(tx, ty, TILE, TILE)
                # tiles past the slide edge are padded by the writer; count only inside pixels
                counts["lesion_px"] += int(m[:height - ty, :width - tx].sum())
                yield (m * 255).astype(np.uint8)

    slide_path, mask_path = Path(slide_path), Path(mask_path)
    slide_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    desc = f"lrp_captum MIL cohort slide seed={slide.layout.seed} label={CLASSES[slide.label]} mpp={mpp}"
    _write_tiled_tiff(slide_path, [(d, slide_tiles(d)) for d in level_downsamples(width, height)], width, height,
                      mpp, photometric="rgb", compression="jpeg", compressionargs={"level": quality},
                      description=desc)
    _write_tiled_tiff(mask_path, [(1, mask_tiles())], width, height, mpp, photometric="minisblack",
                      compression="zlib", description=f"lesion mask of {slide_path.name} (255 = lesion)")
    return counts


def write_cohort(out_dir, n: int, *, size: int | tuple[int, int] = 2048, mpp: float = 0.5, seed: int = 0,
                 test_fraction: float = 0.4, quiet: bool = True) -> Path:
    """Write ``n`` cohort slides, their lesion masks, ``cohort.csv`` and ``cohort.json``.

    Parameters
    ----------
    out_dir : folder; gets ``slides/slide_XXX.tif``, ``masks/slide_XXX_lesion.tif``,
        ``cohort.csv`` (one row per slide: slide, mask, label, class, split, seed, lesion_px) and
        ``cohort.json`` (parameters, classes).
    n : number of slides (at least 2); labels alternate, so the classes are balanced.
    size : level-0 side (or (width, height)) in px; at least 1024.
    mpp : µm per level-0 pixel.
    seed : cohort seed; slide ``i`` uses seed ``seed * 100003 + i``.
    test_fraction : share of slides held out (``split == "test"``), balanced over the classes.

    Slides already present from an interrupted run with the same parameters are kept.

    Returns
    -------
    Path of ``cohort.csv``.
    """
    if n < 2:
        raise ValueError(f"a cohort needs at least 2 slides (one per class), got n={n}")
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(width, height) < 1024:
        raise ValueError(f"cohort slides must be at least 1024 px per side (room for tissue and foci), "
                         f"got {width}x{height}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = dict(format=COHORT_FORMAT, n=n, width=width, height=height, mpp=mpp, seed=seed,
                  test_fraction=test_fraction, dab_gain=DAB_GAIN, lesion_shrink=LESION_SHRINK,
                  focus_radius_px=list(FOCUS_RADIUS), classes=CLASSES)
    meta = out / "cohort.json"
    if meta.is_file() and json.loads(meta.read_text()).get("parameters") != params:
        raise FileExistsError(f"{out} already holds a cohort made with other parameters ({meta}); "
                              f"choose another folder")
    rng = np.random.default_rng(seed)
    n_test = int(round(n * test_fraction))
    test_ids = set(range(n - n_test, n))  # labels alternate, so the last slides are balanced
    rows, slides = [], []
    for i in range(n):
        s_seed = seed * 100003 + i
        lesion = i % 2 == 1
        n_decoys = int(rng.integers(0, 2)) + (0 if lesion else 1)
        slide = CohortSlide.random(width, height, s_seed, lesion, n_decoys)
        name = f"slide_{i:03d}"
        sp, mp = out / "slides" / f"{name}.tif", out / "masks" / f"{name}_lesion.tif"
        if sp.is_file() and mp.is_file():
            counts = {"lesion_px": _mask_count(mp)}
        else:
            counts = write_cohort_slide(sp, mp, slide, width, height, mpp=mpp)
        if not quiet:
            print(f"{sp} ({CLASSES[slide.label]}, {counted(len(slide.foci), 'focus')})", flush=True)
        rows.append(dict(slide=f"slides/{name}.tif", mask=f"masks/{name}_lesion.tif", label=slide.label,
                         **{"class": CLASSES[slide.label]}, split="test" if i in test_ids else "train",
                         seed=s_seed, lesion_px=counts["lesion_px"], n_decoys=n_decoys))
        slides.append(dict(name=name, **slide.to_dict()))
    write_cohort_csv(out, rows)
    tmp = out / f".cohort.json.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(dict(parameters=params, slides=slides,
                                   intended_use="research and demonstration; not for diagnosis"), indent=1))
    os.replace(tmp, meta)
    return out / "cohort.csv"


def _mask_count(path) -> int:
    import tifffile

    return int((tifffile.imread(path) > 0).sum())
