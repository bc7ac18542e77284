"""A MIL explanation in the deep-zoom viewer's tile server: the evidence map as the relevance layer,
attention as a second layer, the tile under a click, and the pixel map where the run made one."""
import io

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from lrp_captum.viewer.results import load_result
from lrp_captum.viewer.tile_server import NotFound, TileService
from lrp_captum.wsi.mil.encoders import build_encoder
from lrp_captum.wsi.mil.explain import explain_mil_slide
from lrp_captum.wsi.mil.head_files import head_from_checkpoint, save_head
from lrp_captum.wsi.mil.heads import make_head
from lrp_captum.wsi.mil.published_heads import CLAM
from test_app_fixtures import write_fixture_slide
from test_mil_support import tiny_spec

W, H, SIDE, D = 1536, 1024, 256, 16
COORDS = np.array([(x, y) for y in range(0, H, SIDE) for x in range(0, W, SIDE)], dtype=np.int64)


def features_app_folders(root, name="from_features"):
    """``(slides, results)`` under ``root``: a slide and its MIL explanation from TRIDENT-layout
    features (no encoder: no pixel maps), where the app looks for it."""
    slides, results = root / "slides", root / "results"
    slides.mkdir()
    results.mkdir()
    write_features_run(slides, results, name)
    return slides, results


def write_features_run(slides, results, name="from_features"):
    """A slide and its MIL explanation from TRIDENT-layout features (no encoder: no pixel maps)."""
    slide = write_fixture_slide(slides / f"{name}.tif", W, H)
    with h5py.File(results.parent / f"{name}.h5", "w") as f:
        f.create_dataset("features", data=np.random.default_rng(0).standard_normal((len(COORDS), D), np.float32))
        f.create_dataset("coords", data=COORDS).attrs["patch_size_level0"] = SIDE
    torch.manual_seed(0)
    torch.save(CLAM(D, 2, hidden=16, attn_dim=8).state_dict(), results.parent / "clam.pt")
    head = head_from_checkpoint(results.parent / "clam.pt", "clam-sb", ["normal", "tumour"])
    explain_mil_slide(slide, head, results / name, features=results.parent / f"{name}.h5", quiet=True)
    return slide


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("mil_viewer")
    slides, results = features_app_folders(root)
    # a run with an encoder: the top tiles get pixel maps
    slide = write_fixture_slide(slides / "embedded.tif", 1024, 1024)
    enc = build_encoder(tiny_spec())
    torch.manual_seed(0)
    head = save_head(make_head("abmil", enc.dim).eval(), root / "head", name="abmil", classes=["neg", "pos"],
                     encoder=enc)
    explain_mil_slide(slide, head, results / "embedded", method="gradient", top_tiles=2, min_tissue=0.0,
                      embeddings_dir=root / "emb", quiet=True)
    return slides, results


def test_a_mil_result_is_read_as_the_slides_result_with_its_evidence_as_the_map(folders):
    slides, results = folders
    r = load_result(results / "from_features", results, slide_dimensions=(W, H))
    assert r.kind == "mil" and r.classes == ["normal", "tumour"]
    tiles = pd.read_csv(results / "from_features" / "tiles.csv")
    d = r.downsample  # the map holds each tile's evidence over its footprint
    first = tiles.iloc[0]
    assert r.relevance[int(first["y0"] / d) + 1, int(first["x0"] / d) + 1] == pytest.approx(first["evidence"], rel=1e-5)


def test_info_names_the_kind_attention_and_how_many_tiles_have_pixel_maps(folders):
    service = TileService(*folders)
    features, embedded = service.info("from_features.tif")["result"], service.info("embedded.tif")["result"]
    assert features["kind"] == "mil" and features["has_attention"] and features["pixel_maps"] == 0
    assert "evidence for" in features["relevance_unit"]
    assert embedded["pixel_maps"] == 2


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_the_attention_layer_paints_each_tiles_attention_and_differs_from_the_evidence(folders):
    service = TileService(*folders)
    level = service.open_slide("from_features.tif")[2].level_count - 3  # the whole slide in one tile
    attention = _png(service.tile("from_features.tif", "attention", level, 0, 0)[0])
    evidence = _png(service.tile("from_features.tif", "relevance", level, 0, 0)[0])
    assert attention.shape == evidence.shape and attention[..., 3].max() > 0
    assert not np.array_equal(attention, evidence)
    with pytest.raises(ValueError, match="attention needs cmap"):
        service.tile("from_features.tif", "attention", level, 0, 0, cmap="cyan_lime")


def test_the_tile_under_a_point_is_found_with_its_evidence_and_no_pixel_map_from_features(folders):
    service = TileService(*folders)
    tiles = pd.read_csv(folders[1] / "from_features" / "tiles.csv")
    hit = service.tile_at("from_features.tif", 300.0, 700.0)  # column 1, row 2 of the 256-px tiles
    row = tiles[(tiles["x0"] == 256) & (tiles["y0"] == 512)].iloc[0]
    assert hit["tile"] == row["tile_index"] and hit["evidence"] == pytest.approx(row["evidence"])
    assert hit["attention"] == pytest.approx(row["attention"]) and hit["pixel_map"] is False
    assert service.tile_at("from_features.tif", W + 10.0, 10.0) == {"tile": None}
    with pytest.raises(NotFound, match="no pixel map"):
        service.pixel_map_png("from_features.tif", int(row["tile_index"]))


def test_a_top_tile_of_an_embedded_run_serves_its_pixel_map(folders):
    service = TileService(*folders)
    tiles = pd.read_csv(folders[1] / "embedded" / "tiles.csv")
    top = tiles[tiles["pixel_map"]].iloc[0]
    hit = service.tile_at("embedded.tif", top["x0"] + 1, top["y0"] + 1)
    assert hit["tile"] == top["tile_index"] and hit["pixel_map"] is True
    png = _png(service.pixel_map_png("embedded.tif", int(top["tile_index"])))
    assert png.shape == (128, 128, 4) and png[..., :3].std() > 0
