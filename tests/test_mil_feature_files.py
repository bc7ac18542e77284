"""TRIDENT and CLAM per-slide feature files, written here in each layout with h5py/torch.save, read
into one record and checked against a real slide opened with OpenSlide."""
import argparse

import h5py
import numpy as np
import openslide
import pytest
import torch

from lrp_captum.wsi.mil.feature_files import check_against_slide, read_feature_file, trident_feature_files

W, H = 1536, 1024  # level-0 size of the test slide; 0.25 µm/px, so TRIDENT calls it 40x
# a 512-px grid at level 0 (TRIDENT: 256 px at 20x on a 40x slide), the last column hanging over
COORDS = np.array([(x, y) for y in (0, 512) for x in (0, 512, 1024, 1200)], dtype=np.int64)
N, D = len(COORDS), 16


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    from lrp_captum.demos.sample_slide import write_sample_slide

    path = write_sample_slide(tmp_path_factory.mktemp("slide") / "S.tif", (W, H), kind="tiff", mpp=0.25)
    handle = openslide.OpenSlide(str(path))
    yield handle
    handle.close()


def _features(n=N, d=D, dtype=np.float32):
    return np.random.default_rng(0).standard_normal((n, d)).astype(dtype)


TRIDENT_ATTRS = dict(patch_size=256, patch_size_level0=512, level0_magnification=40, target_magnification=20,
                     overlap=0, name="S", savetodir="/job/20x_256px_0px_overlap/patches")


