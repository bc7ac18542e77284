"""Sample slides: OpenSlide opens both layouts, pyramids are consistent, writing streams tiles."""
import tracemalloc

import numpy as np
import openslide
import pytest

from lrp_captum.demos.sample_slide import SlideLayout, dab_mask, write_sample_slide


@pytest.fixture(scope="module")
def slides(tmp_path_factory):
    d = tmp_path_factory.mktemp("sample")
    return {"tiff": write_sample_slide(d / "s.tif", (2304, 1792), kind="tiff", mpp=0.5, seed=3),
            "svs": write_sample_slide(d / "s.svs", (2304, 1792), kind="svs", mpp=0.25, app_mag=40, seed=3)}


def test_generic_tiff_opens_as_generic_tiff_with_mpp_and_pyramid(slides):
    s = openslide.OpenSlide(str(slides["tiff"]))
    assert s.properties["openslide.vendor"] == "generic-tiff"
    assert s.dimensions == (2304, 1792)
    assert s.level_count == 2 and s.level_downsamples[1] == pytest.approx(4.0)
    assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.5)


def test_svs_opens_as_aperio_with_objective_power_mpp_and_thumbnail(slides):
    s = openslide.OpenSlide(str(slides["svs"]))
    assert s.properties["openslide.vendor"] == "aperio"
    assert s.properties["openslide.objective-power"] == "40"
    assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.25)
    assert "thumbnail" in s.associated_images


def test_reduced_level_is_the_block_average_of_level0(slides):
    s = openslide.OpenSlide(str(slides["tiff"]))
    lay = SlideLayout.random(2304, 1792, seed=3)
    # a region well inside a tissue blob, away from its wobbly edge
    cx, cy = (int(v) // 64 * 64 for v in lay.blobs[0][:2])
    l0 = np.asarray(s.read_region((cx - 128, cy - 128), 0, (256, 256)).convert("RGB")).astype(float)
    l1 = np.asarray(s.read_region((cx - 128, cy - 128), 1, (64, 64)).convert("RGB")).astype(float)
    ref = l0.reshape(64, 4, 64, 4, 3).mean((1, 3))
    assert np.abs(l1 - ref).mean() < 8  # JPEG noise only


def test_tissue_and_glass_follow_the_layout(slides):
    s = openslide.OpenSlide(str(slides["tiff"]))
    lay = SlideLayout.random(2304, 1792, seed=3)
    img = np.asarray(s.read_region((0, 0), 1, s.level_dimensions[1]).convert("RGB")).astype(int)
    ys, xs = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    truth = lay.tissue((xs + 0.5) * 4, (ys + 0.5) * 4)
    glass = (np.abs(img - [243, 242, 240]).max(-1) < 12)
    assert 0.15 < truth.mean() < 0.85  # tissue and empty glass both present
    assert (glass == ~truth).mean() > 0.9


def test_sample_contains_dab_positive_and_negative_tissue(slides):
    s = openslide.OpenSlide(str(slides["tiff"]))
    img = np.asarray(s.read_region((0, 0), 0, s.dimensions).convert("RGB"))
    frac = dab_mask(img).mean()
    assert 0.02 < frac < 0.5


def _peak_bytes_writing(path, size):
    tracemalloc.start()
    write_sample_slide(path, size)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def test_writing_streams_tiles_so_memory_does_not_grow_with_size(tmp_path):
    small = _peak_bytes_writing(tmp_path / "small.tif", 1024)
    big = _peak_bytes_writing(tmp_path / "big.tif", 4096)  # level 0 holds 48 MiB of RGB
    assert big < 0.5 * 4096 * 4096 * 3
    assert big < 1.5 * small
    assert openslide.OpenSlide(str(tmp_path / "big.tif")).dimensions == (4096, 4096)
