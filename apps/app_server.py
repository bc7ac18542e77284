"""What ``lrp-captum app`` runs: the Streamlit app (``streamlit_app.py``) behind two checks.

1. Host: Streamlit answers any ``Host`` header on its pages and checks only its WebSocket
   against ``server.allowedHosts``; a page of another site whose name was re-pointed to
   127.0.0.1 (DNS rebinding) could read the app. Every HTTP and WebSocket request whose ``Host``
   is not a loopback name gets 403 (:class:`~lrp_captum.viewer.loopback.LoopbackHostMiddleware`).
2. Token: every request (pages, WebSocket, health, static files, media, components) must carry
   the launch's secret (:mod:`lrp_captum.viewer.access_token`); without it, 403. The app does
   not start with neither a token nor the explicit ``--no-token``.

Both answer before Streamlit sees the request. ``streamlit run`` finds ``app`` (an ``st.App``)
and serves it with uvicorn.
"""
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from lrp_captum.viewer.access_token import TokenMiddleware, access_from_environment
from lrp_captum.viewer.loopback import LoopbackHostMiddleware

app = st.App(Path(__file__).with_name("streamlit_app.py"),
             middleware=[Middleware(LoopbackHostMiddleware),
                         Middleware(TokenMiddleware, access=access_from_environment())])
