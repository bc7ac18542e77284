"""What a new user meets: ``make demo``'s app, a page started with only its own folder, the port a
second demo takes, the units on the slide page and the README's first screen (Streamlit's AppTest,
real files, real ``make -n``)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lrp_captum.cli import build_parser
from lrp_captum.cli.app import app_environment
from lrp_captum.cli.demo import app_arguments
from lrp_captum.viewer.access_token import AppAccess
from test_app_fixtures import make_fixture_dirs, visible

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "apps" / "streamlit_app.py")
APP_VARIABLES = ("SLIDES", "RESULTS", "MODEL", "EEG_RESULTS", "TEXT_MODEL", "TOKEN", "NO_TOKEN")


def _start_as(argv: list[str], monkeypatch) -> AppTest:
    """The app with the environment ``lrp-captum <argv>`` gives it."""
    env = app_environment(build_parser().parse_args(argv), AppAccess(None))
    for name in APP_VARIABLES:
        monkeypatch.delenv(f"LRP_CAPTUM_APP_{name}", raising=False)
    for name, value in env.items():
        if name.startswith("LRP_CAPTUM_APP_"):
            monkeypatch.setenv(name, value)
    return AppTest.from_file(APP, default_timeout=120)


def test_the_demo_app_can_explain_a_slide_again(tmp_path, monkeypatch):
    out = tmp_path / "demo_output"
    make_fixture_dirs(out, n_plain=0)
    (out / "model.json").write_text("{}")  # the page loads the model only when it explains
    argv = app_arguments(out, out / "model.json", None)
    assert argv[argv.index("--model") + 1] == str(out / "model.json")
    at = _start_as(argv, monkeypatch)
    at.query_params["slide"] = "case_0.tif"
    at.run()
    assert not at.exception
    assert not [w for w in at.warning if "No model configured" in w.value]
    assert at.button(key="explain_start").label.startswith("Re")  # "Re-explain case_0.tif"


@pytest.mark.parametrize("flag, header", [("--text-model", "Text"), ("--eeg-results", "EEG"),
                                          ("--results", "Cohort")])
def test_each_page_starts_with_only_its_own_folder(tmp_path, monkeypatch, flag, header):
    at = _start_as(["app", flag, str(tmp_path)], monkeypatch).run()
    assert not at.exception and not at.error
    assert at.header[0].value == header  # the page of the folder given opens first


def test_make_demo_passes_the_port_it_is_given_and_none_otherwise():
    def recipe(*extra):
        return subprocess.run(["make", "-n", "-o", ".venv/.installed", "demo", *extra], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout

    assert "lrp_captum.cli.demo --port 8612" in recipe("PORT=8612")
    assert "--port" not in recipe()
    assert app_arguments(Path("o"), Path("m.json"), None).count("--port") == 0


def test_readme_first_screen_says_what_make_demo_does_and_how_long_it_takes():
    first_screen = "\n".join((REPO / "README.md").read_text().splitlines()[:24])
    assert "make demo" in first_screen and "prints" in first_screen and "URL" in first_screen
    assert re.search(r"\d+ minutes", first_screen) and "PORT=" in first_screen
    assert "opens the viewer" not in first_screen


def test_the_slide_page_names_the_unit_of_every_number(tmp_path, monkeypatch):
    slides, results = make_fixture_dirs(tmp_path, n_plain=0)
    at = _start_as(["app", "--slides", str(slides), "--results", str(results)], monkeypatch).run()
    shown = [visible(c.value) for c in at.caption] + [visible(m.value) for m in at.markdown]
    gallery = [c for c in shown if c.startswith("(")]
    assert gallery and all("tile sum, logit units" in c and re.search(r"p\((positive|negative)\)=0\.\d\d", c)
                           for c in gallery)
    assert not [c for c in shown if re.search(r"\bp=|\bR=\d", c)]
    assert any("relevance per model-input pixel, logit units" in s for s in shown)
    at.button(key=next(b.key for b in at.button if b.key and b.key.startswith("open_pos_"))).click().run()
    captions = [img.proto.imgs[0].caption for img in at.image if img.proto.imgs]
    assert any("relevance per model-input pixel" in c and "lime +" in c for c in captions)
