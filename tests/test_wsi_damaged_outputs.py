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


def _finished(folder, parameters):
    manifest = {"params_hash": "abc", "outputs": {"overview": "overview.png"}, "parameters": parameters,
                "slide": {"path": "/slides/case_1.svs"}}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_finished_run_with_other_options_is_named_with_what_differs_and_the_flag(tmp_path):
    (tmp_path / "overview.png").write_bytes(b"png")
    _finished(tmp_path, {"composite": "epsilon", "overlap": 0.0, "tile_size": 224})
    with pytest.raises(FileExistsError) as refused:
        check_out_dir(tmp_path, "def", overwrite=False,
                      parameters={"composite": "epsilon", "overlap": 0.25, "tile_size": 224})
    message = str(refused.value)
    assert f"{tmp_path} already holds a finished explanation of case_1.svs made with overlap 0.0; this run " \
           f"has overlap 0.25." in message
    assert "--overwrite" in message and "overwrite=True" not in message


def test_an_unfinished_run_with_other_options_says_how_to_finish_or_discard_it(tmp_path):
    (tmp_path / WORK).mkdir()
    (tmp_path / WORK / "state.json").write_text(json.dumps(
        {"params_hash": "abc", "slide": "/slides/case_1.svs", "parameters": {"threads": 2}}))
    with pytest.raises(FileExistsError, match=r"unfinished explanation of case_1\.svs made with threads 2; this run "
                                              r"has threads 1\. Rerun it with the options it was started with"):
        check_out_dir(tmp_path, "def", overwrite=False, parameters={"threads": 1})


def test_a_finished_run_missing_an_output_file_names_it(tmp_path):
    _finished(tmp_path, {"composite": "epsilon"})
    with pytest.raises(FileExistsError, match=r"made with these options, but overview\.png is missing; rerun with "
                                              r"--overwrite"):
        check_out_dir(tmp_path, "abc", overwrite=False, parameters={"composite": "epsilon"})


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
