"""The slide options are declared once (lrp_captum.wsi.slide_options.SLIDE_OPTIONS): an option
added there reaches every command that offers it, the app's explain form, the Python API and
the run parameters that the manifest records and the run hash covers; values are checked by
the same declaration on every path."""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from lrp_captum import cli
from lrp_captum.cli.slide_options import options_from_args
from lrp_captum.wsi.slide_options import (COHORT, EXPLAIN, EXPLAIN_MIL, POSITIVE_NUMBER, SLIDE_OPTIONS, TRAIN_MIL,
                                          Option, SlideOptions, form_fields)
from test_wsi_support import tiny_model_config

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "apps" / "streamlit_app.py")

#: one entry, as a developer adds it to SLIDE_OPTIONS
SHARPEN = Option("sharpen", 1.0, POSITIVE_NUMBER, "sharpening of the tiles before the model (default 1)",
                 commands=(EXPLAIN, COHORT, EXPLAIN_MIL, TRAIN_MIL), form_label="Sharpen")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from lrp_captum.demos.sample_slide import write_sample_slide

    d = tmp_path_factory.mktemp("options")
    (d / "slides").mkdir()
    return write_sample_slide(d / "slides" / "s.tif", 512, kind="tiff", seed=1), tiny_model_config(d / "model")


def _argv(command: str, slide: Path, model: Path, out: Path) -> list[str]:
    return {EXPLAIN: ["slide", "explain", str(slide), "--model", str(model), "--out", str(out)],
            COHORT: ["slide", "cohort", str(slide.parent), "--model", str(model), "--out", str(out)],
            EXPLAIN_MIL: ["slide", "explain-mil", str(slide), "--mil", "head.json", "--out", str(out)],
            TRAIN_MIL: ["slide", "train-mil", "--cohort", "c", "--out", str(out)]}[command]


def test_an_option_added_once_reaches_the_flags_of_every_command_that_offers_it(files, tmp_path):
    from lrp_captum.wsi.mil.explain import MIL_OPTIONS

    slide, model = files
    with SLIDE_OPTIONS.extended(SHARPEN):
        parser = cli.build_parser()
        for command in (EXPLAIN, COHORT, EXPLAIN_MIL, TRAIN_MIL):
            args = parser.parse_args(_argv(command, slide, model, tmp_path / "o") + ["--sharpen", "2.5"])
            table = MIL_OPTIONS if command == EXPLAIN_MIL else SLIDE_OPTIONS
            assert options_from_args(args, command, table)["sharpen"] == 2.5, command
            defaults = parser.parse_args(_argv(command, slide, model, tmp_path / "o"))
            assert options_from_args(defaults, command, table)["sharpen"] == 1.0, command
    args = cli.build_parser().parse_args(_argv(EXPLAIN, slide, model, tmp_path / "o"))
    assert not hasattr(args, "sharpen")  # gone with the declaration


def test_an_option_added_once_is_checked_on_the_command_line_as_in_python(files, tmp_path, capsys):
    slide, model = files
    with SLIDE_OPTIONS.extended(SHARPEN):
        with pytest.raises(SystemExit) as refused:
            cli.main(_argv(EXPLAIN, slide, model, tmp_path / "o") + ["--sharpen", "0"])
        err = capsys.readouterr().err.strip()
        with pytest.raises(ValueError, match=r"option sharpen: must be a positive number \(greater than 0\)"):
            SlideOptions(sharpen=0)
    assert refused.value.code == 2 and len(err.splitlines()) == 1
    assert "--sharpen: must be a positive number (greater than 0), got '0'" in err
    assert not (tmp_path / "o").exists()


