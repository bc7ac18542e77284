"""``lrp-captum slide train-mil`` and ``explain-mil`` end to end on real generated slides."""
import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import zarr

from lrp_captum import cli, list_composites
from lrp_captum.demos.mil_cohort import read_cohort
from lrp_captum.demos.slide_model import demo_encoder_spec
from lrp_captum.wsi.mil.encoders import build_encoder
from lrp_captum.wsi.mil.evidence import XMIL_COMPOSITE
from lrp_captum.wsi.mil.explain import explain_mil_slide
from lrp_captum.wsi.mil.head_files import save_head
from lrp_captum.wsi.mil.heads import make_head
from lrp_captum.wsi.mil.pixel_maps import encoder_pixel_maps
from test_mil_support import TINY, mil_cohort, tiny_spec  # noqa: F401 -- fixture


def _run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(["slide", *argv])
        except SystemExit as exc:  # refused while parsing (argparse), as on the command line
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


TINY_ARGS = ("--arch", TINY, "--encoder-tile-size", "128", "--encoder-mpp", "1.0")


@pytest.fixture(scope="module")
def trained(mil_cohort, tmp_path_factory):
    d = tmp_path_factory.mktemp("mil_train")
    rc, out, err = _run("train-mil", "--cohort", str(mil_cohort), "--out", str(d / "abmil"), *TINY_ARGS,
                        "--embeddings", str(d / "emb"), "--epochs", "5", "--quiet")
    assert rc == 0, err
    return d, json.loads(out)


@pytest.fixture(scope="module")
def lesion_slide(mil_cohort):
    return next(e for e in read_cohort(mil_cohort) if e.label == 1).slide


@pytest.fixture(scope="module")
def explained(trained, lesion_slide):
    d, metrics = trained
    rc, out, err = _run("explain-mil", str(lesion_slide), "--mil", metrics["head"], "--out", str(d / "explained"),
                        "--method", "gradient", "--top-tiles", "2", "--embeddings", str(d / "emb"), "--quiet")
    assert rc == 0, err
    return d / "explained", json.loads((d / "explained" / "manifest.json").read_text())


def test_train_mil_reports_its_split_and_writes_a_loadable_head(trained):
    d, metrics = trained
    assert metrics["n_train"] == 2 and metrics["n_test"] == 2
    config = json.loads((d / "abmil.json").read_text())
    assert config["encoder"]["arch"] == TINY and config["in_dim"] == 16 and (d / "abmil.pt").is_file()
    assert config["training"]["params"]["epochs"] == 5 and len(config["input_standardisation"]["std"]) == 16


def test_explain_mil_writes_every_output_with_per_tile_evidence(explained):
    out, manifest = explained
    for f in manifest["outputs"].values():
        assert (out / f).exists()
    table = pd.read_csv(out / "tiles.csv")
    n = manifest["n_tiles"]
    assert len(table) == n and table["evidence"].sum() == pytest.approx(manifest["evidence_sum"], rel=1e-5)
    assert sorted(table["evidence_rank"]) == list(range(1, n + 1))
    assert table.loc[table["evidence_rank"] == 1, "evidence"].item() == table["evidence"].max()
    group = zarr.open_group(str(out / "evidence.zarr"), mode="r")
    ev = group["evidence"][:]
    d = manifest["output_downsample"]
    for row in table.itertuples():  # each tile's evidence is painted over its footprint
        cy, cx = int((row.y0 + row.h0 / 2) / d), int((row.x0 + row.w0 / 2) / d)
        assert ev[cy, cx] == pytest.approx(row.evidence, rel=1e-5, abs=1e-7)
    assert group["embedding_relevance"].shape == (n, 16)
    np.testing.assert_allclose(group["embedding_relevance"][:].sum(1), table["evidence"], rtol=1e-4, atol=1e-6)


