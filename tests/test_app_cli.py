"""``lrp-captum app``: argument checks and a real start of the Streamlit server."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrp_captum.cli import main
from test_app_fixtures import free_port, http_get, make_fixture_dirs, printed_token, token_cookie

REPO = Path(__file__).resolve().parents[1]


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses with a socket listening on ``port`` (from /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A = LISTEN
                if len(addr) == 8:
                    found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
                else:
                    found.add("ipv6:" + addr)
    return found


def test_missing_slides_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["app", "--slides", str(tmp_path / "nope"), "--results", str(tmp_path / "r")]) == 2
    assert "slides folder" in capsys.readouterr().err


def test_missing_model_config_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    code = main(["app", "--slides", str(tmp_path / "s"), "--results", str(tmp_path / "r"),
                 "--model", str(tmp_path / "m.json")])
    assert code == 2 and "model config" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["--slides", "{tmp}/nope", "--results", "{tmp}/r"],
                                  ["--text-model", "{tmp}/file.txt"]])
def test_app_errors_speak_the_cli_dialect(argv, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    assert main(["app", *[a.format(tmp=tmp_path) for a in argv]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrp-captum app: error: ") and err.count("\n") == 1, err


# the cookie of the running app's token: the checks below are about the Host header, so their
# requests carry the token as the user's browser does
LOGIN: dict = {}


@pytest.fixture(scope="module")
def running_app(tmp_path_factory):
    """``lrp-captum app`` started as a user starts it, shared by the tests below."""
    root = tmp_path_factory.mktemp("cli_app")
    slides, results = make_fixture_dirs(root, n_plain=0)
    port, tile_port = free_port(), free_port()
    log = open(root / "app.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "lrp_captum.cli", "app", "--slides", str(slides),
                             "--results", str(results), "--port", str(port), "--tile-port", str(tile_port)],
                            cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT)
    try:
        LOGIN.update(token_cookie(printed_token(root / "app.log")))  # printed once the app answers
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
        log.close()


def request(port: int, path: str, host: str, headers: dict | None = None) -> tuple[int, bytes]:
    status, _, body = http_get(port, path, host, {**LOGIN, **(headers or {})})
    return status, body


WEBSOCKET = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
             "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "streamlit"}


def test_app_command_serves_the_app_on_localhost_only(running_app):
    _, port = running_app
    assert _listening_addresses(port) == {"127.0.0.1"}
    status, body = request(port, "/", f"127.0.0.1:{port}")
    assert status == 200 and b"<html" in body.lower()
    assert request(port, "/", f"localhost:{port}")[0] == 200


@pytest.mark.parametrize("path", ["/", "/_stcore/health", "/slides", "/_stcore/host-config"])
def test_app_refuses_a_foreign_host_header(running_app, path):
    """DNS rebinding: a page of evil.example whose name now points to 127.0.0.1 gets nothing."""
    _, port = running_app
    status, body = request(port, path, f"evil.example:{port}")
    assert status == 403 and b"<html" not in body.lower()


def test_app_refuses_a_websocket_with_a_foreign_host_header(running_app):
    _, port = running_app
    assert request(port, "/_stcore/stream", f"evil.example:{port}", WEBSOCKET)[0] == 403
    assert request(port, "/_stcore/stream", f"127.0.0.1:{port}", WEBSOCKET)[0] == 101


def test_stopping_the_command_stops_the_streamlit_server(running_app):
    proc, port = running_app
    proc.terminate()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while _port_open(port):
        assert time.monotonic() < deadline, "the Streamlit server outlived the CLI"
        time.sleep(0.3)


def _port_open(port: int) -> bool:
    import socket
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
