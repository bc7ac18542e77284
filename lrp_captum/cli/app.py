"""``lrp-captum app``: start the Streamlit app on the folders given, behind a per-launch token.

The command runs ``apps/app_server.py`` (the Streamlit script behind a Host check and a token
check), found next to the installed package or in a source checkout
(:mod:`lrp_captum.viewer.app_files`). Each page needs only its own folder: ``--slides`` with
``--results`` (slides), ``--results`` (cohort, MIL), ``--eeg-results``, ``--text-model``. It
draws a token (:mod:`lrp_captum.viewer.access_token`), waits until the app answers and prints the
URL to open, token included. Without ``--port`` it takes 8501 or the next free port after it.
On its first start it fetches the viewer's OpenSeadragon from the npm registry when missing.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from lrp_captum.cli.arguments import fail
from lrp_captum.viewer import openseadragon
from lrp_captum.viewer.access_token import NO_TOKEN_ENV, TOKEN_ENV, AppAccess, new_token, url_with_token
from lrp_captum.viewer.app_files import SERVED_APP, AppFilesMissing, app_dir

PROG = "lrp-captum app"
DEFAULT_PORT = 8501
PORTS_TRIED = 50  # as Jupyter: 8501, 8502, ... when the default port is taken
START_TIMEOUT_S = 120


def streamlit_command(port: int, headless: bool = True) -> list[str]:
    """The ``python -m streamlit run ...`` command line (bound to localhost, loopback Host names only)."""
    return [sys.executable, "-m", "streamlit", "run", str(app_dir() / SERVED_APP),
            "--server.port", str(port), "--server.address", "127.0.0.1",
            "--server.headless", "true" if headless else "false",
            # the WebSocket check of Streamlit itself, behind the page-wide check of app_server.py
            "--server.allowedHosts", "127.0.0.1", "--server.allowedHosts", "localhost",
            "--server.maxUploadSize", "1",  # the app takes no uploads; keep the limit minimal
            # Streamlit's own welcome lines give the URL without the token: this command prints it
            "--logger.hideWelcomeMessage", "true",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal", "--global.developmentMode", "false"]


def app_environment(args, access: AppAccess | None = None, tile_port: int | None = None) -> dict:
    """Environment for the app process (its configuration travels in ``LRP_CAPTUM_APP_*``).

    The token goes here, never on the command line: the environment of a process is readable
    by its owner only, its command line by every user of the machine.
    """
    env = dict(os.environ)
    env["LRP_CAPTUM_APP_TILE_PORT"] = str(args.tile_port if tile_port is None else tile_port)
    env["LRP_CAPTUM_APP_DEVICE"] = args.device
    folders = (("SLIDES", args.slides), ("RESULTS", args.results), ("MODEL", args.model),
               ("EEG_RESULTS", args.eeg_results), ("TEXT_MODEL", args.text_model))
    for name, value in folders:
        if value:
            env[f"LRP_CAPTUM_APP_{name}"] = str(Path(value).resolve())
        else:
            env.pop(f"LRP_CAPTUM_APP_{name}", None)
    env.pop(TOKEN_ENV, None)
    env.pop(NO_TOKEN_ENV, None)
    if access is not None and access.required:
        env[TOKEN_ENV] = access.token
    elif access is not None:
        env[NO_TOKEN_ENV] = "1"
    return env


def port_is_free(port: int) -> bool:
    """True when a server could listen on 127.0.0.1:``port`` now (a closed one's TIME_WAIT does not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def choose_port(requested: int | None, first: int = DEFAULT_PORT, avoid: int | None = None) -> int | None:
    """``requested`` when free (None when taken); without one, ``first`` or the next free port after it."""
    if requested is not None:
        return requested if port_is_free(requested) else None
    return next((p for p in range(first, first + PORTS_TRIED) if p != avoid and port_is_free(p)), None)


def _ensure_viewer() -> None:
    """Fetch OpenSeadragon on the first start; without it the app runs and says what is missing."""
    if openseadragon.is_available():
        return
    print(f"lrp-captum app: fetching OpenSeadragon {openseadragon.VERSION} from the npm registry into "
          f"{openseadragon.vendor_dir()} (once)", file=sys.stderr)
    try:
        openseadragon.fetch()
    except openseadragon.FetchError as exc:
        print(f"lrp-captum app: {exc}. The app starts, but the slide viewer shows this message.", file=sys.stderr)


def _check_folders(args) -> str | None:
    """What is wrong with the folders given, in one line, or None."""
    if not any((args.slides, args.results, args.eeg_results, args.text_model)):
        return ("give the folder of at least one page: --slides DIR --results DIR (slides), --results DIR "
                "(cohort, MIL), --eeg-results DIR or --text-model DIR")
    if args.slides and not args.results:
        return "--slides needs --results (the folder of the slides' result folders)"
    if args.slides and not Path(args.slides).is_dir():
        return f"slides folder {args.slides} does not exist"
    for flag, value in (("--results", args.results), ("--eeg-results", args.eeg_results),
                        ("--text-model", args.text_model)):
        if value and Path(value).exists() and not Path(value).is_dir():
            return f"{flag} {value} is a file; give a folder"
    if args.model and not Path(args.model).is_file():
        return f"model config {args.model} does not exist"
    return None


def _wait_until_serving(url: str, access: AppAccess, child: subprocess.Popen) -> bool:
    """True once the app answers its health check (with the token); False if it exits first."""
    request = urllib.request.Request(url + "/_stcore/health")
    if access.required:
        request.add_header("Cookie", f"{access.cookie_name}={access.token}")
    deadline = time.monotonic() + START_TIMEOUT_S
    while child.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.3)
    return False


