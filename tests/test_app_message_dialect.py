"""Every message the app's pages show as an error or a warning speaks one dialect, as the CLI
does: one line saying what failed and why, no absolute path, shown literally; it is made by
:mod:`lrp_captum.viewer.page_messages`, the one home of that rule."""
import ast
from pathlib import Path

import pytest

from lrp_captum.viewer.escaping import streamlit_literal
from lrp_captum.viewer.page_messages import failure_message

APPS = Path(__file__).resolve().parents[1] / "apps"
MADE_BY = {"page_message", "failure_message"}  # failure_text is not yet safe for the page


def _shown_messages():
    """(file:line, first argument) of every ``st.error``/``st.warning`` call under apps/."""
    for path in sorted(APPS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("error", "warning") and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "st" and node.args):
                yield f"{path.relative_to(APPS.parent)}:{node.lineno}", node.args[0]


def _made_by_page_messages(arg) -> bool:
    if isinstance(arg, ast.Call):
        return getattr(arg.func, "id", getattr(arg.func, "attr", None)) in MADE_BY
    if isinstance(arg, ast.Constant):  # the app's own fixed text, written for the page
        return isinstance(arg.value, str)
    return isinstance(arg, ast.Name) and arg.id.isupper()  # a module constant (REFUSAL_TEXT)


def test_every_error_and_warning_on_a_page_is_made_by_page_messages():
    shown = list(_shown_messages())
    assert len(shown) > 10
    wrong = [where for where, arg in shown if not _made_by_page_messages(arg)]
    assert not wrong, f"made without lrp_captum.viewer.page_messages: {wrong}"


def test_a_failure_is_one_line_naming_what_failed_without_absolute_paths(tmp_path):
    exc = FileNotFoundError(f"slide {tmp_path}/slides/a.svs cannot be read\n  (truncated)")
    text = failure_message("Re-explaining this tile failed", exc, {tmp_path / "slides": "the slides folder"})
    assert text == streamlit_literal("Re-explaining this tile failed: slide a.svs cannot be read (truncated)")
    assert "FileNotFoundError" not in text  # the project's own errors are sentences already


@pytest.mark.parametrize("exc, shown", [(KeyError("tile_index"), "KeyError: 'tile_index'"),
                                        (ValueError("no tissue"), "no tissue"), (RuntimeError(), "RuntimeError")])
def test_an_unexpected_error_is_named_by_its_type(exc, shown):
    assert failure_message("The Text page failed", exc) == streamlit_literal(f"The Text page failed: {shown}")


def test_what_to_do_follows_the_reason():
    assert failure_message("The last run failed", "out of memory", todo="Try a smaller batch") == \
        streamlit_literal("The last run failed: out of memory. Try a smaller batch.")
