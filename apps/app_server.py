"""What ``lrp-captum app`` runs: the Streamlit app (``streamlit_app.py``) behind a Host check.

Streamlit answers any ``Host`` header on its pages and checks only its WebSocket against
``server.allowedHosts``; a page of another site whose name was re-pointed to 127.0.0.1 (DNS
rebinding) could read the app. Every HTTP and WebSocket request whose ``Host`` is not a loopback
name gets 403 here, before Streamlit sees it. ``streamlit run`` finds ``app`` (an ``st.App``)
and serves it with uvicorn.
"""
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from lrp_captum.viewer.loopback import LoopbackHostMiddleware

app = st.App(Path(__file__).with_name("streamlit_app.py"), middleware=[Middleware(LoopbackHostMiddleware)])