def test_geojson_gives_qupath_the_evidence_of_each_tile_and_its_direction(explained):
    out, manifest = explained
    features = json.loads((out / "tiles.geojson").read_text())["features"]
    table = pd.read_csv(out / "tiles.csv")
    assert len(features) == len(table)
    target = manifest["target"]["class_name"]
    for f, row in zip(features, table.itertuples()):
        assert f["properties"]["measurements"]["relevance_sum"] == pytest.approx(row.evidence, rel=1e-6, abs=1e-9)
        side = "for" if row.evidence >= 0 else "against"
        assert f["properties"]["classification"]["name"] == f"{side} {target}"


def test_the_top_tiles_get_pixel_maps_through_the_encoder(explained):
    out, manifest = explained
    group = zarr.open_group(str(out / "evidence.zarr"), mode="r")
    table = pd.read_csv(out / "tiles.csv")
    top = table.sort_values("evidence_rank")["tile_index"].to_numpy()[:2]
    np.testing.assert_array_equal(group["tile_maps_index"][:], top)
    maps = group["tile_maps"][:]
    assert maps.shape == (2, 128, 128) and np.isfinite(maps).all() and (np.abs(maps).sum((1, 2)) > 0).all()
    assert table["pixel_map"].sum() == 2 and set(table.loc[table["pixel_map"], "tile_index"]) == set(top)
    assert (out / "evidence.tif").stat().st_size > 0 and tifffile.TiffFile(out / "evidence.tif").pages[0].is_tiled


def test_a_second_explanation_of_the_slide_reads_the_embeddings_from_the_cache(trained, lesion_slide, explained):
    d, metrics = trained
    _, first = explained
    rc, _, err = _run("explain-mil", str(lesion_slide), "--mil", metrics["head"], "--out", str(d / "second"),
                      "--method", "single", "--embeddings", str(d / "emb"), "--quiet")
    assert rc == 0, err
    second = json.loads((d / "second" / "manifest.json").read_text())
    assert second["embeddings"]["embedded_now"] == 0 and second["embeddings"]["store"] == first["embeddings"]["store"]
    assert second["top_tiles"] == []  # "single" gives one number per tile: no pixel maps
    rc, _, err = _run("explain-mil", str(lesion_slide), "--mil", metrics["head"], "--out", str(d / "second"),
                      "--method", "single", "--embeddings", str(d / "emb"))
    assert rc == 0 and "already complete" in err


def test_a_head_is_refused_with_another_encoder_in_one_line(trained, lesion_slide, tmp_path):
    _, metrics = trained
    rc, _, err = _run("explain-mil", str(lesion_slide), "--mil", metrics["head"], "--out", str(tmp_path / "x"),
                      "--method", "gradient", *TINY_ARGS, "--encoder-seed", "1", "--embeddings", str(tmp_path / "e"))
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("lrp-captum slide explain-mil: error: the MIL head was trained on embeddings of encoder")
    assert not (tmp_path / "x").exists() and not (tmp_path / "e").exists()


