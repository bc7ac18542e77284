"""Slide-viewer latency: Deep Zoom tiles over a scripted pan/zoom, and time to first rendered view.

Measures, on a slide with a WSI-pipeline result (times from ``page.goto``):

* per-tile latency (p50/p95/max) of the localhost tile server for slide tiles (JPEG) and
  relevance-overlay tiles (PNG), cold (each tile generated once, no cache hits), requested
  sequentially over one keep-alive connection while a 1280 x 800 viewport zooms from the whole
  slide down to full resolution and pans at three zoom levels;
* with ``--browser``: time from opening the app in headless Chromium until the viewer has drawn
  every visible slide and overlay tile (first session, and a second session on the warm app),
  plus screenshots.

Usage::

    python benchmarks/app_tiles.py --slides DIR --results DIR [--slide NAME] [--browser] [--shots DIR]
    python benchmarks/app_tiles.py --generate 8192 --workdir /tmp/appbench --browser   # sample + demo model + explain
"""
from __future__ import annotations

import argparse
import http.client
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lrp_captum.viewer.deepzoom import DeepZoomGrid  # noqa: E402
from lrp_captum.viewer.results import list_slides  # noqa: E402
from lrp_captum.viewer.tile_server import TileServer  # noqa: E402

VIEW_W, VIEW_H = 1280, 800


