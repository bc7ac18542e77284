"""Peak memory of tissue detection and of a zoomed-out Deep Zoom tile on a slide without a pyramid.

Writes a single-level tiled TIFF (mostly glass, with tissue-coloured blobs) strip by strip, so
the generator itself stays bounded, then measures each step in a fresh process (peak resident
set size (``VmHWM``, reset before the step), the process's size before the step, and the step's
time):

    python benchmarks/single_level_memory.py --size 20000 --slide /tmp/flat20k.tif

(a) ``detect_tissue`` on the slide (slide_mpp 0.25, mask at 8 µm/px);
(b) the slide layer's fully zoomed-out Deep Zoom tile (the one tile of the coarsest level
    that holds the whole slide) from the app's tile server.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TILE = 256  # TIFF tile side; the generator holds one row of tiles at a time


def _strip(width: int, y0: int, rows: int, seed: int) -> np.ndarray:
    """RGB uint8 ``(rows, width, 3)``: glass with pink/purple elliptic blobs (a fixed layout)."""
    rng = np.random.default_rng(seed)
    out = np.full((rows, width, 3), 242, np.uint8)
    n = 24
    cx, cy = rng.uniform(0.1, 0.9, n), rng.uniform(0.1, 0.9, n)
    rx, ry = rng.uniform(0.03, 0.09, n), rng.uniform(0.03, 0.09, n)
    colour = np.array([[205, 120, 170], [150, 90, 160], [190, 110, 150]], np.uint8)
    xs = (np.arange(width) + 0.5) / width
    for i in range(n):
        ys = (y0 + np.arange(rows) + 0.5) / width
        inside = ((xs[None, :] - cx[i]) / rx[i]) ** 2 + ((ys[:, None] - cy[i]) / ry[i]) ** 2 < 1
        out[inside] = colour[i % 3]
    return out


def write_single_level_slide(path: Path, size: int, mpp: float = 0.25, seed: int = 0) -> Path:
    """A ``size`` x ``size`` single-level tiled TIFF (JPEG tiles of 256 px) at ``mpp`` µm/px."""
    import tifffile

    def tiles():  # tifffile takes an iterator of tiles, row by row, each padded to the full tile
        padded = -(-size // TILE) * TILE
        for y0 in range(0, size, TILE):
            strip = np.full((TILE, padded, 3), 242, np.uint8)
            strip[:min(TILE, size - y0), :size] = _strip(size, y0, min(TILE, size - y0), seed)
            for x0 in range(0, padded, TILE):
                yield strip[:, x0:x0 + TILE]

    res = 1e4 / mpp  # pixels per cm
    tifffile.imwrite(path, tiles(), shape=(size, size, 3), dtype=np.uint8, tile=(TILE, TILE),
                     photometric="rgb", compression="jpeg", resolution=(res, res), resolutionunit="CENTIMETER")
    return path


_STEPS = {
    "tissue": """
from lrp_captum.wsi.reader import open_slide
from lrp_captum.wsi.tissue import detect_tissue
slide = open_slide(PATH)
start()
mask = detect_tissue(slide, slide_mpp=0.25)
stop(mask.mask.shape)
""",
    "zoomed_out_tile": """
from pathlib import Path
from lrp_captum.viewer.tile_server import TileService
service = TileService(Path(PATH).parent, Path(PATH).parent / "no_results")
_, _, grid = service.open_slide(Path(PATH).name)
level = max(l for l in range(grid.level_count) if grid.level_tiles(l) == (1, 1))
start()
body, _ = service.tile(Path(PATH).name, "slide", level, 0, 0)
stop((level, len(body)))
""",
}

_HARNESS = """
import json, time
PATH = {path!r}
def status_mib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024
def start():
    global T0, BASE
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak resident size (VmHWM) starts again from the current one
    BASE, T0 = status_mib("VmRSS"), time.perf_counter()
def stop(what):
    print(json.dumps(dict(peak_mib=status_mib("VmHWM"), before_mib=BASE, seconds=time.perf_counter() - T0,
                          what=str(what))))
"""


def measure(step: str, path: Path) -> dict:
    """Peak RSS of one step in a fresh interpreter (so earlier steps do not raise the peak)."""
    code = _HARNESS.format(path=str(path)) + _STEPS[step]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=20000)
    p.add_argument("--slide", type=Path, required=True, help="where the generated slide goes (reused if present)")
    p.add_argument("--steps", nargs="+", default=list(_STEPS), choices=list(_STEPS))
    args = p.parse_args(argv)
    if not args.slide.is_file():
        t = time.perf_counter()
        write_single_level_slide(args.slide, args.size)
        print(f"wrote {args.slide} ({args.slide.stat().st_size / 2**20:.0f} MiB, {time.perf_counter() - t:.0f} s, "
              f"generator peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")
    print("| step | peak RSS (MiB) | before the step (MiB) | growth (MiB) | seconds |")
    print("|---|---:|---:|---:|---:|")
    for step in args.steps:
        r = measure(step, args.slide)
        print(f"| {step} | {r['peak_mib']:.0f} | {r['before_mib']:.0f} | {r['peak_mib'] - r['before_mib']:.0f} "
              f"| {r['seconds']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
