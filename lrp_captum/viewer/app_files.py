"""Where the app's own files are, in a source checkout and in an installed package.

The Streamlit script, its pages and the viewer page live in the top-level ``apps/`` folder of
the repository. A wheel ships that folder as the package ``lrp_captum._app`` (see ``setup.py``),
so ``pip install lrp-captum[app]`` followed by ``lrp-captum app`` works without a checkout.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]   # lrp_captum/
INSTALLED_APP_DIR = PACKAGE_DIR / "_app"             # apps/ as shipped in a wheel
CHECKOUT_APP_DIR = PACKAGE_DIR.parent / "apps"       # apps/ next to lrp_captum/ in a checkout
APP_SCRIPT = "streamlit_app.py"
SERVED_APP = "app_server.py"


class AppFilesMissing(FileNotFoundError):
    """Neither an installed nor a checked-out copy of the app's files was found."""


def app_dir() -> Path:
    """The folder holding ``streamlit_app.py``, ``app_server.py``, ``pages/`` and ``viewer/``.

    The installed copy wins when both exist: it is the one that matches the installed package.
    """
    for candidate in (INSTALLED_APP_DIR, CHECKOUT_APP_DIR):
        if (candidate / APP_SCRIPT).is_file() and (candidate / "viewer" / "viewer.html").is_file():
            return candidate
    raise AppFilesMissing(f"the app's files (apps/{APP_SCRIPT}, apps/viewer/) are not installed next to "
                          f"lrp_captum; reinstall the package (pip install 'lrp-captum[app]')")


def viewer_assets_dir() -> Path:
    """The viewer page, its script and style sheet (served at ``/assets/`` by the tile server)."""
    return app_dir() / "viewer"
