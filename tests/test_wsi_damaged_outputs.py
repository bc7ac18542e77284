"""A damaged manifest or work state in an output folder gives a clear error, or is redone."""
import json

import pytest

from lrp_captum.wsi.result_folder import check_out_dir
from lrp_captum.wsi.work import WORK


def test_damaged_manifest_is_reported_without_overwrite(tmp_path):
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(FileExistsError, match="damaged.*overwrite"):
        check_out_dir(tmp_path, "abc", overwrite=False)


def test_damaged_manifest_and_state_are_discarded_with_overwrite(tmp_path):
    (tmp_path / "manifest.json").write_text("{broken")
    (tmp_path / WORK).mkdir()
    (tmp_path / WORK / "state.json").write_text("not json")
    assert check_out_dir(tmp_path, "abc", overwrite=True) is None
    assert not (tmp_path / WORK).exists()


def test_matching_finished_run_is_returned(tmp_path):
    (tmp_path / "overview.png").write_bytes(b"png")
    manifest = {"params_hash": "abc", "outputs": {"overview": "overview.png"}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert check_out_dir(tmp_path, "abc", overwrite=False) == manifest


def test_a_run_missing_an_output_says_which_file_is_missing_not_other_parameters(tmp_path):
    from lrp_captum import cli
    from lrp_captum.demos.sample_slide import write_sample_slide
    from test_wsi_support import tiny_model_config

    slide = write_sample_slide(tmp_path / "s.tif", 512, kind="tiff", seed=1)
    argv = ["slide", "explain", str(slide), "--model", str(tiny_model_config(tmp_path / "model")),
            "--out", str(tmp_path / "o"), "--quiet"]
    assert cli.main(argv) == 0
    (tmp_path / "o" / "overlay.tif").unlink()
    with pytest.raises(FileExistsError) as refused:
        check_out_dir(tmp_path / "o", json.loads((tmp_path / "o" / "manifest.json").read_text())["params_hash"],
                      overwrite=False)
    message = str(refused.value)
    assert "overlay.tif" in message and "missing" in message and "other parameters" not in message
    assert "overwrite" in message
    assert cli.main(argv + ["--overwrite"]) == 0 and (tmp_path / "o" / "overlay.tif").is_file()  # made again
