#!/usr/bin/env bash
# Install the Debian packages that `make demo` / `make test` need when their command is missing.
#   scripts/install_system_packages.sh [--require] COMMAND:PACKAGE...
# e.g. `chromium:chromium npm:npm`. As root with apt-get, missing packages are installed
# (apt-get update, then apt-get install -y). Otherwise the script names the packages to install
# and exits 0, or 1 with --require (the step cannot go on without them).
set -euo pipefail
require=0
if [[ "${1:-}" == "--require" ]]; then require=1; shift; fi

missing=()
for pair in "$@"; do
  cmd="${pair%%:*}"
  pkg="${pair#*:}"
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  exit 0
fi

echo "missing Debian package(s): ${missing[*]}. Install them with" >&2
echo "    sudo apt-get install -y ${missing[*]}" >&2
echo "(chromium runs the app's browser tests; npm fetches the viewer's OpenSeadragon from the npm registry)." >&2
exit "$require"