def visible_tiles(grid: DeepZoomGrid, cx: float, cy: float, l0_per_screen_px: float):
    """Deep Zoom level and tiles a viewer shows for a viewport centred on level-0 ``(cx, cy)``."""
    # the level whose pixels are closest to (but not coarser than) one screen pixel
    k = max(0, int(math.floor(math.log2(max(l0_per_screen_px, 1.0)))))
    level = grid.level_count - 1 - min(k, grid.level_count - 1)
    s = grid.level_scale(level)
    x0, x1 = cx - VIEW_W / 2 * l0_per_screen_px, cx + VIEW_W / 2 * l0_per_screen_px
    y0, y1 = cy - VIEW_H / 2 * l0_per_screen_px, cy + VIEW_H / 2 * l0_per_screen_px
    cols, rows = grid.level_tiles(level)
    ts = grid.tile_size * s
    c0, c1 = max(0, int(x0 // ts)), min(cols - 1, int(x1 // ts))
    r0, r1 = max(0, int(y0 // ts)), min(rows - 1, int(y1 // ts))
    return level, [(c, r) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]


def scripted_views(grid: DeepZoomGrid):
    """Home view, zoom x2 steps into the tissue centre, then pans at three zoom levels."""
    W, H = grid.width, grid.height
    home = max(W / VIEW_W, H / VIEW_H)
    cx, cy = W / 2, H / 2
    views = []
    z = home
    while z >= 0.5:
        views.append((cx, cy, z))
        z /= 2
    for z in (home / 4, home / 16, 1.0):
        for step in range(-3, 4):
            views.append((cx + step * VIEW_W * z * 0.5, cy, z))
    return views


def tile_latencies(server: TileServer, slide: str, grid: DeepZoomGrid):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    seen = set()
    out = {"slide": [], "relevance": []}
    for cx, cy, z in scripted_views(grid):
        level, tiles = visible_tiles(grid, cx, cy, z)
        for c, r in tiles:
            for layer in out:
                key = (layer, level, c, r)
                if key in seen:
                    continue
                seen.add(key)
                extra = "&mode=both&cmap=bwr" if layer == "relevance" else ""
                t0 = time.perf_counter()
                conn.request("GET", f"/tile?slide={slide}&layer={layer}&level={level}&col={c}&row={r}{extra}",
                             headers={"Host": f"127.0.0.1:{server.port}"})
                resp = conn.getresponse()
                body = resp.read()
                dt = time.perf_counter() - t0
                if resp.status != 200:
                    raise RuntimeError(f"{layer} tile {level}/{c}/{r}: HTTP {resp.status} {body[:200]!r}")
                out[layer].append(dt * 1000)
    conn.close()
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser_first_view(slides: Path, results: Path, slide: str, shots: Path | None):
    """Seconds until the viewer has drawn all visible tiles, for a first and a second session."""
    from playwright.sync_api import sync_playwright

    from lrp_captum.cli.app import streamlit_command
    from lrp_captum.viewer.access_token import new_token

    port = _free_port()
    token = new_token()
    env = dict(os.environ, LRP_CAPTUM_APP_SLIDES=str(slides), LRP_CAPTUM_APP_RESULTS=str(results),
               LRP_CAPTUM_APP_TOKEN=token)
    proc = subprocess.Popen(streamlit_command(port), env=env, cwd=str(REPO), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    times = []
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium",
                                  args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                        "--disable-background-networking", "--disable-component-update",
                                        "--disable-sync"])
            for session in range(2):
                page = b.new_page(viewport={"width": 1400, "height": 1100})
                t0 = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/?slide={slide}&token={token}", timeout=120_000)
                while not any("/viewer" in f.url for f in page.frames):
                    page.wait_for_timeout(20)
                frame = next(f for f in page.frames if "/viewer" in f.url)
                frame.wait_for_function("window.lrpViewer && window.lrpViewer.tilesLoaded >= 1", timeout=120_000,
                                        polling=20)
                t_first = time.perf_counter() - t0
                frame.wait_for_function(
                    "window.lrpViewer && window.lrpViewer.ready && window.lrpViewer.viewer.world.getItemCount() >= 2"
                    " && window.lrpViewer.viewer.world.getItemAt(0).getFullyLoaded()"
                    " && window.lrpViewer.viewer.world.getItemAt(1).getFullyLoaded()", timeout=120_000, polling=20)
                times.append((t_first, time.perf_counter() - t0))
                if shots is not None and session == 0:
                    _screenshots(page, frame, shots)
                page.close()
            b.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return times


def _screenshots(page, frame, shots: Path):
    shots.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(500)
    frame.locator("body").screenshot(path=str(shots / "app_viewer_overview.jpg"), quality=85)
    # zoom onto the most relevant tile through the gallery (hash navigation, no reload)
    page.locator("[class*='st-key-open_pos_'] button").first.click()
    page.get_by_text("Tile at level-0").wait_for(timeout=120_000)
    frame.wait_for_function("window.lrpViewer.viewer.world.getItemAt(1).getFullyLoaded()", timeout=60_000)
    page.wait_for_timeout(1500)
    frame.locator("#tissue").check()
    frame.locator("#grid").check()
    page.wait_for_timeout(1500)
    frame.locator("#stage").screenshot(path=str(shots / "app_viewer_zoomed.jpg"), quality=85)
    page.get_by_text("Tile at level-0").scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(shots / "app_page_full.jpg"), full_page=True, quality=85)


def generate(workdir: Path, size: int):
    """Sample slide + demo model + pipeline result in ``workdir`` (reused when present)."""
    from lrp_captum.wsi.pipeline import explain_slide
    from lrp_captum.demos.sample_slide import write_sample_slide
    from lrp_captum.demos.slide_model import demo_model_config

    slides, results = workdir / "slides", workdir / "results"
    slide = slides / f"sample_{size}.svs"
    if not slide.is_file():
        write_sample_slide(slide, size, kind="svs", seed=3)
    cfg = demo_model_config(workdir / "model")
    explain_slide(slide, cfg, results / slide.stem, quiet=False)
    return slides, results, slide.name


def pct(v, q):
    return float(np.percentile(v, q)) if len(v) else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides")
    ap.add_argument("--results")
    ap.add_argument("--slide", default=None, help="slide (relative to --slides); default: first explained")
    ap.add_argument("--generate", type=int, default=None, metavar="PX", help="make a sample slide of this size")
    ap.add_argument("--workdir", default="/tmp/lrp_app_bench")
    ap.add_argument("--browser", action="store_true", help="also time the first rendered view in Chromium")
    ap.add_argument("--shots", default=None, help="folder for screenshots (with --browser)")
    a = ap.parse_args(argv)
    if a.generate:
        slides, results, slide = generate(Path(a.workdir), a.generate)
    else:
        if not (a.slides and a.results):
            ap.error("give --slides and --results, or --generate PX")
        slides, results = Path(a.slides), Path(a.results)
        slide = a.slide or next(e.rel_path for e in list_slides(slides, results) if e.status == "explained")

    with TileServer(slides, results) as server:
        _, _, grid = server.service.open_slide(slide)
        t0 = time.perf_counter()
        server.service.open_result(slide)
        t_open = time.perf_counter() - t0
        lat = tile_latencies(server, slide, grid)

    print(f"slide {slide}: {grid.width} x {grid.height} px level 0, Deep Zoom levels {grid.level_count}, "
          f"tile {grid.tile_size}+{grid.overlap}; result opened in {t_open * 1000:.0f} ms")
    print(f"cpu cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print()
    print("| layer | tiles | p50 (ms) | p95 (ms) | max (ms) |")
    print("|---|---:|---:|---:|---:|")
    for layer, v in lat.items():
        print(f"| {layer} | {len(v)} | {pct(v, 50):.1f} | {pct(v, 95):.1f} | {max(v):.1f} |")
    if a.browser:
        first, second = browser_first_view(slides, results, slide, Path(a.shots) if a.shots else None)
        print()
        print("| session | first tile drawn (s) | every visible tile drawn (s) |")
        print("|---|---:|---:|")
        print(f"| first (cold app: imports, caches) | {first[0]:.2f} | {first[1]:.2f} |")
        print(f"| second (warm app) | {second[0]:.2f} | {second[1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