def test_an_option_added_once_becomes_a_field_of_the_apps_explain_form(files, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    slide, model = files
    monkeypatch.setenv("LRP_CAPTUM_APP_SLIDES", str(slide.parent))
    monkeypatch.setenv("LRP_CAPTUM_APP_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("LRP_CAPTUM_APP_MODEL", str(model))
    with SLIDE_OPTIONS.extended(SHARPEN):
        field = next(f for f in form_fields() if f.name == "sharpen")
        assert (field.label, field.widget, field.value("2.5"), field.value("")) == ("Sharpen", "text", 2.5, 1.0)
        at = AppTest.from_file(APP, default_timeout=60).run()
        assert not at.exception
        box = at.text_input(key="explain_sharpen")
        assert box.label == "Sharpen" and box.value == "1.0"
    assert "sharpen" not in [f.name for f in form_fields()]


def test_an_option_added_once_enters_the_manifest_and_the_run_hash(files, tmp_path):
    from lrp_captum.wsi.mil.explain import MILOptions
    from lrp_captum.wsi.pipeline import explain_slide

    slide, model = files
    with SLIDE_OPTIONS.extended(SHARPEN):
        manifest = explain_slide(slide, model, tmp_path / "out", sharpen=2.5, batch_size=64, threads=1, quiet=True)
        assert manifest["parameters"]["sharpen"] == 2.5
        with pytest.raises(FileExistsError, match="made with sharpen 2.5; this run has sharpen 1.0"):  # another run
            explain_slide(slide, model, tmp_path / "out", sharpen=1.0, batch_size=64, threads=1, quiet=True)
        again = explain_slide(slide, model, tmp_path / "out", sharpen=2.5, batch_size=64, threads=1, quiet=True)
        assert again["params_hash"] == manifest["params_hash"]
        assert MILOptions(sharpen=2.5).hashed()["sharpen"] == 2.5  # explain-mil's parameters share it


def test_explain_slide_shows_every_option_with_its_default_in_its_signature():
    from lrp_captum.wsi.pipeline import explain_slide

    params = inspect.signature(explain_slide).parameters
    for o in SLIDE_OPTIONS:
        assert params[o.name].kind is inspect.Parameter.KEYWORD_ONLY and params[o.name].default == o.default


def test_options_are_checked_once_with_a_message_naming_the_option():
    with pytest.raises(ValueError, match=r"option overlap: must be in \[0, 1\), got 1"):
        SlideOptions(overlap=1)
    with pytest.raises(ValueError, match=r"option batch_size: expected a positive integer, got 2\.5"):
        SlideOptions(batch_size=2.5)
    with pytest.raises(ValueError, match=r"option composite: unknown composite 'bogus'; choose from"):
        SlideOptions(composite="bogus")
    with pytest.raises(TypeError, match="unknown option 'sharpness'"):
        SlideOptions(sharpness=2)


def test_checked_values_are_plain_python_so_the_run_hash_does_not_depend_on_their_type():
    a = SlideOptions(batch_size=np.int64(8), overlap=0, mpp=np.float32(0.5))
    b = SlideOptions(batch_size=8, overlap=0.0, mpp=0.5)
    assert a == b and type(a.batch_size) is int and type(a.overlap) is float


def test_the_composite_is_refused_with_the_same_message_by_the_cli_the_app_form_and_the_library(capsys, tmp_path):
    slide = tmp_path / "s.svs"
    slide.write_bytes(b"x")
    with pytest.raises(SystemExit):
        cli.main(["slide", "explain", str(slide), "--out", str(tmp_path / "o"), "--composite", "bogus"])
    cli_message = capsys.readouterr().err.split("--composite: ", 1)[1].split(" (see ")[0]
    with pytest.raises(ValueError) as library:
        SlideOptions(composite="bogus")
    assert str(library.value) == f"option composite: {cli_message}"
    composite = next(f for f in form_fields() if f.name == "composite")
    assert composite.choices[0] is None and "bogus" not in composite.choices  # the form offers only real ones


def test_the_cohort_takes_the_options_of_slide_explain_with_its_own_help_where_they_differ():
    explain, cohort = _command_parser("slide", "explain"), _command_parser("slide", "cohort")
    shared = [o for o in SLIDE_OPTIONS if EXPLAIN in o.commands and COHORT in o.commands]
    assert len(shared) >= 15
    for o in shared:
        a, b = _action(explain, o.cli_flag), _action(cohort, o.cli_flag)
        assert (a.dest, a.default) == (b.dest, b.default), o.name
        assert b.help == o.help_in(COHORT)


def _command_parser(*words):
    import argparse

    parser = cli.build_parser()
    for word in words:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    return parser


def _action(parser, flag: str):
    return next(a for a in parser._actions if flag in a.option_strings)


def test_slide_explain_without_flags_runs_with_the_declared_defaults(files, tmp_path):
    slide, model = files
    args = cli.build_parser().parse_args(_argv(EXPLAIN, slide, model, tmp_path / "o"))
    assert SlideOptions(options_from_args(args, EXPLAIN)) == SlideOptions()
