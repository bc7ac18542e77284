"""OpenSeadragon, the deep-zoom viewer's JavaScript: where it is kept and how it is fetched.

It is never committed nor shipped in the wheel: it comes from the npm registry (``npm pack``,
which checks the tarball against the registry's integrity hash) into

- ``static/vendor/openseadragon/`` in a source checkout (gitignored; ``make install`` or
  ``scripts/fetch_openseadragon.sh`` put it there), or
- ``~/.cache/lrp-captum/vendor/openseadragon/`` (``$XDG_CACHE_HOME`` respected) for an installed
  package, fetched by ``lrp-captum app`` on its first start.

OpenSeadragon is BSD-3-Clause licensed; its ``LICENSE.txt`` is kept next to the script.

Command line: ``python -m lrp_captum.viewer.openseadragon [VERSION] [--dest DIR]``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from lrp_captum.viewer.app_files import CHECKOUT_APP_DIR, app_dir

VERSION = "6.1.1"
SCRIPT = Path("openseadragon") / "openseadragon.min.js"


class FetchError(RuntimeError):
    """OpenSeadragon could not be fetched; the message says what to install or check."""


def vendor_dir() -> Path:
    """Folder served at ``/vendor/``: ``static/vendor`` in a checkout, else the user's cache."""
    try:
        in_checkout = app_dir() == CHECKOUT_APP_DIR
    except FileNotFoundError:
        in_checkout = False
    if in_checkout:
        return CHECKOUT_APP_DIR.parent / "static" / "vendor"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "lrp-captum" / "vendor"


def is_available(folder: str | Path | None = None) -> bool:
    """True when ``openseadragon/openseadragon.min.js`` is under ``folder`` (default :func:`vendor_dir`)."""
    return (Path(folder or vendor_dir()) / SCRIPT).is_file()


def fetch(folder: str | Path | None = None, version: str = VERSION) -> Path:
    """Fetch OpenSeadragon ``version`` from the npm registry into ``folder/openseadragon``.

    Nothing is replaced unless the new copy is complete; a copy of the same version is kept.

    Returns
    -------
    Path
        The ``openseadragon`` folder.

    Raises
    ------
    FetchError
        When npm is missing, the registry cannot be reached, or the package looks different.
    """
    dest = Path(folder or vendor_dir()) / "openseadragon"
    if (dest / "openseadragon.min.js").is_file() and _read(dest / "VERSION") == version:
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm is not installed, so OpenSeadragon cannot be fetched from the npm registry: "
                         "install Node.js/npm (Debian: apt-get install -y npm), then start again")
    if not hasattr(tarfile, "data_filter"):
        raise FetchError("this Python cannot unpack archives safely (tarfile filters need 3.10.12+/3.11.4+); "
                         "upgrade Python or run scripts/fetch_openseadragon.sh from a checkout")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".openseadragon-") as work:
        done = subprocess.run([npm, "pack", "--silent", f"openseadragon@{version}"], cwd=work,
                              capture_output=True, text=True)
        packs = list(Path(work).glob("openseadragon-*.tgz"))
        if done.returncode != 0 or not packs:
            raise FetchError(f"npm pack openseadragon@{version} failed: {(done.stderr or '').strip()[-300:]}")
        with tarfile.open(packs[0]) as tar:
            tar.extractall(work, filter="data")  # refuses absolute paths, '..' and links out
        build = Path(work) / "package" / "build" / "openseadragon"
        if not (build / "openseadragon.min.js").is_file():
            raise FetchError(f"openseadragon@{version} from npm has no build/openseadragon/openseadragon.min.js")
        stage = Path(work) / "stage"
        stage.mkdir()
        shutil.copy2(build / "openseadragon.min.js", stage)
        shutil.copytree(build / "images", stage / "images")
        licence = Path(work) / "package" / "LICENSE.txt"
        if licence.is_file():
            shutil.copy2(licence, stage / "LICENSE.txt")
        (stage / "VERSION").write_text(version + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        stage.rename(dest)
    return dest


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lrp_captum.viewer.openseadragon",
                                     description="Fetch OpenSeadragon from the npm registry for the app's viewer.")
    parser.add_argument("version", nargs="?", default=VERSION, help=f"OpenSeadragon version (default {VERSION})")
    parser.add_argument("--dest", default=None, help=f"vendor folder (default {vendor_dir()})")
    args = parser.parse_args(argv)
    try:
        path = fetch(args.dest, args.version)
    except FetchError as exc:
        print(f"fetch OpenSeadragon: {exc}", file=sys.stderr)
        return 2
    print(f"OpenSeadragon {args.version} in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
