"""The overlay TIFF: every pyramid level covers the whole relevance map, for any map shape."""
import math

import numpy as np
import openslide
import pytest
import tifffile

from lrp_captum.visualization.colormaps import SLIDE_CMAP, colorize, colormap_lut
from lrp_captum.wsi.outputs import write_overlay_tiff


def _ramp(h, w):
    """A map whose value grows down the rows, so a missing bottom band is visible at every level."""
    return np.broadcast_to(np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None], (h, w)).copy()


# odd sizes; (333, 1501) is a wide, short map: one band of rows, yet wider than 1,024 px
@pytest.mark.parametrize("shape", [(1391, 1201), (4355, 1203), (333, 1501)])
def test_every_overlay_level_covers_the_whole_map(shape, tmp_path):
    h, w = shape
    path = write_overlay_tiff(tmp_path / "overlay.tif", _ramp(h, w), mpp=4.0, vmax=1.0)
    slide = openslide.OpenSlide(str(path))
    n_levels = 1 + sum(1 for k in range(1, 8) if max(h, w) / 4 ** (k - 1) > 1024)
    assert slide.level_count == n_levels > 1
    for k in range(n_levels):
        d = 4 ** k
        assert slide.level_dimensions[k] == (math.ceil(w / d), math.ceil(h / d))
        assert slide.level_downsamples[k] == pytest.approx(d, rel=0.01)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.series[0].levels) == n_levels
        last = tif.series[0].levels[-1].asarray()
    # the ramp ends at +1 (the slide colour map's end colour) in the bottom row of every level,
    # never at blank white (the map's middle)
    bottom = last[-1, 0, :3].astype(int)
    lut = colormap_lut(SLIDE_CMAP).astype(int)
    assert np.abs(bottom - lut[255]).max() <= 12
    assert np.abs(bottom - lut[128]).max() > 100


def test_reduced_levels_are_block_means_of_level0(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.uniform(-1, 1, (1030, 1283)).astype(np.float32)
    path = write_overlay_tiff(tmp_path / "overlay.tif", values, mpp=4.0, vmax=1.0)
    with tifffile.TiffFile(path) as tif:
        level1 = tif.series[0].levels[1].asarray()
        level0 = tif.series[0].levels[0].asarray()
    assert level1.shape[:2] == (258, 321)
    # the last, partial block (rows 1024-1027, columns 1280-1282) is the mean of what it covers
    block = values[1024:1028, 1280:1283].mean()
    np.testing.assert_array_equal(level1[256, 320], colorize(np.array([[block]]), 1.0)[0, 0])
    np.testing.assert_array_equal(level0[:7, :5], colorize(values[:7, :5], 1.0))
