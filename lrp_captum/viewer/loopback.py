"""Refuse requests whose ``Host`` header is not a loopback name (DNS-rebinding guard).

Both servers of the app bind to 127.0.0.1, but a web page from another site can still reach
them: its own host name is re-pointed to 127.0.0.1 after the page loaded (DNS rebinding), and
the browser then sends that foreign name in ``Host``. A server that answers only to loopback
names cannot be read that way. The tile server calls :func:`is_loopback_host`; the Streamlit app
runs behind :class:`LoopbackHostMiddleware` (``apps/app_server.py``).
"""
from __future__ import annotations

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
REFUSAL = b"refused: only loopback host names (127.0.0.1, localhost) are served"


def is_loopback_host(host_header: str | None) -> bool:
    """True when a ``Host`` header names this machine's loopback interface (any port).

    Parameters
    ----------
    host_header : str or None
        The raw header value, e.g. ``"127.0.0.1:8501"``; None or empty is refused.
    """
    if not host_header:
        return False
    host = host_header.strip().lower()
    name, sep, port = host.rpartition(":")
    if not sep or "]" in port:  # no port, or the last colon was inside "[::1]"
        name, port = host, ""
    if port and not port.isdigit():
        return False
    return name.rstrip(".") in LOOPBACK_NAMES


def browser_host(host_header: str | None) -> str:
    """The loopback name to give the browser for the tile server: the one it used for the app.

    Cookies belong to a host name, so the viewer frame must use the app's name for the app's
    access cookie to be sent; ``[::1]`` (the tile server listens on IPv4 only) and anything
    else become ``127.0.0.1``.
    """
    name = (host_header or "").strip().lower().rsplit(":", 1)[0].rstrip(".")
    return "localhost" if is_loopback_host(host_header) and name == "localhost" else "127.0.0.1"


class LoopbackHostMiddleware:
    """ASGI middleware: HTTP and WebSocket requests with a foreign ``Host`` get 403.

    Parameters
    ----------
    app : ASGI application
        The application to protect (Streamlit's ``st.App``).
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            if not is_loopback_host(host):
                if scope["type"] == "websocket":
                    # closing before accepting makes the server answer the handshake with 403
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(REFUSAL)).encode())]})
                await send({"type": "http.response.body", "body": REFUSAL})
                return
        await self.app(scope, receive, send)
