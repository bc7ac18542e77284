"""A localhost-only HTTP server for Deep Zoom tiles, the viewer page and its script.

Why a separate server: Streamlit re-renders a component iframe on every widget change, which
resets an image viewer's zoom. The viewer page is therefore served from here with a URL that
depends only on the slide, and its display controls (opacity, sign, map, grid) run in the page's
own JavaScript, so Streamlit reruns never touch the view.

Every request is stateless (all display options are in the URL), so any number of browser
sessions can share one server. Only slides under ``slides_dir``, results under ``results_dir`` and
files under the two asset folders are served; paths are checked with
:func:`lrp_captum.viewer.paths.resolve_under`, and results whose files lead outside
``results_dir`` are refused (403). Cached tiles are keyed by the slide file's identity, so a
replaced slide is never served from the cache, and a result made from another slide file is not
overlaid (409). The server binds to 127.0.0.1 and rejects requests whose Host header is not a
loopback name (DNS-rebinding guard), and, started by the app, every request (tiles, pages,
assets, health) without the launch's token (:mod:`lrp_captum.viewer.access_token`; the browser
sends the app's cookie, since cookies are per host name, not per port). Messages name files
relative to the configured folders.
"""
from __future__ import annotations

import json
import math
import mimetypes
import threading
import time
from collections import OrderedDict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np

from lrp_captum.viewer import openseadragon
from lrp_captum.viewer.access_token import AppAccess
from lrp_captum.viewer.app_files import viewer_assets_dir
from lrp_captum.viewer.colormaps import (DIVERGING_CMAPS, RELEVANCE_MODES, SEQUENTIAL_CMAPS, SLIDE_CMAP,
                                         legend_stops, relevance_to_rgba)
from lrp_captum.viewer.deepzoom import (OVERLAP, TILE_SIZE, DeepZoomGrid, OverlayTiles, SlideOverview, encode_png,
                                        sample_map, slide_tile)
from lrp_captum.viewer.escaping import json_for_script
from lrp_captum.viewer.loopback import is_loopback_host
from lrp_captum.viewer.paths import UnsafePathError, resolve_under, without_roots
from lrp_captum.viewer.results import SLIDE_SUFFIXES, ResultError, load_result, result_dir_for
from lrp_captum.viewer.slide_identity import check_result_slide, file_identity
from lrp_captum.viewer.tile_model import model_source
from lrp_captum.viewer.units import pixel_relevance_unit
from lrp_captum.wsi.reader import SlideError, check_slide_size

LAYERS = ("slide", "relevance", "probability", "attention", "grid", "tissue")


class NotFound(Exception):
    pass


class ResultMismatch(ResultError):
    """The slide's result was made from another slide file."""


class SlideReadError(RuntimeError):
    """OpenSlide could not read a region of the slide (a damaged file): that request fails, the
    handle is reopened for the next one."""


def render_viewer_page(assets_dir: str | Path, slide: str) -> str:
    """The viewer page for ``slide`` (a path relative to the slides folder), ready to serve.

    The slide name is the only value written into the page; it goes into a ``<script>`` as
    JSON with every character that could end the script escaped (slide names are chosen by
    whoever can write to the slides folder).
    """
    template = (Path(assets_dir) / "viewer.html").read_text(encoding="utf-8")
    return template.replace("__SLIDE_JSON__", json_for_script(slide))


class _LRU:
    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def put(self, key, value):
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def drop(self, key) -> None:
        with self._lock:
            self._data.pop(key, None)


