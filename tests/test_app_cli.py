"""``lrp-captum app``: argument checks and a real start of the Streamlit server."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from lrp_captum.cli import main
from test_app_fixtures import make_fixture_dirs

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def test_app_command_serves_the_app_on_localhost(tmp_path):
    slides, results = make_fixture_dirs(tmp_path, n_plain=0)
    port, tile_port = _free_port(), _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lrp_captum.cli", "app", "--slides", str(slides),
                             "--results", str(results), "--port", str(port), "--tile-port", str(tile_port)],
                            cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    assert r.read() == b"ok"
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "the app did not start within 90 s"
                time.sleep(0.3)
        assert _listening_addresses(port) == {"127.0.0.1"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # terminating the CLI also stops the Streamlit server it started
    deadline = time.monotonic() + 30
    while _port_open(port):
        assert time.monotonic() < deadline, "the Streamlit server outlived the CLI"
        time.sleep(0.3)


def _port_open(port: int) -> bool:
    import socket
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0
