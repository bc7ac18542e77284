#!/usr/bin/env bash
# Fetch OpenSeadragon from the npm registry into static/vendor/openseadragon (gitignored).
# The app serves it from there, so the viewer runs offline afterwards; nothing is taken from a CDN.
# Usage: scripts/fetch_openseadragon.sh [VERSION]   (default pinned below)
set -euo pipefail
VERSION="${1:-6.1.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/static/vendor/openseadragon"
if [[ -f "$DEST/openseadragon.min.js" && -f "$DEST/VERSION" && "$(cat "$DEST/VERSION")" == "$VERSION" ]]; then
  echo "OpenSeadragon $VERSION already in $DEST"
  exit 0
fi
command -v npm >/dev/null || { echo "npm not found: install Node.js/npm (apt-get install -y npm)" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
( cd "$WORK" && npm pack --silent "openseadragon@$VERSION" >/dev/null )
tar -xzf "$WORK"/openseadragon-*.tgz -C "$WORK"
BUILD="$WORK/package/build/openseadragon"
[[ -f "$BUILD/openseadragon.min.js" ]] || { echo "unexpected package layout: $BUILD/openseadragon.min.js missing" >&2; exit 1; }
rm -rf "$DEST"
mkdir -p "$DEST"
cp "$BUILD/openseadragon.min.js" "$DEST/"
cp -r "$BUILD/images" "$DEST/images"
cp "$WORK/package/LICENSE.txt" "$DEST/LICENSE.txt" 2>/dev/null || true
echo "$VERSION" > "$DEST/VERSION"
echo "OpenSeadragon $VERSION installed in $DEST"