class TileService:
    """Tiles and metadata for the slides and results under two configured folders.

    Parameters
    ----------
    slides_dir, results_dir : path
        Configured folders; nothing outside them is read.
    tile_cache : int
        Number of encoded tiles kept in memory.
    model_config : path, optional
        The app's ``--model``: with it, or with a usable model recorded in a result
        (:func:`~lrp_captum.viewer.tile_model.model_source`), the relevance layer at zoom levels
        finer than the stored map is each analysed tile's own map at the model's resolution
        (:class:`~lrp_captum.viewer.fine_relevance.FineRelevance`).
    device : str
        Where that model runs.
    """

    def __init__(self, slides_dir, results_dir, tile_cache: int = 4096, model_config=None, device: str = "cpu"):
        self.slides_dir = Path(slides_dir).resolve(strict=True)
        self.results_dir = Path(results_dir).resolve()
        self.model_config = model_config
        self.device = device
        self._slides = _LRU(16)
        self._results = _LRU(16)
        self._tiles = _LRU(tile_cache)
        self._models = _LRU(4)
        self._overviews = _LRU(4)
        self._overview_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._model_lock = threading.Lock()

    # --- opening -------------------------------------------------------------------------
    def slide_path(self, rel: str) -> Path:
        path = resolve_under(self.slides_dir, rel)
        if path.suffix.lower() not in SLIDE_SUFFIXES or not path.is_file():
            raise NotFound(f"no slide {rel!r} under the slides folder")
        return path

    def open_slide(self, rel: str):
        """``(OpenSlide, DeepZoomGenerator, DeepZoomGrid)`` for a slide, cached."""
        return self._open(rel)[:3]

    def _reading(self, rel: str, read):
        """``read(slide, dz)`` on the slide's cached handles.

        An ``OpenSlideError`` sticks to the handle that raised it (every later call on it fails),
        so the handle is dropped from the cache and the read tried once on a fresh one; a region
        that fails again is damaged: :class:`SlideReadError`, and the next request reopens.
        """
        import openslide

        for attempt in range(2):
            slide, dz, _, identity = self._open(rel)
            try:
                return read(slide, dz)
            except openslide.OpenSlideError:
                self._slides.drop((str(self.slide_path(rel)), identity))
        raise SlideReadError(f"OpenSlide cannot read this part of {rel}: the slide file is damaged there; "
                             "the rest of the slide is still shown")

    def _open(self, rel: str):
        """``(OpenSlide, DeepZoomGenerator, DeepZoomGrid, FileIdentity)``, cached by the file's identity."""
        import openslide
        from openslide.deepzoom import DeepZoomGenerator

        path = self.slide_path(rel)
        key = (str(path), file_identity(path))
        hit = self._slides.get(key)
        if hit is None:
            with self._open_lock:
                hit = self._slides.get(key)
                if hit is None:
                    try:
                        slide = openslide.OpenSlide(str(path))
                    except openslide.OpenSlideError as exc:
                        raise ResultError(f"OpenSlide cannot read {rel}: {exc}") from exc
                    try:
                        check_slide_size(slide.dimensions, rel)
                    except SlideError as exc:
                        slide.close()
                        raise ResultError(str(exc)) from None
                    dz = DeepZoomGenerator(slide, tile_size=TILE_SIZE, overlap=OVERLAP, limit_bounds=False)
                    w, h = slide.dimensions
                    hit = (slide, dz, DeepZoomGrid(w, h, TILE_SIZE, OVERLAP), key[1])
                    self._slides.put(key, hit)
        return hit

    def _overview(self, rel: str, slide) -> SlideOverview:
        """The slide's :class:`SlideOverview`, made once per slide file (a few MiB, read block by
        block) for the zoomed-out tiles of a slide without a pyramid."""
        key = (str(self.slide_path(rel)), file_identity(self.slide_path(rel)))
        with self._overview_lock:
            hit = self._overviews.get(key)
            if hit is None:
                hit = SlideOverview.of(slide)
                self._overviews.put(key, hit)
        return hit

    def open_result(self, rel: str) -> OverlayTiles:
        """Overlay tiles of a slide's result, reloaded when its manifest or the slide file changes.

        Raises
        ------
        UnsafePathError
            The result's files lead outside the results folder.
        ResultMismatch
            The result was made from another slide file.
        """
        return self._checked_result(rel)[0]

    def _checked_result(self, rel: str):
        """``(OverlayTiles, SlideCheck)`` of a slide's result."""
        slide, _, grid, identity = self._open(rel)
        path = self.slide_path(rel)
        rdir = result_dir_for(rel, self.results_dir, self.slides_dir)
        manifest = rdir / "manifest.json"
        if not manifest.is_file():
            raise NotFound(f"slide {rel!r} has no result yet")
        key = (str(rdir), manifest.stat().st_mtime_ns, identity)
        hit = self._results.get(key)
        if hit is None:
            result = load_result(rdir, self.results_dir, slide_dimensions=slide.dimensions)
            hit = (OverlayTiles(grid, result), check_result_slide(result.manifest, path, slide))
            self._results.put(key, hit)
        if not hit[1].overlay_allowed:
            raise ResultMismatch(hit[1].message)
        return hit

    # --- content -------------------------------------------------------------------------
    def info(self, rel: str) -> dict:
        """Everything the viewer page needs to set itself up (JSON-serialisable)."""
        _, _, grid = self.open_slide(rel)
        props = self._reading(rel, lambda slide, dz: dict(slide.properties))
        out = {"slide": rel, "width": grid.width, "height": grid.height, "tile_size": grid.tile_size,
               "overlap": grid.overlap, "max_level": grid.level_count - 1, "mpp": slide_mpp(props),
               "vendor": props.get("openslide.vendor"), "result": None,
               "default_cmap": SLIDE_CMAP,
               "legend": {"diverging": {c: legend_stops(c) for c in DIVERGING_CMAPS},
                          "sequential": {c: legend_stops(c) for c in SEQUENTIAL_CMAPS}}}
        try:
            ov, check = self._checked_result(rel)
        except NotFound:
            return out
        except ResultError as exc:
            out["result_error"] = str(exc)
            return out
        r = ov.result
        fine = self.fine_relevance(ov) is not None
        unit = pixel_relevance_unit(r.parameter("output_mode", "logit"))
        if r.kind == "mil":
            unit = f"evidence for {r.manifest['target']['class_name']} (logit units per tile)"
        out["result"] = {"vmax": r.vmax, "downsample": r.downsample, "has_probability_map": r.probability is not None,
                         "relevance_unit": unit, "kind": r.kind,
                         "has_attention": "attention" in r.tiles.columns,
                         "pixel_maps": int(r.tiles["pixel_map"].sum()) if "pixel_map" in r.tiles.columns else 0,
                         "fine_from_level": self.fine_from_level(ov) if fine else None,
                         "n_tiles": int(len(r.tiles)), "classes": r.classes,
                         "composite": r.parameter("composite"), "target": r.parameter("target"),
                         "output_mode": r.parameter("output_mode"), "slide_check": check.verdict,
                         "slide_warning": check.message}
        return out

    # --- relevance at the model's resolution -------------------------------------------------
    def fine_relevance(self, ov: OverlayTiles):
        """The :class:`FineRelevance` of a result, or None without a usable model (then the stored
        map is shown at every zoom level)."""
        from lrp_captum.viewer.fine_relevance import FineRelevance

        r = ov.result
        key, config = model_source(self.model_config, r.manifest)
        if key is None or r.kind == "mil":  # a MIL run's map is one evidence value per tile
            return None
        full = (key, r.parameter("composite"), r.parameter("output_mode", "logit"))
        with self._model_lock:
            hit = self._models.get(full)
            if hit is None:
                try:
                    from lrp_captum.wsi.model import load_model

                    hit = (FineRelevance(load_model(config, device=self.device), full[1], full[2]),)
                except Exception as exc:  # the coarse map stays; say why in the terminal
                    print(f"lrp-captum viewer: no model-resolution relevance ({type(exc).__name__}: {exc})")
                    hit = (None,)
                self._models.put(full, hit)
        return hit[0]

    @staticmethod
    def fine_from_level(ov: OverlayTiles) -> int:
        """The first Deep Zoom level whose pixels are finer than the stored map's."""
        return next(lv for lv in range(ov.grid.level_count) if ov.grid.level_scale(lv) < ov.result.downsample)

    def relevance_values(self, rel: str, level: int, col: int, row: int) -> np.ndarray:
        """(H, W) float32 relevance of a Deep Zoom tile (NaN where nothing was analysed): the tile's own
        map at the model's resolution at levels from :meth:`fine_from_level` when a model is
        available, else the stored map."""
        ov = self.open_result(rel)
        box, size = ov.grid.tile_box_level0(level, col, row), ov.grid.tile_box(level, col, row)[1]
        fine = self.fine_relevance(ov) if ov.grid.level_scale(level) < ov.result.downsample else None
        if fine is not None:
            values, valid = self._reading(rel, lambda slide, dz: fine.raster(slide, ov.result.tiles, box, size))
        else:
            values, valid = sample_map(ov.result.relevance, ov.result.downsample, box, size)
        return np.where(valid, values, np.nan).astype(np.float32)

    def relevance_rgba(self, rel: str, level: int, col: int, row: int, mode: str = "both",
                       cmap: str = SLIDE_CMAP) -> np.ndarray:
        """The relevance layer's RGBA tile (colour limit: the result's ``vmax``)."""
        values = self.relevance_values(rel, level, col, row)
        return relevance_to_rgba(values, self.open_result(rel).result.vmax, mode, cmap, np.isfinite(values))

    def tile(self, rel: str, layer: str, level: int, col: int, row: int, mode: str = "both",
             cmap: str | None = None, class_index: int = -1) -> tuple[bytes, str]:
        """Encoded tile bytes and MIME type; raises NotFound/ValueError for bad requests."""
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; one of {LAYERS}")
        if layer == "relevance":
            cmap = cmap or SLIDE_CMAP
            if cmap not in DIVERGING_CMAPS or mode not in RELEVANCE_MODES:
                raise ValueError(f"relevance needs mode in {RELEVANCE_MODES} and cmap in {DIVERGING_CMAPS}")
        elif layer in ("probability", "attention"):
            cmap = cmap or "viridis"
            if cmap not in SEQUENTIAL_CMAPS:
                raise ValueError(f"{layer} needs cmap in {SEQUENTIAL_CMAPS}")
        _, _, grid, identity = self._open(rel)
        if not 0 <= level < grid.level_count:
            raise NotFound(f"level {level} out of range")
        cols, rows = grid.level_tiles(level)
        if not (0 <= col < cols and 0 <= row < rows):
            raise NotFound(f"tile {col},{row} out of range at level {level}")
        if layer == "slide":
            key = (rel, identity, layer, level, col, row)
        else:
            ov = self.open_result(rel)
            key = (rel, identity, str(ov.result.result_dir), id(ov), layer, mode, cmap, class_index, level, col, row)
        hit = self._tiles.get(key)
        if hit is not None:
            return hit
        if layer == "slide":
            import io

            img = self._reading(rel, lambda slide, dz: slide_tile(slide, dz, grid, level, col, row,
                                                                  lambda: self._overview(rel, slide)))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=85)
            hit = (buf.getvalue(), "image/jpeg")
        elif layer == "relevance":
            hit = (encode_png(self.relevance_rgba(rel, level, col, row, mode, cmap)), "image/png")
        elif layer == "probability":
            hit = (encode_png(ov.probability_rgba(level, col, row, cmap, class_index)), "image/png")
        elif layer == "attention":
            hit = (encode_png(ov.attention_rgba(level, col, row, cmap)), "image/png")
        elif layer == "grid":
            hit = (encode_png(ov.grid_rgba(level, col, row)), "image/png")
        else:
            hit = (encode_png(ov.tissue_rgba(level, col, row)), "image/png")
        self._tiles.put(key, hit)
        return hit


    # --- a MIL run's tiles ---------------------------------------------------------------------
    def tile_at(self, rel: str, x: float, y: float) -> dict:
        """The tile of a MIL result under the level-0 point ``(x, y)``: ``{"tile": None}`` off the
        tiles, else its index, level-0 box, evidence, attention and whether it has a pixel map."""
        ov = self.open_result(rel)
        if ov.result.kind != "mil":
            raise ValueError("tiles are looked up for MIL explanations only")
        i = ov.tile_at(float(x), float(y))
        if i is None:
            return {"tile": None}
        row = ov.result.tiles.iloc[i]
        return {"tile": int(row.get("tile_index", i)), "box": [float(row[k]) for k in ("x0", "y0", "w0", "h0")],
                "evidence": float(row["evidence"]), "rank": int(row.get("evidence_rank", 0)),
                "attention": float(row["attention"]) if "attention" in row else None,
                "pixel_map": bool(row.get("pixel_map", False))}

    def pixel_map_png(self, rel: str, tile: int, cmap: str = SLIDE_CMAP) -> bytes:
        """The pixel map of tile ``tile`` of a MIL result (its own colour scale, symmetric about 0)."""
        import zarr

        from lrp_captum.visualization.colormaps import relevance_heatmap_rgb

        if cmap not in DIVERGING_CMAPS:
            raise ValueError(f"a pixel map needs cmap in {DIVERGING_CMAPS}")
        ov = self.open_result(rel)
        if ov.result.kind != "mil":
            raise ValueError("pixel maps are served for MIL explanations only")
        group = zarr.open_group(str(ov.result.result_dir / "evidence.zarr"), mode="r")
        hits = np.flatnonzero(np.asarray(group["tile_maps_index"][:]) == int(tile))
        if not len(hits):
            raise NotFound(f"tile {tile} has no pixel map in this explanation")
        values = np.asarray(group["tile_maps"][int(hits[0])], dtype=np.float32)
        rgb = relevance_heatmap_rgb(values, float(np.abs(values).max()) or 1.0, cmap)
        return encode_png(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))