def run_app(args) -> int:
    problem = _check_folders(args)
    if problem:
        return fail(PROG, problem)
    try:
        folder = app_dir()
    except AppFilesMissing as exc:
        return fail(PROG, exc)
    port = choose_port(args.port)
    if port is None:
        taken = (f"port {args.port} is in use (another app?); choose another with --port, or leave --port out "
                 "to take the next free one") if args.port else f"no free port in {DEFAULT_PORT}-{DEFAULT_PORT + PORTS_TRIED - 1}"
        return fail(PROG, taken)
    if args.port is None and port != DEFAULT_PORT:
        print(f"lrp-captum app: port {DEFAULT_PORT} is in use (another app?); using port {port}", flush=True)
    for value in (args.results,):
        if value:
            Path(value).mkdir(parents=True, exist_ok=True)
    if args.slides:
        _ensure_viewer()
    access = AppAccess(None if args.no_token else new_token())
    # the slide viewer's tile server gets a known port up front, so it can be forwarded too
    tile_port = (args.tile_port or choose_port(None, port + 1, avoid=port) or 0) if args.slides else 0
    base = f"http://127.0.0.1:{port}"
    child = subprocess.Popen(streamlit_command(port), env=app_environment(args, access, tile_port), cwd=str(folder))

    def _stop(signum, frame):  # a terminated CLI must not leave the server running
        child.terminate()

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        if _wait_until_serving(base, access, child):
            note = ("  (no token: anyone on this machine can open it)" if not access.required
                    else "  (the token in the URL is this launch's password: do not share it)")
            forward = f"-L {port}:127.0.0.1:{port}" + (f" -L {tile_port}:127.0.0.1:{tile_port}" if tile_port else "")
            print(f"lrp-captum app: open {url_with_token(base, access)}{note}\n"
                  f"lrp-captum app: Ctrl-C to stop. On a machine without a browser, forward the port"
                  f"{'s' if tile_port else ''} from yours: ssh {forward} THIS-HOST", flush=True)
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()
        child.wait(timeout=30)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if child.poll() is None:
            child.terminate()
            child.wait(timeout=30)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is out of range 1-65535")
    return value


def _tile_port(text: str) -> int:
    return 0 if text.strip() == "0" else _port(text)


def register(subparsers) -> None:
    p = subparsers.add_parser("app", help="start the Streamlit app (slides, cohort, MIL, EEG, text)",
                              description="Start the Streamlit app on http://127.0.0.1:PORT behind a per-launch "
                                          "token; each page needs only its own folder.")
    p.add_argument("--slides", default=None, help="folder with slides (OpenSlide formats); needs --results")
    p.add_argument("--results", default=None, help="folder with result folders (one per slide); also the "
                                                   "cohort and MIL pages' folder")
    p.add_argument("--model", default=None, help="model config JSON to explain slides/tiles from the page")
    p.add_argument("--port", type=_port, default=None,
                   help=f"Streamlit port (default {DEFAULT_PORT}, or the next free one when it is taken)")
    p.add_argument("--tile-port", type=_tile_port, default=0, help="port of the localhost tile server (0: any free)")
    from lrp_captum.cli.arguments import add_option  # --device is spelled and checked alike in every command

    add_option(p, "--device", help_more="for explanations started from the app")
    p.add_argument("--eeg-results", default=None, help="folder of EEG results for the EEG page")
    p.add_argument("--text-model", default=None, help="text model folder (or a folder of them) for the text page")
    p.add_argument("--no-token", action="store_true",
                   help="run without the access token: anyone on this machine can open the app (see docs/app.md)")
    p.set_defaults(func=run_app)