def write_trident(path, features=None, coords=COORDS, coords_attrs=TRIDENT_ATTRS, encoder="uni_v1"):
    """TRIDENT's features file: datasets features and coords, the patching attributes on coords."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        feats = f.create_dataset("features", data=_features() if features is None else features,
                                 chunks=True, maxshape=(None,) * (1 if features is not None and features.ndim == 1 else 2))
        feats.attrs.update(name="S", savetodir=str(path.parent), encoder=encoder)
        f.create_dataset("coords", data=coords, chunks=(1, 2), maxshape=(None, 2)).attrs.update(coords_attrs)
    return path


CLAM_ATTRS = dict(patch_size=512, patch_level=0, downsample=np.array([1.0, 1.0]),
                  downsampled_level_dim=np.array([W, H]), level_dim=np.array([W, H]), name="S", save_path="/clam/patches")


def write_clam(root, features=None, coords=COORDS, patch_attrs=CLAM_ATTRS, pt_rows=None):
    """CLAM: patches/S.h5 (coords + attributes), h5_files/S.h5 (no attributes), pt_files/S.pt (a tensor)."""
    feats = _features() if features is None else features
    for sub in ("patches", "h5_files", "pt_files"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "patches" / "S.h5", "w") as f:
        f.create_dataset("coords", data=coords).attrs.update(patch_attrs)
    with h5py.File(root / "h5_files" / "S.h5", "w") as f:
        f.create_dataset("features", data=feats)
        f.create_dataset("coords", data=coords.astype(np.int32))
    torch.save(torch.from_numpy(feats[:pt_rows]), root / "pt_files" / "S.pt")
    return root


# --- TRIDENT ------------------------------------------------------------------------------------

def test_trident_h5_gives_features_level0_corners_and_the_tile_side(tmp_path):
    feats = _features()
    rec = read_feature_file(write_trident(tmp_path / "S.h5", feats))
    assert rec.source_format == "trident_h5" and rec.encoder == "uni_v1" and rec.slide_name == "S"
    assert torch.equal(rec.features, torch.from_numpy(feats)) and rec.features.dtype == torch.float32
    assert torch.equal(rec.coords, torch.from_numpy(COORDS))
    assert (rec.tile_side0, rec.patch_size, rec.magnification, rec.level0_magnification) == (512, 256, 20, 40)


def test_trident_float16_features_are_read_as_float32(tmp_path):
    feats = _features(dtype=np.float16)
    rec = read_feature_file(write_trident(tmp_path / "S.h5", feats))
    assert rec.features.dtype == torch.float32
    assert torch.equal(rec.features, torch.from_numpy(feats.astype(np.float32)))


def test_trident_tile_side_is_the_rounded_size_it_reads_not_the_floored_attribute(tmp_path):
    # 256 px at 15x of a 40x slide: TRIDENT reads round(682.67) = 683 level-0 px, its attribute says 682
    attrs = dict(TRIDENT_ATTRS, target_magnification=15, patch_size_level0=682)
    assert read_feature_file(write_trident(tmp_path / "S.h5", coords_attrs=attrs)).tile_side0 == 683


def test_trident_job_folder_maps_slide_names_to_their_feature_files(tmp_path):
    feats_dir = tmp_path / "20x_256px_0px_overlap" / "features_uni_v1"
    for name in ("S", "T"):
        write_trident(feats_dir / f"{name}.h5")
    (tmp_path / "20x_256px_0px_overlap" / "patches").mkdir()
    files = trident_feature_files(tmp_path)
    assert files == {"S": feats_dir / "S.h5", "T": feats_dir / "T.h5"}
    assert len(read_feature_file(files["T"])) == N


def test_trident_job_folder_with_two_encoders_lists_them_and_asks_which(tmp_path):
    for enc in ("uni_v1", "conch_v15"):
        write_trident(tmp_path / "20x_256px_0px_overlap" / f"features_{enc}" / "S.h5")
    with pytest.raises(ValueError, match=r"2 features_<encoder> folders: conch_v15, uni_v1; pass encoder="):
        trident_feature_files(tmp_path)
    assert set(trident_feature_files(tmp_path, encoder="conch_v15")) == {"S"}


def test_features_that_fit_the_slide_pass_with_edge_tiles_hanging_over(tmp_path, slide):
    rec = read_feature_file(write_trident(tmp_path / "S.h5", coords_attrs=dict(TRIDENT_ATTRS, level0_width=W,
                                                                                level0_height=H)))
    assert (COORDS[:, 0] + rec.tile_side0 > W).any()  # the last column hangs over the right edge
    check_against_slide(rec, slide, in_dim=D)


# --- CLAM ---------------------------------------------------------------------------------------

def test_clam_h5_takes_the_tile_side_from_its_patch_file(tmp_path, slide):
    root = write_clam(tmp_path)
    rec = read_feature_file(root / "h5_files" / "S.h5")
    assert rec.source_format == "clam_h5" and rec.coords_path == str(root / "patches" / "S.h5")
    assert (rec.tile_side0, rec.level) == (512, 0) and rec.coords.dtype == torch.int64
    check_against_slide(rec, slide, in_dim=D)


def test_clam_patch_size_counts_at_its_patch_level(tmp_path, slide):
    attrs = dict(CLAM_ATTRS, patch_size=128, patch_level=1, downsample=np.array([4.0, 4.0]))
    rec = read_feature_file(write_clam(tmp_path, patch_attrs=attrs) / "h5_files" / "S.h5")
    assert rec.tile_side0 == 512
    check_against_slide(rec, slide)


def test_clam_pt_features_take_their_coordinates_from_h5_files(tmp_path):
    feats = _features()
    root = write_clam(tmp_path, features=feats)
    rec = read_feature_file(root / "pt_files" / "S.pt")
    assert rec.source_format == "clam_pt" and rec.coords_path == str(root / "h5_files" / "S.h5")
    assert torch.equal(rec.features, torch.from_numpy(feats)) and torch.equal(rec.coords, torch.from_numpy(COORDS))
    assert rec.tile_side0 == 512


def test_clam_pt_without_h5_files_takes_its_coordinates_from_the_patch_folder(tmp_path):
    root = write_clam(tmp_path / "feats")
    (root / "h5_files" / "S.h5").unlink()
    patches = tmp_path / "elsewhere"
    (root / "patches").rename(patches)
    with pytest.raises(ValueError, match="has no coordinates"):
        read_feature_file(root / "pt_files" / "S.pt")
    rec = read_feature_file(root / "pt_files" / "S.pt", patches=patches)
    assert rec.coords_path == str(patches / "S.h5") and torch.equal(rec.coords, torch.from_numpy(COORDS))


# --- bad files ----------------------------------------------------------------------------------

def test_features_of_another_size_than_the_heads_input_are_refused_with_both_sizes(tmp_path):
    rec = read_feature_file(write_trident(tmp_path / "S.h5", _features(d=1536), encoder="uni_v2"))
    with pytest.raises(ValueError, match=r"S\.h5: features are 1536-d \(encoder 'uni_v2'\) but the head expects "
                                         r"1024.*uni_v1"):
        check_against_slide(rec, in_dim=1024)


def test_coordinates_outside_the_slide_are_refused_with_the_count_and_the_slide_size(tmp_path, slide):
    coords = COORDS.copy()
    coords[3] = (W + 10, 0)
    rec = read_feature_file(write_trident(tmp_path / "S.h5", coords=coords))
    with pytest.raises(ValueError, match=rf"1 of {N} tile corners lie outside the slide's {W}×{H} level-0 px "
                                         rf"\(first: \({W + 10}, 0\)\)"):
        check_against_slide(rec, slide)


def test_a_recorded_level0_size_of_another_slide_is_refused(tmp_path, slide):
    rec = read_feature_file(write_trident(tmp_path / "S.h5", coords_attrs=dict(TRIDENT_ATTRS, level0_width=W + 512,
                                                                                level0_height=H)))
    with pytest.raises(ValueError, match=rf"made on a slide of {W + 512}×{H} level-0 px, but this slide is {W}×{H}"):
        check_against_slide(rec, slide)


def test_more_features_than_coordinates_is_refused_with_both_counts(tmp_path):
    with pytest.raises(ValueError, match=rf"S\.h5: {N} feature rows but {N - 1} coordinates"):
        read_feature_file(write_trident(tmp_path / "S.h5", coords=COORDS[:-1]))


def test_clam_pt_with_a_row_less_than_its_coordinates_is_refused(tmp_path):
    root = write_clam(tmp_path, pt_rows=N - 1)
    with pytest.raises(ValueError, match=r"S\.pt: features of shape .*the two come from different runs"):
        read_feature_file(root / "pt_files" / "S.pt")
    (root / "h5_files" / "S.h5").unlink()
    with pytest.raises(ValueError, match=rf"S\.pt: {N - 1} feature rows but {N} coordinates in .*patches/S\.h5"):
        read_feature_file(root / "pt_files" / "S.pt")


def test_missing_patch_attributes_without_a_flag_are_refused_and_the_flag_is_used(tmp_path):
    path = write_trident(tmp_path / "S.h5", coords_attrs={})
    with pytest.raises(ValueError, match=r"S\.h5: tile size unknown \(coords attributes: none[;)].*patch_size_level0="):
        read_feature_file(path)
    assert read_feature_file(path, patch_size_level0=448).tile_side0 == 448


def test_clam_h5_without_a_patch_file_names_the_paths_it_tried(tmp_path):
    root = write_clam(tmp_path)
    (root / "patches" / "S.h5").unlink()
    with pytest.raises(ValueError, match=r"tile size unknown.*no CLAM patch file at .*patches/S\.h5"):
        read_feature_file(root / "h5_files" / "S.h5")


def test_a_pickled_object_in_a_pt_feature_file_is_refused_not_run(tmp_path):
    root = write_clam(tmp_path)
    torch.save(argparse.Namespace(features=torch.zeros(N, D)), root / "pt_files" / "S.pt")
    with pytest.raises(ValueError, match=r"S\.pt is not a plain tensor file \(it pickles argparse\.Namespace"):
        read_feature_file(root / "pt_files" / "S.pt")


def test_a_pt_feature_file_holding_a_dict_of_tensors_is_refused(tmp_path):
    root = write_clam(tmp_path)
    torch.save({"features": torch.zeros(N, D)}, root / "pt_files" / "S.pt")
    with pytest.raises(ValueError, match=r"S\.pt holds a dict, not a \(N, D\) feature tensor"):
        read_feature_file(root / "pt_files" / "S.pt")


def test_a_patch_level_the_slide_does_not_have_is_refused(tmp_path, slide):
    attrs = dict(CLAM_ATTRS, patch_size=32, patch_level=2, downsample=np.array([16.0, 16.0]))
    rec = read_feature_file(write_clam(tmp_path, patch_attrs=attrs) / "h5_files" / "S.h5")
    with pytest.raises(ValueError, match=r"patch_level 2 but the slide has 2 levels"):
        check_against_slide(rec, slide)


def test_a_downsample_that_differs_from_the_slides_is_refused(tmp_path, slide):
    attrs = dict(CLAM_ATTRS, patch_size=256, patch_level=1, downsample=np.array([2.0, 2.0]))
    rec = read_feature_file(write_clam(tmp_path, patch_attrs=attrs) / "h5_files" / "S.h5")
    with pytest.raises(ValueError, match=r"downsample 2 at patch_level 1 but the slide's is 4"):
        check_against_slide(rec, slide)


def test_a_slide_without_tiles_is_refused(tmp_path):
    path = write_trident(tmp_path / "S.h5", np.zeros((0,), np.float32), coords=np.zeros((0, 2), np.int64))
    with pytest.raises(ValueError, match=r"S\.h5: no tiles \(features of shape \(0,\)\)"):
        read_feature_file(path)


def test_a_file_that_is_not_hdf5_is_refused(tmp_path):
    path = tmp_path / "S.h5"
    path.write_text("features,coords\n")
    with pytest.raises(ValueError, match=r"S\.h5 is not an HDF5 file"):
        read_feature_file(path)


def test_clams_old_patch_layout_with_imgs_is_named(tmp_path):
    path = tmp_path / "S.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("imgs", data=np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"no dataset 'features' \(found: \['imgs'\]\).*create_patches_fp"):
        read_feature_file(path)


def test_tridents_numpy_pt_features_are_refused_with_the_h5_to_use(tmp_path):
    root = write_clam(tmp_path)
    torch.save(_features(), root / "pt_files" / "S.pt")  # TRIDENT's saveas='pt': a pickled numpy array
    with pytest.raises(ValueError, match=r"it pickles numpy\..*for TRIDENT use the \.h5 feature files"):
        read_feature_file(root / "pt_files" / "S.pt")


def test_tiles_hanging_over_the_edge_by_half_their_side_are_warned_about(tmp_path):
    coords = COORDS.copy()
    coords[3] = (W - 100, 0)  # 412 of its 512 px beyond the right edge
    rec = read_feature_file(write_trident(tmp_path / "S.h5", coords=coords))
    with pytest.warns(UserWarning, match=r"1 tile hangs over the slide edge by half its side or more"):
        check_against_slide(rec, level0_size=(W, H))


def test_duplicate_coordinates_are_warned_about(tmp_path):
    coords = COORDS.copy()
    coords[1] = coords[0]
    with pytest.warns(UserWarning, match=r"1 duplicate coordinates"):
        read_feature_file(write_trident(tmp_path / "S.h5", coords=coords))


def test_a_level0_magnification_the_slides_resolution_contradicts_is_warned_about(tmp_path, slide):
    rec = read_feature_file(write_trident(tmp_path / "S.h5", coords_attrs=dict(TRIDENT_ATTRS, level0_magnification=20,
                                                                                target_magnification=10)))
    with pytest.warns(UserWarning, match=r"level0_magnification 20 but the slide's 0.25 µm/px suggests 40"):
        check_against_slide(rec, slide)
