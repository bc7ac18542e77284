"""Tile embeddings: computed once per slide and encoder, resumable, never mixed across tilings."""
import shutil

import numpy as np
import pytest
import tifffile
import torch
import zarr

from lrp_captum.demos.mil_cohort import read_cohort
from lrp_captum.wsi.mil.embeddings import embed_slide, slide_tiling
from lrp_captum.wsi.mil.encoders import build_encoder
from lrp_captum.wsi.reader import EmptyTissueError
from test_mil_support import mil_cohort, tiny, tiny_spec  # noqa: F401 -- fixtures

CHUNK = 4


class ForwardCounter:
    """Counts tiles through an encoder; optionally fails on a given call, like a killed run."""

    def __init__(self, module, fail_on_call=None):
        self.tiles, self.calls, self.fail_on_call = 0, 0, fail_on_call
        self.handle = module.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt("simulated kill")
        self.tiles += len(args[0])

    def remove(self):
        self.handle.remove()


@pytest.fixture
def slide(mil_cohort, tmp_path):
    """A private copy of a lesion slide (tests below rewrite it)."""
    src = next(e.slide for e in read_cohort(mil_cohort) if e.label == 1)
    return shutil.copy(src, tmp_path / "slide.tif")


def test_second_embedding_of_a_slide_runs_no_tile_through_the_encoder(slide, tiny, tmp_path):
    first = embed_slide(slide, tiny, tmp_path / "cache", batch_size=CHUNK)
    counter = ForwardCounter(tiny.model)
    try:
        again = embed_slide(slide, tiny, tmp_path / "cache", batch_size=CHUNK)
    finally:
        counter.remove()
    assert counter.tiles == 0 and again.embedded_now == 0 and first.embedded_now == len(first) > CHUNK
    np.testing.assert_array_equal(again.features, first.features)
    assert np.isfinite(first.features).all() and first.features.shape == (len(first), tiny.dim)


def test_killed_embedding_resumes_with_the_missing_chunks_only(slide, tiny, tmp_path):
    reference = embed_slide(slide, tiny, tmp_path / "uninterrupted", batch_size=CHUNK)
    n_chunks = -(-len(reference) // CHUNK)
    counter = ForwardCounter(tiny.model, fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        embed_slide(slide, tiny, tmp_path / "cache", batch_size=CHUNK)
    counter.remove()
    counter = ForwardCounter(tiny.model)
    try:
        resumed = embed_slide(slide, tiny, tmp_path / "cache", batch_size=CHUNK)
    finally:
        counter.remove()
    assert counter.calls == n_chunks - 2  # two chunks were committed before the kill
    assert resumed.embedded_now == len(reference) - 2 * CHUNK
    np.testing.assert_array_equal(resumed.features, reference.features)


def test_a_changed_tile_grid_is_embedded_again_not_mixed(slide, tiny, tmp_path):
    loose = embed_slide(slide, tiny, tmp_path / "cache", min_tissue=0.1, batch_size=CHUNK)
    strict = embed_slide(slide, tiny, tmp_path / "cache", min_tissue=0.5, batch_size=CHUNK)
    assert len(strict) < len(loose) and strict.embedded_now == len(strict)
    stored = zarr.open_group(str(strict.store), mode="r")
    assert stored["features"].shape == (len(strict), tiny.dim)
    np.testing.assert_array_equal(stored["x0"][:], strict.tiles["x0"])
    # the strict tiles are a subset of the loose ones: their embeddings agree tile by tile
    index = {(r, c): i for i, (r, c) in enumerate(zip(loose.tiles["row"], loose.tiles["col"]))}
    rows = [index[(r, c)] for r, c in zip(strict.tiles["row"], strict.tiles["col"])]
    np.testing.assert_allclose(strict.features, loose.features[rows], rtol=1e-5, atol=1e-6)


def test_a_rewritten_slide_file_is_embedded_again(slide, mil_cohort, tiny, tmp_path):
    before = embed_slide(slide, tiny, tmp_path / "cache", batch_size=CHUNK)
    other = next(e.slide for e in read_cohort(mil_cohort) if e.label == 0)
    shutil.copy(other, slide)
    after = embed_slide(slide, tiny, tmp_path / "cache", batch_size=CHUNK)
    assert after.embedded_now == len(after) and after.store == before.store
    fresh = embed_slide(other, tiny, tmp_path / "fresh", batch_size=CHUNK)
    np.testing.assert_array_equal(after.features, fresh.features)


def test_a_slide_without_tissue_is_refused_as_an_empty_bag(tmp_path, tiny):
    blank = tmp_path / "blank.tif"
    tifffile.imwrite(blank, np.full((1024, 1024, 3), 242, np.uint8), tile=(256, 256), photometric="rgb",
                     resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    with pytest.raises(EmptyTissueError, match=r"blank\.tif: no tissue tiles, so the bag is empty"):
        embed_slide(blank, tiny, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_tiling_follows_the_encoder_resolution_and_tile_size(slide, tiny):
    grid, tiles = slide_tiling(slide, tiny)
    assert grid.target_mpp == 1.0 and grid.tile_size == 128 and grid.scale == 2.0
    assert set(tiles["w0"]) == {256.0}


def test_random_init_encoders_are_reproducible_and_the_seed_is_part_of_the_identity():
    a, b, c = build_encoder(tiny_spec(0)), build_encoder(tiny_spec(0)), build_encoder(tiny_spec(1))
    assert a.identity == b.identity != c.identity
    x = torch.randint(0, 255, (2, 128, 128, 3), dtype=torch.uint8)
    torch.testing.assert_close(a.embed(x), b.embed(x))


@pytest.mark.parametrize("arch, dim", [("resnet18", 512), ("timm:resnet18", 512)])
def test_torchvision_and_timm_models_become_encoders_without_their_classifier(arch, dim):
    enc = build_encoder(dict(arch=arch, tile_size=64))
    assert enc.dim == dim
    assert enc.embed(torch.zeros(2, 64, 64, 3, dtype=torch.uint8)).shape == (2, dim)


def test_an_unknown_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown encoder 'resnet_nope'"):
        build_encoder("resnet_nope")
