"""Synthetic but real-stained sample slides built from ``skimage.data.immunohistochemistry``.

The only histology image that ships offline is a 512 x 512 IHC field (DAB + hematoxylin). A sample
slide tiles the plane with dihedral transforms (flips/rotations) of it inside a few wobbly tissue
blobs with holes, on a white glass background, and writes a JPEG-compressed tiled pyramid that
OpenSlide opens: either a generic tiled TIFF (resolution tags in cm) or an Aperio SVS-like file
(``Aperio Image Library`` description with ``AppMag`` and ``MPP``, stripped thumbnail as page 1).

Every pixel is computed from its level-0 position, so tiles are generated one at a time and a
40,000 x 40,000 slide never sits in memory. Level ``k`` samples a texture pre-averaged by its
downsample, so reduced levels are proper area averages of level 0 (up to JPEG noise).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TILE = 256
BACKGROUND_RGB = (243, 242, 240)
SOURCE_PATCH = 512  # level-0 px covered by one copy of the IHC image (its native size)


def ihc_image() -> np.ndarray:
    """``skimage.data.immunohistochemistry()`` as (512, 512, 3) uint8 RGB."""
    from skimage.data import immunohistochemistry

    return np.ascontiguousarray(immunohistochemistry()[:, :, :3])


def dihedral_transforms(img: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of a square image (H, W, 3)."""
    out = []
    for k in range(4):
        r = np.rot90(img, k)
        out += [r, r[:, ::-1]]
    return [np.ascontiguousarray(o) for o in out]


