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
        # streamlit listens on loopback only
        with socket.socket() as s:
            s.settimeout(1)
            addr = socket.gethostbyname(socket.gethostname())
            reachable = addr != "127.0.0.1" and s.connect_ex((addr, port)) == 0
        assert not reachable
    finally:
        proc.terminate()
        proc.wait(timeout=30)
