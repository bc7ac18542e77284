"""Library side of the slide viewer app: path safety, result loading, Deep Zoom tiles, tile server.

Holds the logic the Streamlit app (``apps/streamlit_app.py``) needs, so the app stays thin and
everything here is testable without a browser.
"""
from lrp_captum.viewer.paths import UnsafePathError, resolve_under
from lrp_captum.viewer.results import ResultError, SlideEntry, SlideResult, list_slides, load_result, top_tiles

__all__ = ["UnsafePathError", "resolve_under", "ResultError", "SlideEntry", "SlideResult",
           "list_slides", "load_result", "top_tiles"]
