"""Tissue detection leaves pen marks out: green, blue and black marker strokes next to tissue."""
import numpy as np
import openslide
import pytest
import tifffile
from skimage.color import hed2rgb, rgb2hed
from skimage.data import immunohistochemistry

from lrp_captum.wsi.grid import make_grid, tissue_tiles
from lrp_captum.demos.sample_slide import BACKGROUND_RGB, SlideLayout, SlideRenderer
from lrp_captum.wsi.run_plan import tissue_tiling
from lrp_captum.wsi.tissue import detect_tissue, pen_mask

W, H, MPP = 3072, 2048, 0.5
# marker inks as scanned: strong absorption of red (green, blue) or of everything (black)
INKS = {"green": (30, 150, 70), "blue": (25, 60, 170), "black": (25, 25, 30)}
# level-0 boxes (x0, y0, x1, y1) of the strokes: on glass, 40 px from the tissue's edge
STROKES = {"green": (1640, 300, 1880, 1700), "blue": (200, 1620, 1560, 1860), "black": (2200, 200, 2900, 440)}


def _layout() -> SlideLayout:
    """One rectangular-ish tissue island (a wide ellipse) with the strokes around it."""
    lay = SlideLayout(W, H, seed=0)
    lay.blobs = [(800.0, 800.0, 800.0, 780.0, 0.0, 0.0, 3, 0.0)]  # x 0-1600, y 20-1580
    lay.patch_transform = np.random.default_rng(0).integers(0, 8, size=(H // 512 + 1, W // 512 + 1))
    return lay


@pytest.fixture(scope="module")
def pen_slide(tmp_path_factory):
    lay = _layout()
    rgb = SlideRenderer(lay).region(1, 0, 0, W, H).astype(np.float32)
    rng = np.random.default_rng(1)
    for name, (x0, y0, x1, y1) in STROKES.items():
        # marker ink is not opaque: 80-95 % coverage, varying along the stroke
        a = rng.uniform(0.8, 0.95, (y1 - y0, 1, 1)).astype(np.float32)
        rgb[y0:y1, x0:x1] = rgb[y0:y1, x0:x1] * (1 - a) + np.array(INKS[name], np.float32) * a
    path = tmp_path_factory.mktemp("pen") / "pen.tif"
    res = 1e4 / MPP
    with tifffile.TiffWriter(path) as tif:
        tif.write(rgb.astype(np.uint8), tile=(256, 256), photometric="rgb", compression="jpeg",
                  resolution=(res, res), resolutionunit="CENTIMETER", metadata=None)
    return path, lay


# strokes as a marker draws them: ends (x, y) level-0 px, half width, then the feathered edge
# (px over which the ink thins out to glass) and the ink's cover at the stroke's middle
FEATHERED = {"green": ((1700, 250), (1760, 1750), 60, 120, 0.9), "blue": ((250, 1700), (1550, 1720), 50, 200, 0.7),
             "black": ((2250, 300), (2950, 330), 60, 60, 0.95)}


@pytest.fixture(scope="module")
def feathered_pen_slide(tmp_path_factory):
    """The tissue island of :func:`_layout` with strokes whose ink thins out over their edges,
    passing 50-150 µm from the tissue (the blue one under it, the green one beside it)."""
    lay = _layout()
    rgb = SlideRenderer(lay).region(1, 0, 0, W, H).astype(np.float32)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    for name, ((x0, y0), (x1, y1), half, feather, cover) in FEATHERED.items():
        d = np.array([x1 - x0, y1 - y0], np.float32)
        length = float(np.hypot(*d))
        d /= length
        along = (xs - x0) * d[0] + (ys - y0) * d[1]
        across = np.abs((ys - y0) * d[0] - (xs - x0) * d[1])
        a = cover * np.clip((half + feather - across) / feather, 0, 1) * ((along > 0) & (along < length))
        rgb = rgb * (1 - a[..., None]) + np.array(INKS[name], np.float32) * a[..., None]
    path = tmp_path_factory.mktemp("feathered") / "feathered_pen.tif"
    res = 1e4 / MPP
    with tifffile.TiffWriter(path) as tif:
        tif.write(rgb.astype(np.uint8), tile=(256, 256), photometric="rgb", compression="jpeg",
                  resolution=(res, res), resolutionunit="CENTIMETER", metadata=None)
    return path, lay


def _truth(lay, mask):
    h, w = mask.shape
    d = W / w
    ys, xs = np.mgrid[0:h, 0:w]
    return lay.tissue((xs + 0.5) * d, (ys + 0.5) * d), d


def test_pen_strokes_are_not_tissue(pen_slide):
    path, lay = pen_slide
    tm = detect_tissue(openslide.OpenSlide(str(path)), slide_mpp=MPP)
    truth, d = _truth(lay, tm.mask)
    for name, (x0, y0, x1, y1) in STROKES.items():
        stroke = tm.mask[int(y0 / d):int(y1 / d), int(x0 / d):int(x1 / d)]
        assert stroke.mean() < 0.02, name
    recall = (tm.mask & truth).sum() / truth.sum()
    precision = (tm.mask & truth).sum() / tm.mask.sum()
    assert recall > 0.9 and precision > 0.97


def test_tiles_on_pen_are_not_explained(pen_slide):
    path, lay = pen_slide
    s = openslide.OpenSlide(str(path))
    grid = make_grid(W, H, MPP, s.level_downsamples, target_mpp=MPP, tile_size=128)
    tiles = tissue_tiles(grid, detect_tissue(s, slide_mpp=MPP))
    u = (np.arange(8) + 0.5) / 8 * 128
    for t in tiles:  # every selected tile holds real tissue
        assert lay.tissue(t["x0"] + u[None, :], t["y0"] + u[:, None]).any(), (t["x0"], t["y0"])
    assert len(tiles) > 100


@pytest.mark.parametrize("tile_size", [128, 224])
@pytest.mark.parametrize("min_tissue", [0.1, 0.5])
def test_a_tile_with_less_tissue_than_min_tissue_is_never_explained_however_much_ink_it_holds(
        feathered_pen_slide, tile_size, min_tissue):
    path, lay = feathered_pen_slide
    _, _, tiles = tissue_tiling(openslide.OpenSlide(str(path)), path, MPP, target_mpp=MPP, tile_size=tile_size,
                                min_tissue=min_tissue)
    u = (np.arange(64) + 0.5) / 64 * tile_size
    true_tissue = np.array([lay.tissue(t["x0"] + u[None, :], t["y0"] + u[:, None]).mean() for t in tiles])
    # the mask has 8 µm (16 level-0 px) pixels, so a tile at the tissue's edge may be off by a
    # fraction of a mask pixel row; a tile of pen beside the tissue holds none of it
    assert len(tiles) > 30
    assert true_tissue.min() >= 0.75 * min_tissue, tiles[true_tissue.argmin()]


def test_a_strokes_feathered_edge_is_ink_not_tissue(feathered_pen_slide):
    path, lay = feathered_pen_slide
    tm = detect_tissue(openslide.OpenSlide(str(path)), slide_mpp=MPP)
    truth, _ = _truth(lay, tm.mask)
    # glass taken for tissue: a halo along the strokes, 1.5 % of the slide while their edges counted as tissue
    assert (tm.mask & ~truth).mean() < 0.005


def _synthetic_he() -> np.ndarray:
    """The IHC field re-stained as H&E: its haematoxylin stays, its DAB becomes eosin."""
    hed = rgb2hed(immunohistochemistry())
    he = np.stack([hed[..., 0], hed[..., 2] * 1.5, np.zeros_like(hed[..., 0])], -1)
    return (np.clip(hed2rgb(he), 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("stain", ["ihc", "he"])
@pytest.mark.parametrize("downsample", [1, 4, 16])
def test_stains_are_not_taken_for_ink(stain, downsample):
    rgb = immunohistochemistry() if stain == "ihc" else _synthetic_he()
    d = downsample
    small = rgb.reshape(512 // d, d, 512 // d, d, 3).mean((1, 3)).astype(np.uint8)
    assert pen_mask(small).mean() < 0.005


def test_every_ink_colour_is_found_on_glass():
    glass = np.full((20, 60, 3), BACKGROUND_RGB, np.uint8)
    for k, ink in enumerate(INKS.values()):
        glass[5:15, 20 * k + 5:20 * k + 15] = ink
    found = pen_mask(glass)
    for k in range(3):
        assert found[5:15, 20 * k + 5:20 * k + 15].all()
    assert not found[:3].any()
