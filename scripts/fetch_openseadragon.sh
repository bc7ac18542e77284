#!/usr/bin/env bash
# Fetch OpenSeadragon from the npm registry into static/vendor/openseadragon (gitignored).
# The app serves it from there, so the viewer runs offline afterwards; nothing is taken from a CDN.
# The work is done by lrp_captum.viewer.openseadragon (the same code `lrp-captum app` uses on an
# installed package); this script runs it with the checkout's .venv when there is one.
# Usage: scripts/fetch_openseadragon.sh [VERSION]   (default pinned in lrp_captum/viewer/openseadragon.py)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
cd "$ROOT"
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m lrp_captum.viewer.openseadragon "$@" --dest "$ROOT/static/vendor"
