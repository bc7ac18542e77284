"""lrp-captum Streamlit app: slide relevance viewer, EEG, text, cohort and MIL pages.

Start with ``lrp-captum app`` and the folders of the pages you want (``--slides DIR --results
DIR``, ``--eeg-results DIR``, ``--text-model DIR``; see ``lrp-captum app --help``). Each page
works with only its own folder given. The app is thin: every computation is a call into
:mod:`lrp_captum`.
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

from lrp_captum.viewer.access_token import REFUSAL_TEXT  # noqa: E402
from lrp_captum.viewer.page_messages import failure_message, page_message  # noqa: E402


def _guarded(render):
    """Run a page; show a clear message instead of a stack trace if it fails."""
    try:
        render()
    except Exception as exc:  # the page must never show a traceback to the user
        traceback.print_exc()
        st.error(failure_message("This page hit an error it did not expect", exc, CONFIG.roots,
                                 todo="Details are in the terminal running the app"))


def slides_page():
    if CONFIG.slides_dir is None:
        st.header("Slide relevance viewer")
        st.info("Start the app with `lrp-captum app --slides DIR --results DIR` to use the Slides page.")
        return
    from views.slide_page import render_slide_page

    _guarded(lambda: render_slide_page(st, CONFIG))


def eeg_page():
    render_optional_page(st, "eeg_page", "render_eeg_page", "EEG", CONFIG.eeg_results, "--eeg-results")


def mil_page():
    render_optional_page(st, "mil_page", "render_mil_page", "MIL", CONFIG.results_dir, "--results")


def text_page():
    render_optional_page(st, "text_page", "render_text_page", "Text", CONFIG.text_model, "--text-model")


def cohort_page():
    render_optional_page(st, "cohort_page", "render_cohort_page", "Cohort",
                         CONFIG if CONFIG.results_dir is not None else None, "--results")


st.set_page_config(page_title="lrp-captum viewer", page_icon=":microscope:", layout="wide")
try:
    CONFIG = load_config()
except ConfigError as exc:
    st.error(page_message(exc))
    st.stop()
# the server (apps/app_server.py) already refused requests without the token; the pages check
# it as well, so a script started some other way with a token set is not open either
if CONFIG.access.required and not CONFIG.access.matches(st.context.cookies.get(CONFIG.access.cookie_name)):
    st.error(REFUSAL_TEXT)
    st.stop()

PAGES = [  # (render, title, icon, url path, the folder it needs)
    (slides_page, "Slides", ":material/biotech:", "slides", CONFIG.slides_dir),
    (eeg_page, "EEG", ":material/monitor_heart:", "eeg", CONFIG.eeg_results),
    (text_page, "Text", ":material/article:", "text", CONFIG.text_model),
    (cohort_page, "Cohort", ":material/table_view:", "cohort", CONFIG.results_dir),
    (mil_page, "MIL", ":material/grid_view:", "mil", CONFIG.results_dir),
]
# the first page whose folder was given opens first (`lrp-captum app --text-model DIR` opens Text)
first = next(i for i, page in enumerate(PAGES) if page[4] is not None)
nav = st.navigation([st.Page(render, title=title, icon=icon, url_path=path, default=i == first)
                     for i, (render, title, icon, path, _) in enumerate(PAGES)])
nav.run()
