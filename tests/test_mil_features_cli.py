"""`lrp-captum slide explain-mil --features ... --head ... --head-arch ...`: a head trained elsewhere
explains the TRIDENT/CLAM features of a real slide (written here in each layout) with no tile
embedded; every bad file ends in one line naming the file and the numbers, exit code 2, and no
output folder."""
import contextlib
import io
import json
import pickle

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from lrp_captum import cli
from lrp_captum.wsi.mil.heads import GatedAttentionMIL
from lrp_captum.wsi.mil.published_heads import ABMIL, CLAM, TransMIL, XMILAttentionMIL

W, H, SIDE, D = 1536, 1024, 256, 24  # slide 0.25 µm/px (TRIDENT: 40x); tiles 128 px at 20x
COORDS = np.array([(x, y) for y in range(0, H, SIDE) for x in range(0, W, SIDE)], dtype=np.int64)
TRIDENT_ATTRS = dict(patch_size=128, level0_magnification=40, target_magnification=20, overlap=0,
                     patch_size_level0=SIDE)


def _run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(["slide", *argv])
        except SystemExit as exc:  # refused while parsing, as on the command line
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def _features(n=len(COORDS), d=D):
    return np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)


def write_trident(job, name="S", features=None, coords=COORDS, attrs=TRIDENT_ATTRS):
    """TRIDENT's layout: <job>/20x_128px_0px_overlap/features_uni_v1/<name>.h5, attributes on coords."""
    folder = job / "20x_128px_0px_overlap" / "features_uni_v1"
    folder.mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / f"{name}.h5", "w") as f:
        f.create_dataset("features", data=_features() if features is None else features).attrs["encoder"] = "uni_v1"
        f.create_dataset("coords", data=coords).attrs.update(attrs)
    return folder / f"{name}.h5"


def write_clam(root, name="S", features=None):
    """CLAM's layout: patches/<name>.h5 (coords + patch attributes), h5_files/ and pt_files/."""
    feats = _features() if features is None else features
    for sub in ("patches", "h5_files", "pt_files"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "patches" / f"{name}.h5", "w") as f:
        f.create_dataset("coords", data=COORDS).attrs.update(patch_size=SIDE, patch_level=0,
                                                             downsample=np.array([1.0, 1.0]))
    with h5py.File(root / "h5_files" / f"{name}.h5", "w") as f:
        f.create_dataset("features", data=feats)
        f.create_dataset("coords", data=COORDS)
    torch.save(torch.from_numpy(feats), root / "pt_files" / f"{name}.pt")
    return root


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    from lrp_captum.demos.sample_slide import write_sample_slide

    return write_sample_slide(tmp_path_factory.mktemp("slide") / "S.tif", (W, H), kind="tiff", mpp=0.25)


