"""The one rule for every message a page of the app shows: no absolute path, nothing rendered.

Messages reach the page from the app's own text and from libraries (OpenSlide, zarr, pandas,
MNE, the project's readers), which name files by their absolute path. The page may be seen by
others than the person who started the app, so a message names a configured folder by what it
is ("the results folder"), a file under it by its path relative to it, and any other absolute
path by its last component only. Then it is escaped for Streamlit's markdown
(:func:`~lrp_captum.viewer.escaping.streamlit_literal`): a file name in a message is data.
"""
from __future__ import annotations

import re

from lrp_captum.viewer.escaping import streamlit_literal
from lrp_captum.viewer.paths import without_roots

# an absolute POSIX path (not the "//" of a URL, not a fraction or "and/or"): keep its last part
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s/'\"`]+/)+(?=[^\s/'\"`]*)")


def without_absolute_paths(message: str, roots: dict | None = None) -> str:
    """``message`` with configured folders named (:func:`~lrp_captum.viewer.paths.without_roots`)
    and every other absolute path cut to its last component.

    Parameters
    ----------
    message : str
    roots : dict of {path: str}, optional
        Folder -> what to call it, e.g. ``{results_dir: "the results folder"}``.
    """
    text = without_roots(str(message), roots or {})
    return _ABSOLUTE_PATH.sub("", text)


def page_message(message, roots: dict | None = None) -> str:
    """``message`` (text or exception) ready for ``st.error``/``st.info``/a caption: no absolute
    path, shown literally."""
    return streamlit_literal(without_absolute_paths(str(message), roots))
