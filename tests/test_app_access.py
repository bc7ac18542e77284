"""The app behind its per-launch token (issue: any local user could read slides through 127.0.0.1).

``lrp-captum app`` as a user starts it, real HTTP to both servers (Streamlit and the tile server),
a real WebSocket handshake and a real headless Chromium: every endpoint answers 403 without the
token, the printed URL logs a browser in (cookie, redirect without the token), the pages check
the token themselves, ``--no-token`` is the explicit opt-out, and the port choice is said.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import streamlit

from lrp_captum.cli import main
from lrp_captum.cli.app import DEFAULT_PORT
from lrp_captum.viewer.access_token import REFUSAL_TEXT, AppAccess, new_token
from test_app_fixtures import free_port, http_get, make_fixture_dirs, printed_token, serving, token_cookie, viewer_frame

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
STREAMLIT_JS = next((Path(streamlit.__file__).parent / "static" / "static" / "js").glob("index.*.js")).name
# every kind of endpoint Streamlit serves: pages, its core API, its bundle, media, components,
# uploads, the app's static files, and a path that exists nowhere
APP_PATHS = ["/", "/slides", "/cohort", "/mil", "/eeg", "/text", "/?slide=case_0.tif", "/_stcore/health",
             "/_stcore/script-health-check", "/_stcore/host-config", "/_stcore/metrics", f"/static/js/{STREAMLIT_JS}",
             "/favicon.png", "/media/0123456789abcdef.png", "/component/x/index.html", "/_stcore/bidi-components/x/y.js",
             "/_stcore/upload_file/session/file", "/app/static/x.png", "/no/such/page"]
TILE_PATHS = ["/health", "/viewer?slide=case_0.tif", "/info?slide=case_0.tif",
              *(f"/tile?slide=case_0.tif&layer={layer}&level=12&col=0&row=0"
                for layer in ("slide", "relevance", "probability", "grid", "tissue")),
              "/assets/viewer.js", "/vendor/openseadragon/openseadragon.min.js", "/no/such/route"]
WEBSOCKET = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "streamlit"}


def _request(port: int, path: str, method: str = "GET", headers: dict | None = None) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request(method, path, headers=headers or {})
    status = conn.getresponse().status
    conn.close()
    return status


@pytest.fixture(scope="module")
def app(tmp_path_factory, browser):
    """``(port, tile_port, token)`` of ``lrp-captum app`` started as a user starts it, its slide page
    opened once (which starts the tile server)."""
    root = tmp_path_factory.mktemp("access")
    slides, results = make_fixture_dirs(root, n_plain=0)
    (root / "eeg").mkdir()
    port, tile_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "lrp_captum.cli", "app", "--slides", str(slides), "--results", str(results),
           "--eeg-results", str(root / "eeg"), "--port", str(port), "--tile-port", str(tile_port)]
    with serving(cmd, port, dict(os.environ), root / "app.log", cwd=REPO):
        token = printed_token(root / "app.log")
        page = browser.new_page()
        viewer_frame(page, f"http://127.0.0.1:{port}", "case_0.tif", token)
        page.close()
        yield port, tile_port, token


@pytest.mark.parametrize("path", APP_PATHS)
def test_every_app_endpoint_refuses_a_request_without_the_token(app, path):
    port, _, token = app
    wrong = new_token()
    assert _request(port, path) == 403
    assert _request(port, path, headers=token_cookie(wrong)) == 403                 # a cookie of another launch
    assert _request(port, path + ("&" if "?" in path else "?") + f"token={wrong}") == 403
    assert _request(port, path, headers=token_cookie(token)) != 403


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "HEAD"])
def test_other_methods_without_the_token_are_refused_too(app, method):
    port, tile_port, _ = app
    assert _request(port, "/_stcore/upload_file/session/file", method) == 403
    assert _request(tile_port, "/tile?slide=case_0.tif&layer=slide&level=12&col=0&row=0", method) == 403


def test_the_websocket_needs_the_token(app):
    port, _, token = app
    assert http_get(port, "/_stcore/stream", headers=WEBSOCKET)[0] == 403
    assert http_get(port, "/_stcore/stream", headers={**WEBSOCKET, **token_cookie(new_token())})[0] == 403
    assert http_get(port, "/_stcore/stream", headers={**WEBSOCKET, **token_cookie(token)})[0] == 101


@pytest.mark.parametrize("path", TILE_PATHS)
def test_every_tile_server_endpoint_refuses_a_request_without_the_token(app, path):
    _, tile_port, token = app
    assert _request(tile_port, path) == 403
    assert _request(tile_port, path, headers=token_cookie(new_token())) == 403
    assert _request(tile_port, path, headers=token_cookie(token)) in (200, 404)
    assert (_request(tile_port, path, headers=token_cookie(token)) == 404) == path.startswith("/no/")


def test_the_printed_url_sets_the_cookie_and_drops_the_token_from_the_address(app):
    import http.client

    port, _, token = app
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("GET", f"/?slide=case_0.tif&token={token}")
    resp = conn.getresponse()
    conn.close()
    cookie = resp.getheader("Set-Cookie")
    assert resp.status == 303 and resp.getheader("Location") == "/?slide=case_0.tif"
    assert cookie.startswith(f"{AppAccess(token).cookie_name}={token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_browser_logged_in_by_the_printed_url_sees_the_slide_and_its_tiles(app, browser, host):
    port, _, token = app
    context = browser.new_context()
    page = context.new_page()
    frame = viewer_frame(page, f"http://{host}:{port}", "case_0.tif", token)
    frame.wait_for_function("window.lrpViewer.tilesLoaded >= 4", timeout=60_000)
    assert token not in page.url and page.url.endswith("/?slide=case_0.tif")
    assert frame.url.startswith(f"http://{host}:")  # the frame shares the app's host name, so its cookie
    assert frame.evaluate("window.lrpViewer.tilesFailed") == 0
    assert frame.evaluate("window.lrpViewer.info.result") is not None
    context.close()


def test_a_browser_without_the_token_sees_only_the_refusal(app, browser):
    port, _, _ = app
    page = browser.new_page()
    response = page.goto(f"http://127.0.0.1:{port}/?slide=case_0.tif", timeout=60_000)
    page.wait_for_timeout(1000)
    assert response.status == 403
    assert "access token" in page.inner_text("body")
    assert page.get_by_text("Slide relevance viewer").count() == 0 and not page.frames[1:]
    page.close()


def test_the_pages_check_the_token_themselves(tmp_path, browser):
    """Streamlit's script run without the server's middleware (a bare ``streamlit run``) with a token
    set still shows nothing without the cookie."""
    slides, results = make_fixture_dirs(tmp_path, n_plain=0)
    token, port = new_token(), free_port()
    env = dict(os.environ, LRP_CAPTUM_APP_SLIDES=str(slides), LRP_CAPTUM_APP_RESULTS=str(results),
               LRP_CAPTUM_APP_TOKEN=token)
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "apps" / "streamlit_app.py"), "--server.port",
           str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    with serving(cmd, port, env, tmp_path / "streamlit.log"):
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
        page.get_by_text(REFUSAL_TEXT[:40], exact=False).wait_for(timeout=60_000)
        assert page.get_by_text("Slide relevance viewer").count() == 0
        context.add_cookies([{"name": AppAccess(token).cookie_name, "value": token, "url": f"http://127.0.0.1:{port}"}])
        page.reload()
        page.get_by_text("Slide relevance viewer").wait_for(timeout=60_000)
        assert page.get_by_text(REFUSAL_TEXT[:40], exact=False).count() == 0
        context.close()


def test_the_served_app_does_not_start_without_a_token_or_the_opt_out(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRP_CAPTUM_APP_")}
    env.update(LRP_CAPTUM_APP_TEXT_MODEL=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "streamlit", "run", str(REPO / "apps" / "app_server.py"),
                           "--server.port", str(free_port()), "--server.headless", "true"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "needs its access token" in done.stdout + done.stderr


def test_no_token_is_an_explicit_opt_out_that_says_so(tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "lrp_captum.cli", "app", "--text-model", str(tmp_path), "--port", str(port),
           "--no-token"]
    with serving(cmd, port, dict(os.environ), tmp_path / "app.log", cwd=REPO):
        deadline = time.monotonic() + 120
        while f"open http://127.0.0.1:{port}" not in (tmp_path / "app.log").read_text():
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert _request(port, "/") == 200
    line = next(s for s in (tmp_path / "app.log").read_text().splitlines() if "open http" in s)
    assert "token=" not in line and "anyone on this machine" in line


def _occupy(port: int):
    """Listen on ``port`` (if nobody does yet), as a first app would."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        pass  # already taken: by another app, which is the case under test anyway
    return sock


def test_an_app_with_only_the_text_page_starts_on_the_next_free_port_and_says_which(tmp_path, browser):
    blocker = _occupy(DEFAULT_PORT)
    try:
        cmd = [sys.executable, "-m", "lrp_captum.cli", "app", "--text-model", str(tmp_path)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LRP_CAPTUM_APP_")}
        proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=open(tmp_path / "app.log", "w"),
                                stderr=subprocess.STDOUT)
        try:
            token = printed_token(tmp_path / "app.log")
            log = (tmp_path / "app.log").read_text()
            port = int(log.split("open http://127.0.0.1:")[1].split("/")[0])
            assert port != DEFAULT_PORT and f"port {DEFAULT_PORT} is in use" in log and f"using port {port}" in log
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/?token={token}", timeout=60_000)
            page.get_by_text("No text model", exact=False).wait_for(timeout=60_000)  # the Text page opens first
            page.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        blocker.close()


def test_a_taken_port_given_with_port_is_a_one_line_error(capsys, tmp_path):
    blocker = _occupy(free_port())
    try:
        port = blocker.getsockname()[1]
        assert main(["app", "--text-model", str(tmp_path), "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert f"port {port} is in use" in err and len(err.strip().splitlines()) == 1
    finally:
        blocker.close()
