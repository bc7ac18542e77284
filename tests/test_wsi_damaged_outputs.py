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
