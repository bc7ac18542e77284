"""``lrp-captum app``: start the Streamlit viewer on the slides and results folders given.

The command runs ``apps/app_server.py`` (the Streamlit script behind a Host-header check), found
next to the installed package or in a source checkout (:mod:`lrp_captum.viewer.app_files`).
On its first start it fetches the viewer's OpenSeadragon from the npm registry when missing.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from lrp_captum.viewer import openseadragon
from lrp_captum.viewer.app_files import SERVED_APP, AppFilesMissing, app_dir


def streamlit_command(port: int, headless: bool = True) -> list[str]:
    """The ``python -m streamlit run ...`` command line (bound to localhost, loopback Host names only)."""
    return [sys.executable, "-m", "streamlit", "run", str(app_dir() / SERVED_APP),
            "--server.port", str(port), "--server.address", "127.0.0.1",
            "--server.headless", "true" if headless else "false",
            # the WebSocket check of Streamlit itself, behind the page-wide check of app_server.py
            "--server.allowedHosts", "127.0.0.1", "--server.allowedHosts", "localhost",
            "--server.maxUploadSize", "1",  # the app takes no uploads; keep the limit minimal
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal", "--global.developmentMode", "false"]


def app_environment(args) -> dict:
    """Environment for the app process (its configuration travels in ``LRP_CAPTUM_APP_*``)."""
    env = dict(os.environ)
    env["LRP_CAPTUM_APP_SLIDES"] = str(Path(args.slides).resolve())
    env["LRP_CAPTUM_APP_RESULTS"] = str(Path(args.results).resolve())
    env["LRP_CAPTUM_APP_TILE_PORT"] = str(args.tile_port)
    env["LRP_CAPTUM_APP_DEVICE"] = args.device
    for name, value in (("MODEL", args.model), ("EEG_RESULTS", args.eeg_results), ("TEXT_MODEL", args.text_model)):
        if value:
            env[f"LRP_CAPTUM_APP_{name}"] = str(Path(value).resolve())
        else:
            env.pop(f"LRP_CAPTUM_APP_{name}", None)
    return env


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


def run_app(args) -> int:
    if not Path(args.slides).is_dir():
        print(f"lrp-captum app: slides folder {args.slides} does not exist", file=sys.stderr)
        return 2
    if args.model and not Path(args.model).is_file():
        print(f"lrp-captum app: model config {args.model} does not exist", file=sys.stderr)
        return 2
    try:
        folder = app_dir()
    except AppFilesMissing as exc:
        print(f"lrp-captum app: {exc}", file=sys.stderr)
        return 2
    Path(args.results).mkdir(parents=True, exist_ok=True)
    _ensure_viewer()
    cmd = streamlit_command(args.port)
    print(f"lrp-captum app: http://127.0.0.1:{args.port}  (Ctrl-C to stop)")
    child = subprocess.Popen(cmd, env=app_environment(args), cwd=str(folder))

    def _stop(signum, frame):  # a terminated CLI must not leave the server running
        child.terminate()

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
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


def register(subparsers) -> None:
    p = subparsers.add_parser("app", help="start the Streamlit viewer (slides, EEG, text)",
                              description="Start the Streamlit app on http://127.0.0.1:PORT.")
    p.add_argument("--slides", required=True, help="folder with slides (OpenSlide formats)")
    p.add_argument("--results", required=True, help="folder with result folders (one per slide)")
    p.add_argument("--model", default=None, help="model config JSON to explain slides/tiles from the page")
    p.add_argument("--port", type=int, default=8501, help="Streamlit port (default 8501)")
    p.add_argument("--tile-port", type=int, default=0, help="port of the localhost tile server (0: any free)")
    from lrp_captum.cli.arguments import add_option  # --device is spelled and checked alike in every command

    add_option(p, "--device", help_more="for explanations started from the app")
    p.add_argument("--eeg-results", default=None, help="folder of EEG results for the EEG page")
    p.add_argument("--text-model", default=None, help="text model folder for the text page")
    p.set_defaults(func=run_app)
