"""The synthetic MIL cohort: real slides, pixel-exact lesion masks, labels that brown alone cannot give."""
import contextlib
import io
import json

import numpy as np
import openslide
import pytest
import tifffile

from lrp_captum import cli
from lrp_captum.demos.mil_cohort import (CohortRenderer, CohortSlide, read_cohort,
                                         tile_lesion_fraction)
from lrp_captum.demos.sample_slide import dab_mask
from test_mil_support import mil_cohort  # noqa: F401 -- fixture


def test_cohort_slides_open_in_openslide_with_their_resolution(mil_cohort):
    for entry in read_cohort(mil_cohort):
        s = openslide.OpenSlide(str(entry.slide))
        assert s.properties["openslide.vendor"] == "generic-tiff"
        assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.5)
        assert s.dimensions == (1024, 1024)


def test_labels_are_balanced_and_follow_the_lesion_mask(mil_cohort):
    entries = read_cohort(mil_cohort)
    assert sorted(e.label for e in entries) == [0, 0, 1, 1]
    assert {e.split for e in entries if e.label} == {"train", "test"}
    for e in entries:
        assert (tifffile.imread(e.mask) > 0).any() == bool(e.label)


def test_lesion_mask_marks_exactly_the_pixels_painted_with_the_lesion_texture(mil_cohort):
    meta = json.loads((mil_cohort / "cohort.json").read_text())
    entry = next(e for e in read_cohort(mil_cohort) if e.label == 1)
    spec = next(s for s in meta["slides"] if s["name"] == entry.slide.stem)
    slide = CohortSlide.random(1024, 1024, spec["seed"], lesion=True,
                               n_decoys=sum(f["kind"] == "decoy" for f in spec["foci"]))
    without = CohortSlide(slide.layout, [f for f in slide.foci if f.kind != "lesion"])
    painted = np.any(CohortRenderer(slide).region(1, 0, 0, 1024, 1024)
                     != CohortRenderer(without).region(1, 0, 0, 1024, 1024), axis=-1)
    mask = tifffile.imread(entry.mask) > 0
    assert painted.sum() > 10_000
    assert not (painted & ~mask).any()  # nothing painted outside the mask
    # inside the mask a pixel can keep its colour only where both textures agree by chance
    assert (mask & ~painted).sum() < 1e-3 * mask.sum()


def test_lesion_texture_is_dab_rich_but_no_browner_than_the_decoy():
    from skimage.color import rgb2hed

    r = CohortRenderer(CohortSlide.random(1024, 1024, 0, lesion=True, n_decoys=1))
    dab = {k: rgb2hed(r.focus_texture(k, 1)[0])[..., 2] for k in ("lesion", "decoy")}
    # averaging in RGB before the optical density makes the shrunk texture a little paler
    assert 0.85 * dab["decoy"].mean() < dab["lesion"].mean() <= dab["decoy"].mean()
    assert dab_mask(r.focus_texture("lesion", 1)[0], 0.10).mean() > 0.3  # DAB-rich, like the decoy


def test_both_classes_get_the_same_number_of_dab_rich_foci():
    counts = {0: [], 1: []}
    rng = np.random.default_rng(0)
    for i in range(24):
        lesion = i % 2 == 1
        n_decoys = int(rng.integers(0, 2)) + (0 if lesion else 1)
        counts[int(lesion)].append(len(CohortSlide.random(2048, 2048, i, lesion, n_decoys).foci))
    assert set(counts[0]) == set(counts[1]) == {1, 2}


def test_tile_lesion_fraction_is_the_mask_share_of_each_level0_box(tmp_path):
    mask = np.zeros((256, 256), np.uint8)
    mask[:64, :128] = 255
    tifffile.imwrite(tmp_path / "m.tif", mask)
    tiles = np.array([(0.0, 0.0, 128.0, 128.0), (128.0, 0.0, 128.0, 128.0), (64.0, 32.0, 64.0, 64.0)],
                     dtype=[("x0", "f8"), ("y0", "f8"), ("w0", "f8"), ("h0", "f8")])
    np.testing.assert_allclose(tile_lesion_fraction(tmp_path / "m.tif", tiles), [0.5, 0.0, 0.5])


def test_cohort_sample_cli_refuses_a_folder_holding_another_cohort(mil_cohort):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["slide", "cohort-sample", "--n", "6", "--out", str(mil_cohort), "--size", "1024"])
    assert rc == 2
    msg = err.getvalue().strip()
    assert msg.startswith("lrp-captum slide cohort-sample: error:") and "other parameters" in msg
    assert "\n" not in msg and len(read_cohort(mil_cohort)) == 4


def test_cohort_sample_cli_refuses_too_small_slides_in_one_line(tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as refused:  # refused while parsing
        cli.main(["slide", "cohort-sample", "--n", "2", "--out", str(tmp_path / "c"), "--size", "512"])
    assert refused.value.code == 2 and len(err.getvalue().strip().splitlines()) == 1
    assert "--size: must be an integer from 1024" in err.getvalue() and not (tmp_path / "c").exists()
