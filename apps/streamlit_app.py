"""lrp-captum Streamlit app: slide relevance viewer (main page), EEG and text pages.

Start with ``lrp-captum app --slides DIR --results DIR [--model CONFIG] [--port 8501]``.
The app is thin: every computation is a call into :mod:`lrp_captum`.
"""
from __future__ import annotations

import sys
import traceback
from pathlib import Path

import streamlit as st

APP_DIR = Path(__file__).resolve().parent
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))

from app_config import ConfigError, load_config  # noqa: E402
from views.optional_pages import render_optional_page  # noqa: E402

from lrp_captum.viewer.escaping import markdown_literal  # noqa: E402
from lrp_captum.viewer.paths import without_roots  # noqa: E402


def _guarded(render):
    """Run a page; show a clear message instead of a stack trace if it fails."""
    try:
        render()
    except Exception as exc:  # the page must never show a traceback to the user
        traceback.print_exc()
        text = without_roots(str(exc), {CONFIG.slides_dir: "the slides folder", CONFIG.results_dir: "the results folder"})
        st.error(f"This page hit an error it did not expect: {type(exc).__name__}: {markdown_literal(text)}. "
                 "Details are in the terminal running the app.")


def slides_page():
    from views.slide_page import render_slide_page

    _guarded(lambda: render_slide_page(st, CONFIG))


def eeg_page():
    render_optional_page(st, "eeg_page", "render_eeg_page", "EEG", CONFIG.eeg_results, "--eeg-results")


def mil_page():
    render_optional_page(st, "mil_page", "render_mil_page", "MIL", CONFIG.results_dir, "--results")


def text_page():
    render_optional_page(st, "text_page", "render_text_page", "Text", CONFIG.text_model, "--text-model")


def cohort_page():
    render_optional_page(st, "cohort_page", "render_cohort_page", "Cohort", CONFIG, "--results")


st.set_page_config(page_title="lrp-captum viewer", page_icon=":microscope:", layout="wide")
try:
    CONFIG = load_config()
except ConfigError as exc:
    st.error(str(exc))
    st.stop()

nav = st.navigation([
    st.Page(slides_page, title="Slides", icon=":material/biotech:", url_path="slides", default=True),
    st.Page(eeg_page, title="EEG", icon=":material/monitor_heart:", url_path="eeg"),
    st.Page(text_page, title="Text", icon=":material/article:", url_path="text"),
    st.Page(cohort_page, title="Cohort", icon=":material/table_view:", url_path="cohort"),
    st.Page(mil_page, title="MIL", icon=":material/grid_view:", url_path="mil"),
])
nav.run()
