"""Real files for the app tests (a small pyramidal TIFF slide and a result folder next to it),
and the few helpers every app test needs: a free port, a raw HTTP GET with any Host header,
markdown as the reader sees it, Chromium, and the viewer frame of a page.

Helpers here are imported by the other tests/test_app_*.py files; the tests in this file check
that the fixtures are what the app tests assume (real OpenSlide, real zarr).
"""
from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import numpy as np

FIXTURE_MPP = 0.5
FIXTURE_TILE = 256
CLASSES = ["negative", "positive"]


def _ihc_canvas(width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8: the scikit-image IHC field tiled over tissue, glass elsewhere."""
    from skimage.data import immunohistochemistry

    ihc = immunohistochemistry()[:, :, :3]
    reps = (-(-height // ihc.shape[0]), -(-width // ihc.shape[1]), 1)
    img = np.tile(ihc, reps)[:height, :width].copy()
    yy, xx = np.mgrid[0:height, 0:width]
    tissue = ((xx - width * 0.45) / (width * 0.38)) ** 2 + ((yy - height * 0.5) / (height * 0.4)) ** 2 < 1
    img[~tissue] = (243, 242, 240)
    return img


def write_fixture_slide(path: Path, width: int = 3000, height: int = 2000, mpp: float = FIXTURE_MPP,
                        compression: str | None = "jpeg", inverted: bool = False) -> Path:
    """Generic tiled TIFF pyramid (levels 1 and 4) that OpenSlide opens with mpp.

    ``compression=None`` makes the file size depend only on the dimensions, so an ``inverted``
    slide (colours flipped) is another slide of exactly the same size.
    """
    import tifffile
    from PIL import Image

    img = _ihc_canvas(width, height)
    if inverted:
        img = 255 - img
    res_cm = 1e4 / mpp
    with tifffile.TiffWriter(path) as tif:
        for i, d in enumerate((1, 4)):
            level = img if d == 1 else np.asarray(Image.fromarray(img).resize((width // d, height // d), Image.BOX))
            tif.write(level, photometric="rgb", compression=compression, tile=(256, 256),
                      resolution=(res_cm / d, res_cm / d), resolutionunit="CENTIMETER",
                      subfiletype=1 if i else 0, metadata=None)
    return path


def write_fixture_result(result_dir: Path, width: int = 3000, height: int = 2000, downsample: int = 16,
                         group: bool = True, with_probability: bool = True, slide: Path | None = None) -> Path:
    """A result folder in the WSI pipeline's layout (``lrp_captum.wsi.pipeline.explain_slide``).

    Relevance is +1 on the left half of the tissue tiles and -1 on the right half (level 0
    split at ``width / 2``), so alignment and sign can be checked from screenshots and tiles.
    With ``slide``, the manifest records that file as the pipeline does (size, time, dimensions).
    """
    import pandas as pd
    import zarr

    result_dir.mkdir(parents=True, exist_ok=True)
    hd, wd = -(-height // downsample), -(-width // downsample)
    rel = np.full((hd, wd), np.nan, np.float32)
    prob = np.full((hd, wd), np.nan, np.float32)
    img = _ihc_canvas(width, height)
    rows = []
    for y0 in range(0, height - FIXTURE_TILE + 1, FIXTURE_TILE):
        for x0 in range(0, width - FIXTURE_TILE + 1, FIXTURE_TILE):
            patch = img[y0:y0 + FIXTURE_TILE, x0:x0 + FIXTURE_TILE]
            if (patch.reshape(-1, 3) == (243, 242, 240)).all(axis=1).mean() > 0.5:
                continue
            sign = 1.0 if x0 + FIXTURE_TILE / 2 < width / 2 else -1.0
            p = 0.9 if sign > 0 else 0.2
            sl = (slice(y0 // downsample, (y0 + FIXTURE_TILE) // downsample),
                  slice(x0 // downsample, (x0 + FIXTURE_TILE) // downsample))
            rel[sl] = sign * (0.5 + 0.5 * (x0 % 512 == 0))
            prob[sl] = p
            tile_rel = rel[sl]
            pred = int(p > 0.5)
            rows.append(dict(x0=x0, y0=y0, w0=FIXTURE_TILE, h0=FIXTURE_TILE, level=0,
                             prediction=CLASSES[pred], prediction_index=pred, probability=max(p, 1 - p),
                             p_negative=1 - p, p_positive=p, target=CLASSES[pred],
                             relevance_sum=float(tile_rel.sum()),
                             relevance_pos=float(np.clip(tile_rel, 0, None).sum()),
                             relevance_neg=float(np.clip(tile_rel, None, 0).sum())))
    if group:
        root = zarr.open_group(str(result_dir / "relevance.zarr"), mode="w")
        root.create_array("relevance", data=rel, chunks=(64, 64))
        if with_probability:
            root.create_array("probability", data=np.stack([1 - prob, prob]), chunks=(1, 64, 64))
    else:
        zarr.save_array(str(result_dir / "relevance.zarr"), rel)
    pd.DataFrame(rows).to_csv(result_dir / "tiles.csv", index=False)
    manifest = {"output_downsample": downsample, "vmax": 1.0,
                "parameters": {"composite": "epsilon_plus", "target": "predicted", "output_mode": "logit"},
                "model": {"classes": CLASSES, "tile_size": FIXTURE_TILE, "mpp": FIXTURE_MPP}}
    if slide is not None:
        st = Path(slide).stat()
        manifest["slide"] = {"path": str(Path(slide).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
                             "dimensions": [width, height], "mpp": FIXTURE_MPP}
    (result_dir / "manifest.json").write_text(json.dumps(manifest))
    return result_dir


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(cmd: list[str], port: int, env: dict, log_path: Path, cwd: str | Path | None = None, timeout: float = 60):
    """Run a server command (Streamlit, ``lrp-captum app``) until the block ends; wait until ``port`` accepts.

    Its output goes to ``log_path``; it is terminated (and waited for) on leaving the block.
    """
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=str(cwd) if cwd else None, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert proc.poll() is None, f"{cmd[:4]} exited early: {Path(log_path).read_text()[-2000:]}"
                    assert time.monotonic() < deadline, f"{cmd[:4]} did not listen on {port} within {timeout} s"
                    time.sleep(0.2)
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


def token_cookie(token: str) -> dict:
    """The ``Cookie`` header a browser sends to an app started with ``token``."""
    from lrp_captum.viewer.access_token import AppAccess

    return {"Cookie": f"{AppAccess(token).cookie_name}={token}"}


def printed_token(log_path: Path, timeout: float = 120) -> str:
    """The token in the URL that ``lrp-captum app`` printed into ``log_path`` (waits for the line)."""
    import re

    deadline = time.monotonic() + timeout
    while True:
        found = re.search(r"open http://127\.0\.0\.1:\d+/\?token=([\w-]+)", Path(log_path).read_text())
        if found:
            return found.group(1)
        assert time.monotonic() < deadline, "lrp-captum app printed no URL: " + Path(log_path).read_text()[-2000:]
        time.sleep(0.2)


def http_get(port: int, path: str, host: str | None = None,
             headers: dict | None = None) -> tuple[int, str | None, bytes]:
    """``(status, Content-Type, body)`` of a GET to 127.0.0.1 with ``Host: host`` (default: the real one)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read() if resp.status != 101 else b""  # a WebSocket upgrade has no body to wait for
    conn.close()
    return resp.status, resp.getheader("Content-Type"), body


def viewer_frame(page, url: str, slide: str, token: str | None = None):
    """Open the app at ``url`` on ``slide`` in a Playwright ``page``; the viewer's frame once it is ready.

    With ``token``, the URL carries it as the one ``lrp-captum app`` prints does (the app answers
    with its cookie and a redirect to the same URL without it).
    """
    page.goto(url + "/?slide=" + quote(slide, safe="") + (f"&token={token}" if token else ""), timeout=60_000)
    page.wait_for_selector("iframe", timeout=60_000)
    deadline = time.monotonic() + 30
    while not any("/viewer" in f.url for f in page.frames):
        assert time.monotonic() < deadline, "viewer iframe did not load"
        page.wait_for_timeout(100)
    frame = next(f for f in page.frames if "/viewer" in f.url)
    frame.wait_for_function("window.lrpViewer && window.lrpViewer.ready", timeout=60_000)
    return frame


def visible(markdown_text: str) -> str:
    """The text a reader sees when Streamlit renders ``markdown_text`` (escapes resolved, and the
    invisible word joiners of :func:`~lrp_captum.viewer.escaping.streamlit_literal` left out)."""
    import html

    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark").renderInline(markdown_text.replace("\u2060", ""))
    return html.unescape(rendered.replace("<strong>", "").replace("</strong>", "").replace("<code>", "")
                         .replace("</code>", "").replace("<em>", "").replace("</em>", ""))


def make_fixture_dirs(root: Path, n_explained: int = 1, n_plain: int = 1) -> tuple[Path, Path]:
    """``(slides_dir, results_dir)`` with explained slides ``case_<i>.tif`` and unexplained ``new_<i>.tif``."""
    slides, results = root / "slides", root / "results"
    slides.mkdir(parents=True)
    results.mkdir(parents=True)
    for i in range(n_explained):
        slide = write_fixture_slide(slides / f"case_{i}.tif")
        write_fixture_result(results / f"case_{i}", slide=slide)
    for i in range(n_plain):
        write_fixture_slide(slides / f"new_{i}.tif", 1024, 768)
    return slides, results


def test_fixture_slide_opens_in_openslide_with_mpp(tmp_path):
    import openslide

    path = write_fixture_slide(tmp_path / "s.tif")
    with openslide.OpenSlide(str(path)) as slide:
        assert slide.dimensions == (3000, 2000)
        assert slide.level_count == 2
        assert abs(float(slide.properties["openslide.mpp-x"]) - FIXTURE_MPP) < 1e-6


def test_fixture_result_zarr_holds_relevance_and_probability(tmp_path):
    import zarr

    rdir = write_fixture_result(tmp_path / "r")
    root = zarr.open(str(rdir / "relevance.zarr"), mode="r")
    assert root["relevance"].shape == (125, 188)
    assert np.nanmax(root["relevance"][...]) == 1.0 and np.nanmin(root["relevance"][...]) == -1.0