def _randomised(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return model.eval()


def clam_checkpoint(path, d=D, classes=2):
    model = _randomised(CLAM(d, classes, hidden=16, attn_dim=8))
    torch.save({"model_state_dict": model.state_dict(), "epoch": 7, "auc_val": np.float64(0.93)}, path)
    return model


def _logit(model, feats, target):
    with torch.no_grad():
        return float(model(torch.from_numpy(feats)[None])[0, target])


# --- explaining ---------------------------------------------------------------------------------

def test_a_trident_job_folder_and_a_clam_checkpoint_give_the_result_folder_with_no_tile_embedded(tmp_path, slide):
    model = clam_checkpoint(tmp_path / "clam.pt")
    write_trident(tmp_path / "job")
    rc, out, err = _run("explain-mil", str(slide), "--features", str(tmp_path / "job"), "--head",
                        str(tmp_path / "clam.pt"), "--head-arch", "clam-sb", "--head-classes", "normal,tumour",
                        "--target", "tumour", "--out", str(tmp_path / "out"))
    assert rc == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["embeddings"]["embedded_now"] == 0 and manifest["encoder"] is None
    assert manifest["features"]["path"].endswith("features_uni_v1/S.h5") and manifest["features"]["dim"] == D
    assert manifest["head"]["classes"] == ["normal", "tumour"] and manifest["n_tiles"] == len(COORDS)
    tiles = pd.read_csv(tmp_path / "out" / "tiles.csv")
    np.testing.assert_array_equal(tiles[["x0", "y0"]].to_numpy(), COORDS)
    assert (tiles["w0"] == SIDE).all() and not tiles["pixel_map"].any()
    # xMIL-LRP shares the head's logit among the tiles (computed here from the checkpoint's own model)
    assert tiles["evidence"].sum() == pytest.approx(_logit(model, _features(), 1), abs=1e-4)
    np.testing.assert_allclose(tiles["attention"].sum(), 1.0, rtol=1e-5)
    for name in ("evidence.tif", "evidence.zarr", "tiles.geojson", "overview.png"):
        assert (tmp_path / "out" / name).exists()


def _no_constants(name):
    raise ValueError(f"{name} is not JSON")


def test_the_qupath_tiles_of_a_features_run_are_strict_json_without_the_unknown_tissue_fraction(tmp_path, slide):
    clam_checkpoint(tmp_path / "clam.pt")
    write_trident(tmp_path / "job")
    rc, _, err = _run("explain-mil", str(slide), "--features", str(tmp_path / "job"), "--head",
                      str(tmp_path / "clam.pt"), "--head-arch", "clam-sb", "--out", str(tmp_path / "out"), "--quiet")
    assert rc == 0, err
    geo = json.loads((tmp_path / "out" / "tiles.geojson").read_text(), parse_constant=_no_constants)
    measurements = geo["features"][0]["properties"]["measurements"]
    assert "tissue_fraction" not in measurements and "relevance_sum" in measurements  # the file records no tissue


@pytest.mark.parametrize("layout", ["h5_files", "pt_files", "feat_dir", "one file"])
def test_clams_feature_folders_and_files_are_read_with_the_tile_side_of_its_patch_file(tmp_path, slide, layout):
    clam_checkpoint(tmp_path / "clam.pt")
    root = write_clam(tmp_path / "clam")
    features = {"h5_files": root / "h5_files", "pt_files": root / "pt_files", "feat_dir": root,
                "one file": root / "h5_files" / "S.h5"}[layout]
    rc, _, err = _run("explain-mil", str(slide), "--features", str(features), "--head", str(tmp_path / "clam.pt"),
                      "--head-arch", "clam-sb", "--out", str(tmp_path / "out"), "--quiet")
    assert rc == 0, err
    tiles = pd.read_csv(tmp_path / "out" / "tiles.csv")
    assert len(tiles) == len(COORDS) and (tiles["w0"] == SIDE).all()


def _abmil(gated):
    return ABMIL(D, 16, 8, 2, gated=gated)


HEADS = {
    "abmil": lambda: _abmil(False), "abmil-gated": lambda: _abmil(True),
    "clam-mb": lambda: CLAM(D, 2, multi_branch=True, hidden=16, attn_dim=8),
    "transmil": lambda: TransMIL(D, 2, dim=16, heads=8),
}


@pytest.mark.parametrize("arch", sorted(HEADS))
def test_every_published_architecture_explains_features_by_its_name(tmp_path, slide, arch):
    model = _randomised(HEADS[arch]())
    torch.save(model.state_dict(), tmp_path / "head.pt")
    write_trident(tmp_path / "job")
    rc, _, err = _run("explain-mil", str(slide), "--features", str(tmp_path / "job"), "--head",
                      str(tmp_path / "head.pt"), "--head-arch", arch, "--out", str(tmp_path / "out"), "--quiet")
    assert rc == 0, err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    target = manifest["target"]["index"]
    assert manifest["target"]["logit"] == pytest.approx(_logit(model, _features(), target), abs=1e-5)


def test_an_xmil_run_folder_explains_features(tmp_path, slide):
    model = _randomised(XMILAttentionMIL(D, 16, 8, 2))
    run = tmp_path / "run"
    run.mkdir()
    (run / "args.json").write_text(json.dumps(dict(aggregation_model="attention_mil", input_dim=D, head_dim=2,
                                                   features_dim=16, inner_attention_dim=8, num_layers=1)))
    torch.save({"model_state_dict": model.state_dict(), "auc_val": np.float64(0.8)}, run / "best_model.pt")
    write_trident(tmp_path / "job")
    rc, _, err = _run("explain-mil", str(slide), "--features", str(tmp_path / "job"), "--head", str(run),
                      "--head-arch", "xmil-attnmil", "--out", str(tmp_path / "out"), "--quiet")
    assert rc == 0, err
    tiles = pd.read_csv(tmp_path / "out" / "tiles.csv")
    target = json.loads((tmp_path / "out" / "manifest.json").read_text())["target"]["index"]
    assert tiles["evidence"].sum() == pytest.approx(_logit(model, _features(), target), abs=1e-4)


def test_a_users_own_head_loads_through_its_factory(tmp_path, slide, monkeypatch):
    (tmp_path / "features_cli_heads.py").write_text(
        "from lrp_captum.wsi.mil.heads import GatedAttentionMIL\n"
        f"def build():\n    return GatedAttentionMIL({D}, 2, hidden=8, attention_dim=4)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    torch.save(_randomised(GatedAttentionMIL(D, 2, hidden=8, attention_dim=4)).state_dict(), tmp_path / "w.pt")
    write_trident(tmp_path / "job")
    rc, _, err = _run("explain-mil", str(slide), "--features", str(tmp_path / "job"), "--head", str(tmp_path / "w.pt"),
                      "--head-arch", "features_cli_heads:build", "--out", str(tmp_path / "out"), "--quiet")
    assert rc == 0, err


def test_a_doubtful_file_is_explained_with_one_warning_line_naming_it(tmp_path, slide):
    clam_checkpoint(tmp_path / "clam.pt")
    coords = COORDS.copy()
    coords[1] = coords[0]  # a tile listed twice, as a file appended to twice
    path = write_trident(tmp_path / "job", coords=coords)
    rc, _, err = _run("explain-mil", str(slide), "--features", str(tmp_path / "job"), "--head",
                      str(tmp_path / "clam.pt"), "--head-arch", "clam-sb", "--out", str(tmp_path / "out"), "--quiet")
    assert rc == 0, err
    assert err.splitlines() == [f"lrp-captum slide explain-mil: warning: {path}: 1 duplicate coordinates "
                                f"(a file appended to twice?)"]


# --- refusals: one line naming the file and the numbers, exit code 2, nothing written -----------

def _refused(tmp_path, slide, *extra, features=None, head=None, arch="clam-sb"):
    argv = ["explain-mil", str(slide), "--features", str(features or tmp_path / "job"), "--head",
            str(head or tmp_path / "clam.pt"), "--head-arch", arch, "--out", str(tmp_path / "out"), *extra]
    rc, _, err = _run(*argv)
    assert rc == 2, err
    lines = [line for line in err.splitlines() if line.startswith("lrp-captum")]  # not torch's own warnings
    assert len(lines) == 1 and lines[0].startswith("lrp-captum slide explain-mil: error: "), err
    assert not (tmp_path / "out").exists()
    return lines[0]


def test_features_of_another_size_than_the_heads_input_are_refused_with_both(tmp_path, slide):
    clam_checkpoint(tmp_path / "clam.pt", d=32)
    path = write_trident(tmp_path / "job")
    line = _refused(tmp_path, slide)
    assert str(path) in line and f"{D}-d" in line and "expects 32" in line


def test_coordinates_outside_the_slide_are_refused_with_the_count_and_the_slide_size(tmp_path, slide):
    clam_checkpoint(tmp_path / "clam.pt")
    coords = COORDS.copy()
    coords[:2] += W  # two tiles of another, wider slide
    write_trident(tmp_path / "job", coords=coords)
    line = _refused(tmp_path, slide)
    assert "S.h5" in line and f"2 of {len(COORDS)}" in line and f"{W}×{H}" in line


def test_a_pickled_object_as_features_is_refused_and_not_run(tmp_path, slide):
    clam_checkpoint(tmp_path / "clam.pt")
    root = write_clam(tmp_path / "clam")
    with open(root / "pt_files" / "S.pt", "wb") as f:
        pickle.dump(pd.Timestamp(0), f)  # any object but a tensor
    line = _refused(tmp_path, slide, features=root / "pt_files")
    assert "S.pt" in line and "not a plain tensor file" in line


def test_a_pickled_module_as_head_is_refused_naming_its_class(tmp_path, slide):
    torch.save(_randomised(CLAM(D, 2, hidden=16, attn_dim=8)), tmp_path / "clam.pt")  # the whole module
    write_trident(tmp_path / "job")
    line = _refused(tmp_path, slide)
    assert "clam.pt" in line and "CLAM" in line


def test_feature_files_without_patch_attributes_are_refused_with_the_flag_to_use(tmp_path, slide):
    clam_checkpoint(tmp_path / "clam.pt")
    write_trident(tmp_path / "job", attrs={})
    line = _refused(tmp_path, slide)
    assert "S.h5" in line and "tile size unknown" in line and "--patch-size-level0" in line
    rc, _, err = _run("explain-mil", str(slide), "--features", str(tmp_path / "job"), "--head",
                      str(tmp_path / "clam.pt"), "--head-arch", "clam-sb", "--patch-size-level0", str(SIDE),
                      "--out", str(tmp_path / "out"), "--quiet")
    assert rc == 0, err


def test_more_features_than_coordinates_is_refused_with_both_counts(tmp_path, slide):
    clam_checkpoint(tmp_path / "clam.pt")
    write_trident(tmp_path / "job", features=_features(len(COORDS) + 3))
    line = _refused(tmp_path, slide)
    assert f"{len(COORDS) + 3} feature rows" in line and f"{len(COORDS)} coordinates" in line


def test_a_folder_without_the_slides_features_names_what_it_holds(tmp_path, slide):
    clam_checkpoint(tmp_path / "clam.pt")
    write_trident(tmp_path / "job", name="other_slide")
    line = _refused(tmp_path, slide)
    assert "no features of slide 'S'" in line and "other_slide" in line


def test_a_gated_abmil_named_ungated_says_which_it_is(tmp_path, slide):
    torch.save(_randomised(_abmil(True)).state_dict(), tmp_path / "abmil.pt")
    write_trident(tmp_path / "job")
    line = _refused(tmp_path, slide, head=tmp_path / "abmil.pt", arch="abmil")
    assert "abmil.pt" in line and "name it abmil-gated" in line


def test_a_checkpoint_of_another_architecture_lists_the_names_to_use(tmp_path, slide):
    clam_checkpoint(tmp_path / "clam.pt")
    write_trident(tmp_path / "job")
    line = _refused(tmp_path, slide, arch="clam-mb")
    assert "not clam-mb; load it as clam-sb" in line


def test_class_names_must_match_the_heads_logits(tmp_path, slide):
    clam_checkpoint(tmp_path / "clam.pt")
    write_trident(tmp_path / "job")
    line = _refused(tmp_path, slide, "--head-classes", "a,b,c")
    assert "3 class names" in line and "2 logits" in line


@pytest.mark.parametrize("argv, words", [
    (["--features", "JOB"], "name the MIL head"),
    (["--head-arch", "clam-sb", "--features", "JOB"], "go with --head CHECKPOINT"),
    (["--head", "HEAD", "--features", "JOB"], "--head needs --head-arch"),
    (["--head", "HEAD", "--head-arch", "clam-sb"], "add --features"),
    (["--head", "HEAD", "--head-arch", "clam-sb", "--features", "JOB", "--mil", "HEAD"], "not both"),
    (["--head", "HEAD", "--head-arch", "clam_sb", "--features", "JOB"], "unknown head architecture"),
])
def test_head_options_that_do_not_fit_together_are_refused_before_any_work(tmp_path, slide, argv, words):
    clam_checkpoint(tmp_path / "clam.pt")
    write_trident(tmp_path / "job")
    argv = [str(tmp_path / "clam.pt") if a == "HEAD" else str(tmp_path / "job") if a == "JOB" else a for a in argv]
    rc, _, err = _run("explain-mil", str(slide), *argv, "--out", str(tmp_path / "out"))
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
