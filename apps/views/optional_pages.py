"""Pages contributed by the EEG and text adapters (``apps/views/eeg_page.py``, ``text_page.py``).

They are optional: when a file is missing, or the app was started without the folder the page
needs, the page says so instead of failing. (The folder is ``views/``, not ``pages/``: Streamlit
lists the files of a ``pages/`` folder next to the script as pages of its own, which flashed in
the sidebar and made a fresh load of ``/slides`` show "Page not found".)
"""
from __future__ import annotations

import importlib.util
import traceback
from pathlib import Path

from lrp_captum.viewer.page_messages import failure_message

PAGES_DIR = Path(__file__).resolve().parent


def load_page_module(name: str, pages_dir: Path = PAGES_DIR):
    """Import ``<pages_dir>/<name>.py`` by file path; None when the file does not exist."""
    path = pages_dir / f"{name}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"lrp_captum_app_views.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_optional_page(st, module_name: str, func_name: str, title: str, arg, arg_flag: str,
                         pages_dir: Path = PAGES_DIR) -> None:
    """Render ``<module_name>.<func_name>(st, arg)`` or a clear message why it cannot be shown."""
    st.header(title)
    try:
        module = load_page_module(module_name, pages_dir)
    except Exception as exc:
        traceback.print_exc()
        st.error(failure_message(f"The {title} page failed to load", exc))
        return
    if module is None or not hasattr(module, func_name):
        st.info(f"The {title} page is not part of this installation (apps/views/{module_name}.py with "
                f"{func_name}() is missing).")
        return
    if arg is None:
        st.info(f"Start the app with `lrp-captum app ... {arg_flag} DIR` to use the {title} page.")
        return
    try:
        getattr(module, func_name)(st, arg)
    except Exception as exc:  # never show a traceback in the page
        traceback.print_exc()
        roots = {arg: f"the {title} page's folder"} if isinstance(arg, (str, Path)) else getattr(arg, "roots", {})
        st.error(failure_message(f"The {title} page failed", exc, roots))
