"""``pip install`` the built wheel, then ``lrp-captum app`` outside any source checkout.

The wheel is built from a copy of the sources, installed into a new virtual environment in a
temporary folder (its dependencies come from this environment's site-packages through a ``.pth``
line, so torch is not installed again), and the app is started from an unrelated folder with no
PYTHONPATH. A real Chromium opens the page, whose viewer then loads OpenSeadragon and tiles.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import pytest

from test_app_fixtures import (CHROMIUM, CHROMIUM_ARGS, free_port, make_fixture_dirs, printed_token, token_cookie,
                               viewer_frame)

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[1]
VENDOR = REPO / "static" / "vendor" / "openseadragon"
SOURCES = ("lrp_captum", "apps", "pyproject.toml", "setup.py", "README.md")


def _run(cmd, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(venv, env, home)``: a new venv with only the wheel installed into it, and a clean environment."""
    if not (VENDOR / "openseadragon.min.js").is_file():
        pytest.fail("OpenSeadragon is missing: run scripts/fetch_openseadragon.sh (make install does)")
    root = tmp_path_factory.mktemp("install")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                          if (REPO / name).is_dir() else {}))
    # no build isolation: the build backend comes from this environment, not from the network
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
          "-w", str(root / "dist")])
    wheel = next((root / "dist").glob("lrp_captum-*.whl"))
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    site = Path(_run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    (site / "shared_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
          "--no-index", str(wheel)])
    home = root / "home"
    # OpenSeadragon where `lrp-captum app` keeps it for an installed package (its first start
    # fetches it from npm; the tests do not use the network)
    shutil.copytree(VENDOR, home / ".cache" / "lrp-captum" / "vendor" / "openseadragon")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LRP_CAPTUM_", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    return venv, env, root


def test_installed_package_runs_from_the_venv_not_from_the_checkout(installed):
    venv, env, root = installed
    out = _run([str(venv / "bin" / "python"), "-c", "import sys, lrp_captum; from lrp_captum.viewer.app_files import "
                "app_dir; print(lrp_captum.__file__); print(app_dir()); print(*sys.path, sep='\\n')"],
               env=env, cwd=str(root))
    module, app, *path = out.splitlines()
    assert module.startswith(str(venv)) and app.startswith(str(venv))
    # the only lrp_captum on sys.path is the installed one: no checkout, no PYTHONPATH
    holders = [p for p in path if p and (Path(p) / "lrp_captum" / "__init__.py").is_file()]
    assert len(holders) == 1 and Path(holders[0]).is_relative_to(venv)
    assert str(REPO) not in path and str(REPO / "apps") not in path


def test_installed_app_serves_its_page_viewer_and_tiles(installed):
    from playwright.sync_api import sync_playwright

    venv, env, root = installed
    slides, results = make_fixture_dirs(root / "data", n_plain=0)
    port, tile_port = free_port(), free_port()
    cwd = root / "elsewhere"
    cwd.mkdir()
    log = open(root / "app.log", "w")
    proc = subprocess.Popen([str(venv / "bin" / "lrp-captum"), "app", "--slides", str(slides), "--results",
                             str(results), "--port", str(port), "--tile-port", str(tile_port)],
                            cwd=str(cwd), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        token = printed_token(root / "app.log")  # printed once the app answers
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            frame = viewer_frame(browser.new_page(), f"http://127.0.0.1:{port}", "case_0.tif", token)
            frame.wait_for_function("window.lrpViewer.tilesLoaded > 0", timeout=60_000)
            failed = frame.evaluate("window.lrpViewer.tilesFailed")
            browser.close()
        assert failed == 0
        base = f"http://127.0.0.1:{tile_port}"
        login = token_cookie(token)
        with urllib.request.urlopen(urllib.request.Request(base + "/tile?slide=case_0.tif&layer=slide&level=12&col=0&row=0",
                                                           headers=login)) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg" and r.read()[:3] == b"\xff\xd8\xff"
        with urllib.request.urlopen(urllib.request.Request(base + "/assets/viewer.js", headers=login)) as r:
            assert r.read() == (venv_app(venv) / "viewer" / "viewer.js").read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def venv_app(venv: Path) -> Path:
    return next(venv.glob("lib/python*/site-packages/lrp_captum/_app"))
