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


def failure_text(what: str, error, *, todo: str = "") -> str:
    """How a page says that something failed, in the CLI's dialect: one line,
    ``"<what>: <reason>. <todo>."``, not yet made safe for the page (:func:`failure_message` is).

    Parameters
    ----------
    what : what failed, e.g. ``"Re-explaining this tile failed"``.
    error : the exception (or the reason as text). The package's errors for bad input
        (``ValueError``, ``OSError``, ``RuntimeError`` and theirs) are sentences naming the file or
        option and are shown as they are; any other exception (``KeyError: 'x'``) or one without a
        message is named by its type too.
    todo : what the user can do about it, if anything.
    """
    reason = " ".join(str(error).split())
    if isinstance(error, BaseException) and not (reason and isinstance(error, (ValueError, OSError, RuntimeError))):
        reason = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
    return f"{what}: {reason.rstrip('.')}" + (f". {todo.rstrip('.')}." if todo else "")


def failure_message(what: str, error, roots: dict | None = None, *, todo: str = "") -> str:
    """:func:`failure_text` ready for ``st.error``/``st.warning``: no absolute path, shown
    literally (:func:`page_message`); ``roots`` as for :func:`without_absolute_paths`."""
    return page_message(failure_text(what, error, todo=todo), roots)
