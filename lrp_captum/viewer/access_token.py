"""The app's per-launch secret, as Jupyter has one: printed in the URL, kept in a cookie, checked
on every request of both servers.

Binding to 127.0.0.1 keeps other machines out, not other users of this machine: on a shared
host (the case of SSH port forwarding) anyone could otherwise read the slides and heatmaps and
start explanations through the loopback port. ``lrp-captum app`` draws a token
(:func:`new_token`), hands it to the app in ``LRP_CAPTUM_APP_TOKEN`` (the environment of a
process is readable by its owner only; a command line is readable by all) and prints
``http://127.0.0.1:PORT/?token=...``. The first request with ``?token=`` gets the token as a
cookie (``HttpOnly``, ``SameSite=Strict``) and a redirect to the same URL without it, so the
token leaves the address bar and the history. After that the cookie travels with every
request, the tile server's included (cookies are per host name, not per port).

``--no-token`` (``LRP_CAPTUM_APP_NO_TOKEN=1``) is the explicit opt-out; the app refuses to start
with neither (:func:`access_from_environment`).
"""
from __future__ import annotations

import hashlib
import hmac
import html
import os
import secrets
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from urllib.parse import parse_qsl, urlencode

TOKEN_ENV = "LRP_CAPTUM_APP_TOKEN"
NO_TOKEN_ENV = "LRP_CAPTUM_APP_NO_TOKEN"
QUERY_PARAMETER = "token"


class TokenMissing(RuntimeError):
    """The app was started with neither a token nor the explicit ``--no-token``."""


def new_token() -> str:
    """A fresh secret: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class AppAccess:
    """Who may use the app: holders of ``token``, or anyone on this machine when it is None.

    Parameters
    ----------
    token : str or None
        The launch's secret; None only when the user opted out with ``--no-token``.
    """

    token: str | None

    @property
    def required(self) -> bool:
        return self.token is not None

    @property
    def cookie_name(self) -> str:
        """Named after the token, so two apps on one host never overwrite each other's cookie."""
        digest = hashlib.sha256((self.token or "").encode()).hexdigest()[:12]
        return f"lrp_captum_{digest}"

    def matches(self, candidate: str | None) -> bool:
        """Constant-time comparison with the token (always True without one)."""
        if not self.required:
            return True
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token.encode())

    def cookie_value(self, cookie_header: str | None) -> str | None:
        """The app's cookie in a ``Cookie`` header, or None."""
        if not cookie_header:
            return None
        jar = SimpleCookie()
        try:
            jar.load(cookie_header)
        except CookieError:
            return None
        morsel = jar.get(self.cookie_name)
        return morsel.value if morsel is not None else None

    def allows(self, cookie_header: str | None, query_token: str | None = None) -> bool:
        """True when the request carries the token in its cookie or in ``?token=``."""
        return self.matches(self.cookie_value(cookie_header)) or self.matches(query_token)

    def set_cookie(self) -> str:
        """The ``Set-Cookie`` value that keeps the token for this browser session."""
        return f"{self.cookie_name}={self.token}; Path=/; HttpOnly; SameSite=Strict"


def access_from_environment(environ=None) -> AppAccess:
    """The app's access rule from ``LRP_CAPTUM_APP_TOKEN`` / ``LRP_CAPTUM_APP_NO_TOKEN``.

    Raises
    ------
    TokenMissing
        When neither is set: the app never starts open by accident.
    """
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return AppAccess(token)
    if env.get(NO_TOKEN_ENV, "").strip() == "1":
        return AppAccess(None)
    raise TokenMissing("the app needs its access token: start it with `lrp-captum app`, which draws one and "
                       "prints the URL to open (or pass --no-token to run without one)")


def url_with_token(base_url: str, access: AppAccess) -> str:
    """``base_url`` with ``?token=...`` when a token is required (the URL ``lrp-captum app`` prints)."""
    if not access.required:
        return base_url
    return f"{base_url.rstrip('/')}/?{urlencode({QUERY_PARAMETER: access.token})}"


def split_token(query_string: str) -> tuple[str | None, str]:
    """``(token or None, the query string without it)`` of a URL's query."""
    pairs = parse_qsl(query_string, keep_blank_values=True)
    token = next((v for k, v in pairs if k == QUERY_PARAMETER), None)
    return token, urlencode([(k, v) for k, v in pairs if k != QUERY_PARAMETER])


REFUSAL_TEXT = "403: this app needs its access token. Open the URL that `lrp-captum app` printed (it ends in ?token=...)."


def refusal_page() -> bytes:
    """The page a browser without the token gets (status 403): what to do, and a field for the token."""
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>lrp-captum: token needed</title>"
            "</head><body style='font-family:sans-serif;max-width:40em;margin:3em auto'>"
            f"<p>{html.escape(REFUSAL_TEXT)}</p>"
            "<form method=get action='/'><label>Token <input name=token type=password autocomplete=off size=48>"
            "</label> <button>Open</button></form></body></html>").encode()


class TokenMiddleware:
    """ASGI middleware: every HTTP request and WebSocket handshake must carry the token.

    A request with the right ``?token=`` is answered with the cookie and a redirect to the same
    URL without the token (GET and HEAD); anything else without the cookie gets 403 (the refusal
    page), WebSockets included (closed before they are accepted, which the server answers with
    403).

    Parameters
    ----------
    app : ASGI application
    access : AppAccess
    """

    def __init__(self, app, access: AppAccess):
        self.app = app
        self.access = access

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or not self.access.required:
            return await self.app(scope, receive, send)
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        cookie = headers.get(b"cookie", b"").decode("latin-1")
        query_token, rest = split_token(scope.get("query_string", b"").decode("latin-1"))
        if self.access.matches(self.access.cookie_value(cookie)):
            return await self.app(scope, receive, send)
        if self.access.matches(query_token):
            if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
                location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
                await send({"type": "http.response.start", "status": 303,
                            "headers": [(b"location", location.encode("latin-1", "replace")),
                                        (b"set-cookie", self.access.set_cookie().encode()),
                                        (b"cache-control", b"no-store"), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = refusal_page()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