def downscale_mean(img: np.ndarray, d: int) -> np.ndarray:
    """(H/d, W/d, C) float32 means of the d x d blocks of ``img`` (H, W, C); ``img`` itself for d = 1."""
    if d == 1:
        return img
    h, w, c = img.shape
    return img.reshape(h // d, d, w // d, d, c).astype(np.float32).mean(axis=(1, 3))


@dataclass
class SlideLayout:
    """Where tissue is and which transform of the IHC image fills each 512-px patch.

    All geometry is in level-0 pixels.
    """

    width: int
    height: int
    seed: int = 0
    blobs: list = field(default_factory=list)  # (cx, cy, rx, ry, angle, wobble amp, k, phase)
    holes: list = field(default_factory=list)
    patch_transform: np.ndarray | None = None  # (rows, cols) int in [0, 8)

    @classmethod
    def random(cls, width: int, height: int, seed: int = 0) -> "SlideLayout":
        rng = np.random.default_rng(seed)
        lay = cls(width, height, seed)
        s = min(width, height)
        n = int(rng.integers(3, 6))
        # blobs on a jittered grid so that empty glass remains between them
        cols = int(math.ceil(math.sqrt(n)))
        rows = int(math.ceil(n / cols))
        cells = rng.permutation(rows * cols)[:n]
        for c in cells:
            gy, gx = divmod(int(c), cols)
            cx = (gx + 0.5 + rng.uniform(-0.12, 0.12)) * width / cols
            cy = (gy + 0.5 + rng.uniform(-0.12, 0.12)) * height / rows
            rx = rng.uniform(0.28, 0.42) * width / cols
            ry = rng.uniform(0.28, 0.42) * height / rows
            lay.blobs.append((cx, cy, rx, ry, rng.uniform(0, math.pi), rng.uniform(0.05, 0.15),
                              int(rng.integers(3, 7)), rng.uniform(0, 2 * math.pi)))
        for cx, cy, rx, ry, *_ in lay.blobs[: max(1, n // 2)]:
            r = rng.uniform(0.12, 0.22) * min(rx, ry)
            lay.holes.append((cx + rng.uniform(-0.3, 0.3) * rx, cy + rng.uniform(-0.3, 0.3) * ry,
                              r, r * rng.uniform(0.6, 1.0), rng.uniform(0, math.pi), 0.0, 3, 0.0))
        del s
        pr = -(-height // SOURCE_PATCH)
        pc = -(-width // SOURCE_PATCH)
        lay.patch_transform = rng.integers(0, 8, size=(pr, pc))
        return lay

    @staticmethod
    def inside(shape, x, y):
        """Boolean mask of the level-0 positions ``x``, ``y`` inside the wobbly ellipse ``shape``
        ``(cx, cy, rx, ry, angle, wobble amplitude, wobble k, phase)``."""
        cx, cy, rx, ry, ang, amp, k, ph = shape
        dx, dy = x - cx, y - cy
        ca, sa = math.cos(ang), math.sin(ang)
        u = (dx * ca + dy * sa) / rx
        v = (-dx * sa + dy * ca) / ry
        r = np.sqrt(u * u + v * v)
        theta = np.arctan2(v, u)
        return r < 1.0 + amp * np.sin(k * theta + ph)

    @staticmethod
    def bbox(shape):
        """``(x0, y0, x1, y1)`` level-0 box around the wobbly ellipse ``shape``."""
        cx, cy, rx, ry, _, amp, *_ = shape
        m = max(rx, ry) * (1 + amp)
        return cx - m, cy - m, cx + m, cy + m

    def tissue(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Boolean tissue mask at level-0 positions ``x``, ``y`` (broadcastable arrays)."""
        x, y = np.broadcast_arrays(x, y)
        m = np.zeros(x.shape, bool)
        for b in self.blobs:
            m |= self.inside(b, x, y)
        for h in self.holes:
            m &= ~self.inside(h, x, y)
        return m

    def touches_tissue(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        for b in self.blobs:
            bx0, by0, bx1, by1 = self.bbox(b)
            if bx0 < x1 and x0 < bx1 and by0 < y1 and y0 < by1:
                return True
        return False


class SlideRenderer:
    """Renders any level-k region of a sample slide from its :class:`SlideLayout`."""

    def __init__(self, layout: SlideLayout):
        self.layout = layout
        self._base = dihedral_transforms(ihc_image())
        self._tex: dict[int, np.ndarray] = {}

    def texture(self, d: int) -> np.ndarray:
        """The 8 transforms averaged over d x d blocks, shape (8, 512/d, 512/d, 3) (uint8 for d=1)."""
        if d not in self._tex:
            self._tex[d] = np.stack([downscale_mean(t, d) for t in self._base])
            if d > 1:
                self._tex[d] = self._tex[d].astype(np.float32)
        return self._tex[d]

    def region(self, level_downsample: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB uint8 (h, w, 3) of the region at ``(x, y)`` in level-k pixels (downsample d)."""
        d = level_downsample
        lay = self.layout
        out = np.empty((h, w, 3), np.uint8)
        out[:] = BACKGROUND_RGB
        if not lay.touches_tissue(x * d, y * d, (x + w) * d, (y + h) * d):
            return out
        xs = np.arange(x, x + w)
        ys = np.arange(y, y + h)
        mask = lay.tissue(((xs + 0.5) * d)[None, :], ((ys + 0.5) * d)[:, None])
        if not mask.any():
            return out
        ps = SOURCE_PATCH // d
        tex = self.texture(d)
        pr = np.minimum(ys // ps, lay.patch_transform.shape[0] - 1)
        pc = np.minimum(xs // ps, lay.patch_transform.shape[1] - 1)
        tid = lay.patch_transform[pr[:, None], pc[None, :]]
        vals = tex[tid, (ys % ps)[:, None], (xs % ps)[None, :]]
        out[mask] = vals[mask] if vals.dtype == np.uint8 else np.clip(vals[mask] + 0.5, 0, 255).astype(np.uint8)
        return out


def level_downsamples(width: int, height: int) -> list[int]:
    """Pyramid downsamples 1, 4, 16, ... while the previous level is larger than 1024 px."""
    ds = [1]
    while max(width, height) / ds[-1] > 1024 and ds[-1] * 4 <= SOURCE_PATCH // 2:
        ds.append(ds[-1] * 4)
    return ds


def write_sample_slide(path: str | os.PathLike, size: int | tuple[int, int] = 4096, *,
                       kind: str = "tiff", mpp: float = 0.5, app_mag: int = 20, seed: int = 0,
                       quality: int = 90) -> Path:
    """Write a pyramidal sample slide that OpenSlide opens.

    Parameters
    ----------
    path : output file (``.tif``/``.tiff`` for ``kind="tiff"``, ``.svs`` for ``kind="svs"``).
    size : level-0 width and height in pixels (an int for a square slide). Up to 40,000+;
        tiles are generated and written one at a time, so memory does not grow with the size.
    kind : ``"tiff"`` (OpenSlide vendor ``generic-tiff``) or ``"svs"`` (vendor ``aperio``).
    mpp : level-0 resolution in µm per pixel (written as TIFF resolution tags and, for svs,
        as ``MPP`` in the Aperio description).
    app_mag : objective power recorded in the svs description.
    seed : tissue layout and patch transforms.
    quality : JPEG quality of the tiles.

    Returns
    -------
    The written path. The file is written under a temporary name and renamed when complete.
    """
    import tifffile

    if kind not in ("tiff", "svs"):
        raise ValueError(f"kind must be 'tiff' or 'svs', got {kind!r}")
    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if min(width, height) < 256:
        raise ValueError(f"slide size must be at least 256 px per side, got {width}x{height}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    renderer = SlideRenderer(SlideLayout.random(width, height, seed))
    downs = level_downsamples(width, height)
    res_cm = 1e4 / mpp  # pixels per centimetre
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")

    def tiles(d, lw, lh):
        for ty in range(0, lh, TILE):
            for tx in range(0, lw, TILE):
                yield renderer.region(d, tx, ty, TILE, TILE)

    common = dict(photometric="rgb", compression="jpeg", compressionargs={"level": quality},
                  tile=(TILE, TILE), dtype=np.uint8, resolutionunit="CENTIMETER")
    try:
        with tifffile.TiffWriter(tmp, bigtiff=width * height > 2**31) as tif:
            for i, d in enumerate(downs):
                lw, lh = max(1, width // d), max(1, height // d)
                kw = dict(common, shape=(lh, lw, 3), resolution=(res_cm / d, res_cm / d))
                if kind == "svs":
                    kw["description"] = (
                        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}]"
                        f" ({TILE}x{TILE}) JPEG/RGB Q={quality}" + (f" -> {lw}x{lh} - " if d > 1 else "")
                        + f"|AppMag = {app_mag}|MPP = {mpp * d:.4f}|Filename = {path.stem}"
                        f"|Generator = lrp_captum.demos.sample_slide seed {renderer.layout.seed}")
                    kw["metadata"] = None
                    kw["software"] = False
                else:
                    kw["description"] = f"lrp_captum sample slide seed={renderer.layout.seed} mpp={mpp}"
                    kw["metadata"] = None
                if i > 0:
                    kw["subfiletype"] = 1
                tif.write(tiles(d, lw, lh), **kw)
                if kind == "svs" and i == 0:
                    # Aperio layout: stripped thumbnail as the second page
                    small = _thumbnail(renderer, width, height, downs[-1], 768)
                    tif.write(small, photometric="rgb", compression="jpeg",
                              compressionargs={"level": quality}, metadata=None, software=False,
                              description=f"Aperio Image Library v12.0.15 \r\n{width}x{height} -> "
                              f"{small.shape[1]}x{small.shape[0]} - |AppMag = {app_mag}|MPP = {mpp}",
                              rowsperstrip=16)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _thumbnail(renderer: SlideRenderer, width: int, height: int, d: int, longest: int) -> np.ndarray:
    from PIL import Image

    lw, lh = max(1, width // d), max(1, height // d)
    img = renderer.region(d, 0, 0, lw, lh)
    scale = longest / max(lw, lh)
    if scale < 1:
        img = np.asarray(Image.fromarray(img).resize(
            (max(1, round(lw * scale)), max(1, round(lh * scale))), Image.BILINEAR))
    return img


def dab_mask(rgb: np.ndarray, threshold: float = 0.03) -> np.ndarray:
    """Pixels whose DAB optical density (``skimage.color.rgb2hed`` channel 2) exceeds ``threshold``.

    ``rgb`` is (H, W, 3) uint8; returns (H, W) bool. The default threshold separates the brown DAB
    stain of the scikit-image IHC field from hematoxylin and glass.
    """
    from skimage.color import rgb2hed

    return rgb2hed(rgb)[..., 2] > threshold
