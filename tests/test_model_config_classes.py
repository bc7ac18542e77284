"""A model config's classes are checked when the model is loaded, before any tile is read: a list
of distinct, non-empty names (``["tumour", "tumour"]`` would make one ``p_tumour`` column hold
another class's probability), as many as the model has outputs. ``slide explain`` refuses a bad
config in one line with exit code 2 and leaves no output folder (no ``.lrp_work``); a result
manifest whose ``classes`` is not a list is a damaged result, not a crash."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lrp_captum import cli
from lrp_captum.model_files import class_names
from lrp_captum.wsi.model import load_model
from test_wsi_support import tiny_model_config


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from lrp_captum.demos.sample_slide import write_sample_slide

    d = tmp_path_factory.mktemp("classes")
    (d / "slides").mkdir()
    return write_sample_slide(d / "slides" / "s.tif", 512, kind="tiff", seed=1), tiny_model_config(d / "model")


def _config_with(model: Path, classes) -> Path:
    """A copy of the tiny model's config (2 outputs) naming ``classes``."""
    config = json.loads(model.read_text())
    path = model.with_name(f"classes_{abs(hash(json.dumps(classes)))}.json")
    path.write_text(json.dumps(dict(config, classes=classes)))
    return path


BAD = {"duplicate": (["tumour", "tumour"], r"'tumour' .*twice"),
       "not a list": (5, r"list of class names.*got 5"),
       "empty name": (["tumour", " "], r"non-empty"),
       "not a name": (["tumour", 3], r"non-empty"),
       "none": ([], r"at least one"),
       "more than the outputs": (["a", "b", "c"], r"3 classes.*2 outputs"),
       "fewer than the outputs": (["a"], r"1 class.*2 outputs")}


@pytest.mark.parametrize("case", list(BAD))
def test_slide_explain_refuses_bad_classes_in_one_line_before_any_tile(files, tmp_path, capsys, case):
    slide, model = files
    classes, message = BAD[case]
    config = _config_with(model, classes)
    code = cli.main(["slide", "explain", str(slide), "--model", str(config), "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert config.name in err, err
    import re

    assert re.search(message, err), err
    assert not (tmp_path / "o").exists()  # no .lrp_work, nothing


@pytest.mark.parametrize("case", list(BAD))
def test_load_model_refuses_bad_classes(files, case):
    _, model = files
    classes, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        load_model(_config_with(model, classes), device="cpu")


def test_the_cli_classes_are_checked_by_the_same_helper(files, tmp_path, capsys):
    slide, model = files
    assert class_names(["neg", "pos"], "model config m.json") == ["neg", "pos"]
    code = cli.main(["slide", "explain", str(slide), "--arch", "resnet18", "--weights", str(model),
                     "--classes", "pos,neg,pos", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--classes" in err and "'pos' appears twice" in err, err
    assert not (tmp_path / "o").exists()


def test_a_result_manifest_whose_classes_is_not_a_list_is_a_damaged_result(files, tmp_path):
    from lrp_captum.viewer.results import ResultError, load_result

    slide, model = files
    out = tmp_path / "results" / "s"
    assert cli.main(["slide", "explain", str(slide), "--model", str(model), "--out", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    for bad in (5, ["a", "a"], "neg"):
        (out / "manifest.json").write_text(json.dumps(dict(manifest, classes=bad)))
        with pytest.raises(ResultError, match="class"):
            load_result(out, tmp_path / "results")