def test_a_slide_without_tissue_is_refused_in_one_line(trained, tmp_path):
    _, metrics = trained
    blank = tmp_path / "blank.tif"
    tifffile.imwrite(blank, np.full((1024, 1024, 3), 242, np.uint8), tile=(256, 256), photometric="rgb",
                     resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    rc, _, err = _run("explain-mil", str(blank), "--mil", metrics["head"], "--out", str(tmp_path / "x"),
                      "--method", "gradient", "--embeddings", str(tmp_path / "e"))
    assert rc == 2 and "the bag is empty" in err and err.count("\n") == 1 and not (tmp_path / "x").exists()


def test_an_unknown_composite_is_a_clear_error(trained, lesion_slide, tmp_path):
    _, metrics = trained
    rc, _, err = _run("explain-mil", str(lesion_slide), "--mil", metrics["head"], "--out", str(tmp_path / "x"),
                      "--embeddings", str(tmp_path / "e"), "--composite", "no_such")
    assert rc == 2 and "no_such" in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_default_xmil_lrp_explains_the_slide(trained, lesion_slide, tmp_path):
    assert XMIL_COMPOSITE in list_composites()
    _, metrics = trained
    rc, _, err = _run("explain-mil", str(lesion_slide), "--mil", metrics["head"], "--out", str(tmp_path / "x"),
                      "--embeddings", str(tmp_path / "e"), "--quiet")
    assert rc == 0, err
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert manifest["method"] == "xmil_lrp" and len(manifest["top_tiles"]) == min(8, manifest["n_tiles"])


def test_pixel_maps_conserve_the_tile_evidence_through_a_bias_free_encoder(lesion_slide, tmp_path):
    enc = build_encoder(tiny_spec(bias=False))
    torch.manual_seed(0)
    head = make_head("abmil", enc.dim).eval()
    path = save_head(head, tmp_path / "head", name="abmil", classes=["negative", "lesion"], encoder=enc)
    manifest = explain_mil_slide(lesion_slide, path, tmp_path / "out", method="gradient", top_tiles=3,
                                 pixel_composite="epsilon", embeddings_dir=tmp_path / "emb", quiet=True)
    for t in manifest["top_tiles"]:
        assert t["pixel_relevance_sum"] == pytest.approx(t["evidence"], rel=1e-3, abs=1e-7)


def test_pixel_maps_run_through_the_demo_cnn_trunk(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LRP_CAPTUM_CACHE", str(tmp_path_factory.mktemp("cache")))
    enc = build_encoder(demo_encoder_spec())
    tiles = torch.randint(0, 255, (2, enc.tile_size, enc.tile_size, 3), dtype=torch.uint8)
    relevance = enc.embed(tiles) * 0.1
    maps = encoder_pixel_maps(enc, tiles, relevance)
    assert maps.shape == (2, enc.tile_size, enc.tile_size) and np.isfinite(maps).all()
    assert (np.abs(maps).sum((1, 2)) > 0).all()


# --- one result folder for slides and MIL -------------------------------------------------------------
def test_the_mil_manifest_records_versions_and_the_slide_as_a_slide_run_does(explained, tmp_path):
    from lrp_captum.demos.sample_slide import write_sample_slide
    from lrp_captum.wsi.pipeline import explain_slide
    from test_wsi_support import tiny_model_config

    _, manifest = explained
    slide_run = explain_slide(write_sample_slide(tmp_path / "s.tif", 512, seed=1), tiny_model_config(tmp_path),
                              tmp_path / "out", batch_size=64, threads=1, quiet=True)
    assert manifest["versions"]["torch"] and manifest["versions"].keys() == slide_run["versions"].keys()
    assert manifest["slide"].keys() == slide_run["slide"].keys()


def test_a_damaged_mil_manifest_gets_the_answer_of_a_damaged_slide_manifest(trained, lesion_slide, explained,
                                                                            tmp_path):
    import shutil

    d, metrics = trained
    out = tmp_path / "copy"
    shutil.copytree(explained[0], out)
    (out / "manifest.json").write_text("{broken")
    args = ("explain-mil", str(lesion_slide), "--mil", metrics["head"], "--out", str(out), "--method", "gradient",
            "--top-tiles", "2", "--embeddings", str(d / "emb"), "--quiet")
    rc, _, err = _run(*args)
    assert rc == 2 and "manifest.json is damaged" in err and "--overwrite" in err
    rc, _, err = _run(*args, "--overwrite")
    assert rc == 0, err
    assert json.loads((out / "manifest.json").read_text())["n_tiles"] == explained[1]["n_tiles"]


def test_a_mil_explanation_is_never_written_into_another_slides_result(trained, mil_cohort, explained):
    d, metrics = trained
    other = next(e for e in read_cohort(mil_cohort) if e.label == 0).slide
    before = (explained[0] / "manifest.json").read_bytes()
    rc, _, err = _run("explain-mil", str(other), "--mil", metrics["head"], "--out", str(explained[0]),
                      "--method", "gradient", "--embeddings", str(d / "emb"), "--overwrite", "--quiet")
    assert rc == 2 and "holds the result of another slide" in err
    assert (explained[0] / "manifest.json").read_bytes() == before
