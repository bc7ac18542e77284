"""Slides explained with Vision Transformer tile models: the demo ViT (trained here), timm and
torchvision ViTs by name, the default composite for transformers, and pixel-resolution relevance
through the patch embedding."""
import contextlib
import io
import json

import numpy as np
import openslide
import pandas as pd
import pytest
import timm
import torch
import zarr

from lrp_captum import cli
from lrp_captum.demos.dab_localisation import dab_relevance_share
from lrp_captum.wsi.tile_relevance import DEFAULT_COMPOSITE, TRANSFORMER_COMPOSITE, default_composite, explain_tile
from lrp_captum.wsi.model import DemoTileCNN, load_model
from lrp_captum.demos.sample_slide import dab_mask, write_sample_slide
from lrp_captum.demos.slide_model import DAB_THRESHOLD, demo_model_config, make_tiles

SLIDE = 768
PATCH = 16
CFG = dict(classes=["negative", "positive"], mpp=0.5,
           normalisation=dict(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]))


@pytest.fixture(scope="module")
def vit_config(tmp_path_factory):
    # the shipped configuration (about 45 s on 2 busy cores): smaller ones stayed below 0.9
    # validation accuracy (data_cards/wsi_vit_demo_model.md)
    return demo_model_config(tmp_path_factory.mktemp("vit"), arch="demo_vit")


@pytest.fixture(scope="module")
def vit(vit_config):
    return load_model(vit_config, device="cpu")


@pytest.fixture(scope="module")
def slide_run(vit_config, tmp_path_factory):
    """A generated slide explained through the CLI with the demo ViT, no composite chosen,
    tiles side by side (no overlap) and the map at level-0 resolution."""
    d = tmp_path_factory.mktemp("vit_slide")
    slide = write_sample_slide(d / "sample.tif", SLIDE, kind="tiff", seed=2)
    out = d / "run"
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(["slide", "explain", str(slide), "--model", str(vit_config), "--out", str(out),
                       "--target", "positive", "--overlap", "0", "--output-downsample", "1",
                       "--batch-size", "8", "--threads", "1", "--quiet"])
    assert rc == 0
    return slide, out


def test_demo_vit_separates_dab_positive_tiles(vit_config):
    metrics = json.loads((vit_config.parent / "metrics.json").read_text())
    assert metrics["val_accuracy"] >= 0.9


def test_vit_relevance_for_positive_lies_on_the_dab_stain(vit):
    result = dab_relevance_share(vit, n_tiles=48)
    assert result.composite == TRANSFORMER_COMPOSITE
    assert 0.05 < result.area < 0.6
    assert result.ratio >= 2


def test_default_composite_is_attnlrp_gamma_for_a_vit_and_the_cnn_composite_for_a_cnn(vit):
    cnn = load_model(dict(CFG, architecture="demo_cnn", tile_size=64, kwargs=dict(width=4)), device="cpu")
    assert default_composite(vit) == TRANSFORMER_COMPOSITE == "attnlrp_gamma"
    assert default_composite(cnn) == DEFAULT_COMPOSITE
    assert isinstance(cnn.model, DemoTileCNN)


def test_tile_relevance_has_pixel_resolution_inside_patches(vit):
    tiles, _, _ = make_tiles(1, (384, 512), seed=3)
    relevance, _ = explain_tile(vit, tiles[0], target="positive")
    blocks = relevance.reshape(8, PATCH, 8, PATCH).std(axis=(1, 3))
    assert relevance.shape == (128, 128)
    assert (blocks > 0).all()


def test_slide_run_without_a_composite_uses_attnlrp_gamma_for_the_vit(slide_run):
    manifest = json.loads((slide_run[1] / "manifest.json").read_text())
    assert manifest["parameters"]["composite"] == TRANSFORMER_COMPOSITE
    assert manifest["model"]["config"]["architecture"] == "demo_vit"