def slide_mpp(properties) -> float | None:
    """µm per level-0 pixel from OpenSlide's properties; None when missing, zero, negative or not finite."""
    try:
        mpp = float(properties.get("openslide.mpp-x"))
    except (TypeError, ValueError):
        return None
    return mpp if math.isfinite(mpp) and mpp > 0 else None


def json_body(value) -> bytes:
    """``value`` as strict JSON: a float that is not finite (which ``json.dumps`` writes as
    ``Infinity``/``NaN``, not JSON) becomes null."""
    def finite(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        return v

    return json.dumps(finite(value), allow_nan=False).encode()


def _make_handler(service: TileService, assets_dir: Path, vendor_dir: Path, access: AppAccess):
    roots = {service.slides_dir: "the slides folder", service.results_dir: "the results folder"}

    def scrub(message: str) -> str:
        return without_roots(message, roots)

    class Handler(BaseHTTPRequestHandler):
        server_version = "lrp-captum-tiles"
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK add ~40 ms
        disable_nagle_algorithm = True

        def log_message(self, *args):  # quiet: Streamlit's console is the user's log
            pass

        def _send(self, status: int, body: bytes, ctype: str, cache: bool = False, page: bool = False):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
            if page:
                # the viewer may be framed only by pages on this machine (the Streamlit app)
                self.send_header("Content-Security-Policy", "frame-ancestors http://127.0.0.1:* http://localhost:*")
            else:
                # no CORS header, and no embedding by other sites: a web page open in the same
                # browser must not be able to read or show slide data from this server
                self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str):
            self._send(status, scrub(message).encode(), "text/plain; charset=utf-8")

        def _static(self, root: Path, rel: str):
            path = resolve_under(root, rel)
            if not path.is_file():
                raise NotFound(f"{rel} not found")
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            self._send(200, path.read_bytes(), ctype, cache=True)

        def _refused(self, query: dict) -> bool:
            """Answer 403 unless the request has a loopback Host and the app's token."""
            if not is_loopback_host(self.headers.get("Host")):
                self._error(HTTPStatus.FORBIDDEN, "only loopback host names are served")
                return True
            if not access.allows(self.headers.get("Cookie"), query.get("token")):
                self._error(HTTPStatus.FORBIDDEN, "this server needs the app's access token: open the app "
                                                  "from the URL that `lrp-captum app` printed")
                return True
            return False

        def _other_method(self):
            if not self._refused({k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}):
                self._error(HTTPStatus.METHOD_NOT_ALLOWED, "only GET is served")

        do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other_method  # noqa: N815

        def do_GET(self):  # noqa: N802 (http.server API)
            url = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if self._refused(q):
                return
            try:
                if url.path == "/health":
                    return self._send(200, b"ok", "text/plain")
                if url.path.startswith("/vendor/"):
                    return self._static(vendor_dir, url.path[len("/vendor/"):])
                if url.path.startswith("/assets/"):
                    return self._static(assets_dir, url.path[len("/assets/"):])
                slide = q.get("slide", "")
                if url.path == "/viewer":
                    service.slide_path(slide)
                    page = render_viewer_page(assets_dir, slide)
                    return self._send(200, page.encode(), "text/html; charset=utf-8", page=True)
                if url.path == "/info":
                    info = json.loads(scrub(json_body(service.info(slide)).decode()))
                    return self._send(200, json_body(info), "application/json")
                if url.path == "/tile-at":
                    return self._send(200, json_body(service.tile_at(slide, float(q.get("x", "nan")),
                                                                     float(q.get("y", "nan")))), "application/json")
                if url.path == "/pixel-map":
                    return self._send(200, service.pixel_map_png(slide, int(q.get("tile", -1)),
                                                                 q.get("cmap") or SLIDE_CMAP), "image/png")
                if url.path == "/tile":
                    body, ctype = service.tile(slide, q.get("layer", "slide"), int(q.get("level", -1)),
                                               int(q.get("col", -1)), int(q.get("row", -1)),
                                               q.get("mode", "both"), q.get("cmap") or None,
                                               int(q.get("cls", -1)))
                    return self._send(200, body, ctype, cache=True)
                raise NotFound(f"no route {url.path}")
            except UnsafePathError as exc:
                self._error(HTTPStatus.FORBIDDEN, str(exc))
            except NotFound as exc:
                self._error(HTTPStatus.NOT_FOUND, str(exc))
            except ResultMismatch as exc:
                self._error(HTTPStatus.CONFLICT, str(exc))
            except SlideReadError as exc:
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, str(exc))
            except (ValueError, ResultError) as exc:
                self._error(HTTPStatus.BAD_REQUEST, str(exc))
            except FileNotFoundError:
                self._error(HTTPStatus.NOT_FOUND, "not found")
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


class TileServer:
    """A :class:`TileService` behind a threaded HTTP server on 127.0.0.1.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. ``port=0`` picks a free port;
    the chosen one is in :attr:`port` and :attr:`url`. With ``access`` (the app passes its
    :class:`~lrp_captum.viewer.access_token.AppAccess`), every request needs the token; without,
    anyone on this machine may read the slides (a library use, e.g. in a notebook).
    """

    def __init__(self, slides_dir, results_dir, port: int = 0, assets_dir=None, vendor_dir=None,
                 access: AppAccess | None = None, model_config=None, device: str = "cpu"):
        self.service = TileService(slides_dir, results_dir, model_config=model_config, device=device)
        self.assets_dir = Path(assets_dir or viewer_assets_dir()).resolve()
        self.vendor_dir = Path(vendor_dir or openseadragon.vendor_dir()).resolve()
        self.access = access or AppAccess(None)
        handler = _make_handler(self.service, self.assets_dir, self.vendor_dir, self.access)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "TileServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="lrp-tile-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def wait_until_up(url: str, timeout: float = 10.0) -> None:
    """Block until ``url/health`` answers with any HTTP status (a 403 for want of the token is up)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)