def test_stitched_map_keeps_pixel_resolution_through_the_patch_embedding(slide_run):
    out = slide_run[1]
    relevance = zarr.open_group(str(out / "relevance.zarr"), mode="r")["relevance"][:]
    varying = []
    for t in pd.read_csv(out / "tiles.csv").itertuples():
        block = relevance[t.y0:t.y0 + t.h0, t.x0:t.x0 + t.w0]
        if block.shape != (128, 128) or not block.any():
            continue
        patches = block.reshape(8, PATCH, 8, PATCH).transpose(0, 2, 1, 3).reshape(64, -1)
        touched = np.abs(patches).sum(1) > 0
        varying.append((patches[touched].std(1) > 0).mean())
    assert len(varying) >= 4
    assert np.mean(varying) > 0.9


def test_stitched_relevance_for_positive_concentrates_on_the_dab_mask(slide_run):
    slide, out = slide_run
    relevance = zarr.open_group(str(out / "relevance.zarr"), mode="r")["relevance"][:]
    rgb = np.asarray(openslide.OpenSlide(str(slide)).read_region((0, 0), 0, (SLIDE, SLIDE)).convert("RGB"))
    mask = dab_mask(rgb, DAB_THRESHOLD)
    covered = np.zeros(relevance.shape, bool)
    for t in pd.read_csv(out / "tiles.csv").itertuples():
        covered[t.y0:t.y0 + t.h0, t.x0:t.x0 + t.w0] = True
    positive = np.clip(relevance, 0, None)[covered]
    inside = (positive * mask[covered]).sum() / positive.sum()
    area = mask[covered].mean()
    assert 0.02 < area < 0.5
    assert inside >= 2 * area


def test_a_timm_vit_by_name_is_explained_from_the_cli(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=2, img_size=32)
    torch.save(model.state_dict(), tmp_path / "vit_tiny.pt")
    slide = write_sample_slide(tmp_path / "s.tif", 512, kind="tiff", seed=3)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(["slide", "explain", str(slide), "--arch", "timm:vit_tiny_patch16_224",
                       "--weights", str(tmp_path / "vit_tiny.pt"), "--classes", "benign,tumour",
                       "--model-tile-size", "32", "--model-mpp", "2.0", "--out", str(tmp_path / "run"),
                       "--threads", "1", "--quiet"])
    assert rc == 0, err.getvalue()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["parameters"]["composite"] == TRANSFORMER_COMPOSITE
    assert manifest["n_tiles"] > 0


def test_a_torchvision_vit_name_is_built_for_the_tile_size():
    bundle = load_model(dict(CFG, architecture="vit_b_32", tile_size=64, kwargs=dict(num_classes=2)),
                        device="cpu")
    assert bundle.model.image_size == 64
    tile = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    relevance, probabilities = explain_tile(bundle, tile)
    assert relevance.shape == (64, 64) and probabilities.shape == (2,)


def test_a_timm_cnn_by_name_is_built_without_an_image_size():
    bundle = load_model(dict(CFG, architecture="timm:resnet18", tile_size=64, kwargs=dict(num_classes=2)),
                        device="cpu")
    assert bundle.model(torch.zeros(1, 3, 64, 64)).shape == (1, 2)
    assert default_composite(bundle) == DEFAULT_COMPOSITE


def test_an_unknown_timm_name_is_named():
    with pytest.raises(ValueError, match="timm has no model 'vit_nonexistent'"):
        load_model(dict(CFG, architecture="timm:vit_nonexistent", tile_size=64), device="cpu")


def test_train_demo_names_its_architectures(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["slide", "train-demo", "--arch", "resnet18"])
    assert exit_info.value.code == 2
    assert "demo_vit" in capsys.readouterr().err


def test_a_cnn_composite_on_a_vit_ends_in_one_line_and_leaves_nothing(vit_config, slide_run, tmp_path, capsys):
    slide, _ = slide_run
    out = tmp_path / "run"
    rc = cli.main(["slide", "explain", str(slide), "--model", str(vit_config), "--out", str(out),
                   "--composite", "epsilon_gamma_box", "--threads", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no rule for" in err and "LayerNorm" in err and "Traceback" not in err
    assert not out.exists()


def test_kwargs_an_architecture_does_not_take_are_named():
    with pytest.raises(ValueError, match=r"'demo_vit' cannot be built with kwargs \{'depth': 3\}"):
        load_model(dict(CFG, architecture="demo_vit", tile_size=64, kwargs=dict(depth=3)), device="cpu")
