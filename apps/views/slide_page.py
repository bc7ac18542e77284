"""Slide page: pick a slide, view it with its relevance overlay, browse top tiles, explain on demand.

Names of slides, classes and run parameters come from files anyone with write access to the
folders may have chosen: they go into markdown through ``md`` (shown literally), and messages
are made by :mod:`lrp_captum.viewer.page_messages` (no absolute path, one line, shown literally).
"""
from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import numpy as np

from lrp_captum.viewer import openseadragon
from lrp_captum.viewer.colormaps import SLIDE_CMAP, legend_words, relevance_heatmap_rgb
from lrp_captum.viewer.escaping import streamlit_literal as md
from lrp_captum.viewer.jobs import ExplainJobs
from lrp_captum.viewer.loopback import browser_host
from lrp_captum.viewer.page_messages import failure_message, failure_text, page_message
from lrp_captum.viewer.paths import UnsafePathError, resolve_under
from lrp_captum.viewer.results import ResultError, list_slides, load_result, top_tiles
from lrp_captum.viewer.slide_identity import check_result_slide, file_identity
from lrp_captum.viewer.tile_model import model_source
from lrp_captum.viewer.tile_server import TileServer, wait_until_up
from lrp_captum.viewer.tile_view import blend_relevance, read_tile_rgb, stored_tile_relevance
from lrp_captum.viewer.units import pixel_relevance_unit, probability_label, tile_sum_unit
from lrp_captum.wsi.slide_options import SLIDE_OPTIONS, SlideOptions, form_fields
from lrp_captum.wsi.tile_relevance import DEFAULT_COMPOSITE

GALLERY_K = 6
OUTPUT_MODES = SLIDE_OPTIONS["output_mode"].kind.choices
STATUSES = ("explained", "not explained", "incomplete", "corrupt", "refused")


# --- shared resources (one per app process, shared by all sessions) ------------------------------
def _tile_server(st, cfg) -> TileServer:
    @st.cache_resource(show_spinner=False)
    def start(slides: str, results: str, port: int, model: str, device: str, _access) -> TileServer:
        server = TileServer(slides, results, port=port, access=_access, model_config=model or None,
                            device=device).start()
        wait_until_up(server.url)
        return server

    return start(str(cfg.slides_dir), str(cfg.results_dir), cfg.tile_port, str(cfg.model_config or ""),
                 cfg.device, cfg.access)


def _jobs(st) -> ExplainJobs:
    @st.cache_resource(show_spinner=False)
    def registry() -> ExplainJobs:
        return ExplainJobs()

    return registry()


def _load_result_cached(st, result_dir: Path, results_dir: Path, slide_dimensions: tuple[int, int]):
    @st.cache_resource(show_spinner=False, max_entries=8)
    def load(path: str, root: str, mtime_ns: int, dims: tuple[int, int]):
        return load_result(path, root, slide_dimensions=dims)

    manifest = result_dir / "manifest.json"
    return load(str(result_dir), str(results_dir), manifest.stat().st_mtime_ns if manifest.exists() else 0,
                tuple(slide_dimensions))


def _open_slide(st, path: Path):
    @st.cache_resource(show_spinner=False, max_entries=8)
    def open_(p: str, identity: tuple):
        import openslide

        return openslide.OpenSlide(p)

    return open_(str(path), tuple(file_identity(path)))


def _load_model(st, key: str, config, device: str):
    @st.cache_resource(show_spinner=False, max_entries=2)
    def load(_key: str, dev: str):
        from lrp_captum.wsi.model import load_model

        return load_model(config, device=dev)  # weights_only=True inside

    return load(key, device)


# --- page ----------------------------------------------------------------------------------------
def _select_slide(st, cfg, entries):
    labels = [e.rel_path for e in entries]
    requested = st.query_params.get("slide")
    if requested is not None and st.session_state.get("_slide_from_url") != requested:
        st.session_state["_slide_from_url"] = requested
        try:
            resolve_under(cfg.slides_dir, requested)
        except UnsafePathError as exc:
            st.error(failure_message("Refused slide path from the URL", exc, cfg.roots))
        else:
            if requested in labels:
                st.session_state["slide"] = requested
            else:
                st.error(page_message(f"No slide {requested!r} under the slides folder.", cfg.roots))
    if st.session_state.get("slide") not in labels:
        st.session_state["slide"] = labels[0]
    status = {e.rel_path: e.status for e in entries}
    with st.sidebar:
        rel = st.selectbox("Slide", labels, key="slide",
                           format_func=lambda r: f"{r} — {status[r]}")
        counts = {s: sum(e.status == s for e in entries) for s in STATUSES}
        st.caption(" · ".join(f"{n} {s}" for s, n in counts.items() if n))
    if st.query_params.get("slide") != rel:
        st.query_params["slide"] = rel
        st.session_state["_slide_from_url"] = rel
    if st.session_state.get("_tile_slide") != rel:
        st.session_state["_tile_slide"] = rel
        st.session_state.pop("tile", None)
    return next(e for e in entries if e.rel_path == rel)


def render_slide_page(st, cfg) -> None:
    """Render the slide page with ``st`` (the streamlit module) and an ``AppConfig``."""
    st.header("Slide relevance viewer")
    try:
        entries = list_slides(cfg.slides_dir, cfg.results_dir)
    except ResultError as exc:
        st.error(page_message(exc, cfg.roots))
        return
    if not entries:
        st.info("No slides in the slides folder (`--slides`). Put OpenSlide-readable files there "
                "(.svs, .tif, .ndpi, .mrxs, …) or generate one with `lrp-captum slide sample`.")
        return
    entry = _select_slide(st, cfg, entries)

    if entry.status == "refused":  # neither shown nor written into: the folder leads elsewhere
        st.caption(f"{md(entry.rel_path)} · status: refused")
        st.error(page_message(entry.detail, cfg.roots))
        return
    result, error, warning = None, None, None
    if entry.status == "explained":
        try:
            result = _load_result_cached(st, entry.result_dir, cfg.results_dir, _open_slide(st, entry.path).dimensions)
        except (ResultError, UnsafePathError) as exc:
            error = str(exc)
    elif entry.status == "corrupt":
        error = f"The result for {entry.rel_path} is damaged: {entry.detail}."
    if result is not None:
        check = check_result_slide(result.manifest, entry.path, _open_slide(st, entry.path))
        if not check.overlay_allowed:
            result, error = None, check.message
        elif check.message:
            warning = check.message

    st.caption(f"{md(entry.rel_path)} · result folder: {md(entry.result_dir.name)}/ · status: {entry.status}")
    if error:
        st.error(page_message(f"{error.rstrip('.')}. Re-run the explanation below to replace it.", cfg.roots))
    if warning:
        st.warning(page_message(warning, cfg.roots))

    _viewer(st, cfg, entry)
    if result is not None and result.kind == "mil":  # a slide-level MIL run: evidence per tile, no tile model
        _mil_summary(st, result)
        return
    if result is not None:
        _summary(st, result)
        _gallery(st, cfg, entry, result)
        _tile_view(st, cfg, entry, result)
    if result is None:
        _explain_section(st, cfg, entry)
    else:
        with st.expander("Explain again with other settings"):
            _explain_section(st, cfg, entry, replace=True)


def _viewer(st, cfg, entry):
    if not openseadragon.is_available():
        st.error("The deep-zoom viewer (OpenSeadragon) is not installed: start the app with `lrp-captum app`, "
                 "which fetches it from the npm registry (or run `scripts/fetch_openseadragon.sh` in a checkout), "
                 "then reload this page.")
        return
    server = _tile_server(st, cfg)
    # the host name the browser used for the app: its cookie (the access token) is sent only there
    src = f"http://{browser_host(st.context.headers.get('host'))}:{server.port}/viewer?slide={quote(entry.rel_path)}"
    tile = st.session_state.get("tile")
    # the URL always carries a fragment, so switching tiles (or closing one) is a fragment
    # navigation inside the viewer, never a reload that would lose the zoom
    if tile is not None:
        src += "#tile={x0},{y0},{w0},{h0}".format(**{k: int(tile[k]) for k in ("x0", "y0", "w0", "h0")})
    else:
        src += "#view"
    st.iframe(src, height=620, alt=f"Deep-zoom viewer of {entry.rel_path}")
    st.caption("Drag to pan, scroll to zoom. Opacity, sign, colour map, tissue outline and tile grid are set "
               "in the viewer's toolbar and keep the current view.")


def _mil_summary(st, result):
    """What a MIL explanation in the viewer is: the head's slide prediction and what a click shows."""
    m = result.manifest
    predicted = m["prediction"]["class_name"]
    cols = st.columns([1, 1, 3])
    cols[0].metric("prediction", md(predicted))
    cols[1].metric("probability", md(probability_label(predicted, max(m["prediction"]["probabilities"]))))
    source = "TRIDENT/CLAM features" if m.get("features") else "tiles embedded by its encoder"
    maps = int(result.tiles["pixel_map"].sum()) if "pixel_map" in result.tiles.columns else 0
    cols[2].markdown(
        f"**MIL head** {md(m['head']['name'])} on {source} · **method** {md(m['method'])} · **evidence for** "
        f"{md(m['target']['class_name'])} (logit units per tile; colour limit ±{result.vmax:.3g}) · **map** "
        "Evidence or Attention in the viewer's toolbar  \n"
        + (f"Click a tile in the viewer for its evidence; {maps} tiles of largest evidence have a pixel map."
           if maps else "Click a tile in the viewer for its evidence. No pixel maps: this run explained features "
                        "computed elsewhere (or one number per tile), so a click shows the tile's numbers only.")
        + "  \nResearch/demo output of a model explanation, not a diagnosis.")


def _summary(st, result):
    tiles = result.tiles
    cols = st.columns([1, 1, 3])
    cols[0].metric("Tiles analysed", f"{len(tiles):,}")
    last = result.classes[-1] if result.classes else 1
    if "prediction_index" in tiles.columns and len(tiles):
        share = float((tiles["prediction_index"] == len(result.classes) - 1).mean()) if result.classes else float("nan")
        cols[1].metric(f"Tiles predicted {md(last)}", f"{share:.0%}")
    elif "prediction" in tiles.columns and len(tiles):
        pred = tiles["prediction"]
        hit = pred == (len(result.classes) - 1) if pred.dtype.kind in "iuf" else pred.astype(str) == str(last)
        cols[1].metric(f"Tiles predicted {md(last)}", f"{float(hit.mean()):.0%}")
    cols[2].markdown(f"**Composite** {md(result.parameter('composite', '?'))} · **target** "
                     f"{md(result.parameter('target', '?'))} · **output** "
                     f"{md(result.parameter('output_mode', 'logit'))} · "
                     f"**map** 1/{result.downsample:g} of level 0 · **colour limit** ±{result.vmax:.3g} "
                     f"({pixel_relevance_unit(result.parameter('output_mode', 'logit'))})  \n"
                     "Research/demo output of a model explanation, not a diagnosis.")


def _thumb(st, slide_path: Path, row, size: int = 160) -> np.ndarray:
    @st.cache_data(show_spinner=False, max_entries=256)
    def thumb(p: str, identity: tuple, x0: int, y0: int, w0: int, h0: int, s: int):
        return read_tile_rgb(_open_slide(st, Path(p)), x0, y0, w0, h0, (s, s))

    return thumb(str(slide_path), tuple(file_identity(slide_path)), int(row.x0), int(row.y0), int(row.w0),
                 int(row.h0), size)


def _gallery(st, cfg, entry, result):
    st.subheader("Most relevant tiles")
    tabs = st.tabs(["Most positive", "Most negative"])
    for tab, negative in zip(tabs, (False, True)):
        with tab:
            top = top_tiles(result.tiles, k=GALLERY_K, negative=negative)
            if top.empty:
                st.info("No tile with " + ("negative" if negative else "positive") + " relevance.")
                continue
            cols = st.columns(GALLERY_K)
            for i, (idx, row) in enumerate(top.iterrows()):
                with cols[i]:
                    st.image(_thumb(st, entry.path, row), width="stretch")
                    value = row.get("relevance_neg", row.get("relevance_sum")) if negative else row.get("relevance_pos")
                    st.caption(f"({int(row.x0)}, {int(row.y0)}) · R={value:+.3g} "
                               f"({tile_sum_unit(result.parameter('output_mode', 'logit'))}){_tile_probability(row)}")
                    if st.button("Open", key=f"open_{'neg' if negative else 'pos'}_{idx}"):
                        st.session_state["tile"] = {k: int(row[k]) for k in ("x0", "y0", "w0", "h0")} | {
                            "index": int(idx), "target": str(row.get("target", row.get("prediction", "")))}
                        # start the tile view on the class the slide run explained for this tile
                        st.session_state.pop("tile_target", None)
                        st.rerun()


def _tile_probability(row) -> str:
    """`` · p(class)=0.97``: the probability of the class the tile was predicted as, named."""
    if "probability" not in row:
        return ""
    return " · " + md(probability_label(row.get("prediction", "predicted class"), float(row["probability"])))


def _class_names(result, bundle) -> list[str]:
    if bundle is not None:
        return list(bundle.classes)
    return [str(c) for c in result.classes] or ["0", "1"]


def _composites() -> list[str]:
    try:
        from lrp_captum.core.composites import list_composites

        return list(list_composites())
    except Exception:
        return ["epsilon_plus", "epsilon_gamma_box", "epsilon_alpha2_beta1", "epsilon"]


def _model_source(cfg, result):
    """``(key, config)`` of the model for tile re-explanation, or ``(None, reason)``
    (:func:`lrp_captum.viewer.tile_model.model_source`)."""
    key, config = model_source(cfg.model_config, result.manifest)
    return (key, config) if key is not None else (None, config)


def _tile_view(st, cfg, entry, result):
    tile = st.session_state.get("tile")
    if tile is None:
        st.caption("Open a tile above to see it at full resolution with its relevance heatmap.")
        return
    st.subheader(f"Tile at level-0 ({tile['x0']}, {tile['y0']}), {tile['w0']}×{tile['h0']} px")
    slide = _open_slide(st, entry.path)
    rgb = read_tile_rgb(slide, tile["x0"], tile["y0"], tile["w0"], tile["h0"])
    row = result.tiles.loc[tile["index"]] if tile.get("index") in result.tiles.index else None

    model_key, model_config = _model_source(cfg, result)
    bundle, model_error = None, None
    if model_key is None:
        model_error = model_config
    else:
        try:
            bundle = _load_model(st, model_key, model_config, cfg.device)
        except Exception as exc:
            model_error = failure_text("The model could not be loaded", exc)

    classes = _class_names(result, bundle)
    composites = _composites()
    run_comp = result.parameter("composite")
    if run_comp in composites:
        default_comp = run_comp
    elif bundle is not None:  # as a slide run chooses: attnlrp_gamma for a ViT, else the CNN default
        from lrp_captum.wsi.tile_relevance import default_composite

        default_comp = default_composite(bundle)
    else:
        default_comp = DEFAULT_COMPOSITE if DEFAULT_COMPOSITE in composites else composites[0]
    c1, c2, c3 = st.columns(3)
    if st.session_state.get("tile_target") not in classes:
        st.session_state["tile_target"] = tile.get("target") if tile.get("target") in classes else classes[-1]
    target = c1.selectbox("Explain class", classes, key="tile_target")
    composite = c2.selectbox("Composite", composites, index=composites.index(default_comp), key="tile_composite")
    mode = c3.selectbox("Output mode", OUTPUT_MODES, key="tile_mode")

    heat, info = None, None
    if bundle is not None:
        try:
            heat, info = _explain_tile(st, model_key, bundle, entry, tile, rgb, classes.index(target), composite, mode)
        except Exception as exc:
            model_error = failure_text("Re-explaining this tile failed", exc)
    if heat is None:
        heat = stored_tile_relevance(result.relevance, result.downsample, tile["x0"], tile["y0"], tile["w0"], tile["h0"])

    a, b, c, d = st.columns([1, 1, 1, 1.1])
    a.image(rgb, caption="Tile (level 0, full resolution)", width="stretch")
    vmax = float(np.nanmax(np.abs(heat))) if np.isfinite(heat).any() else 1.0
    b.image(relevance_heatmap_rgb(heat, vmax), caption=f"Relevance ({'recomputed' if info else 'stored map'}), "
            f"{pixel_relevance_unit(mode if info else result.parameter('output_mode', 'logit'))}: "
            f"{legend_words(SLIDE_CMAP, vmax)}", width="stretch", clamp=True)
    c.image(blend_relevance(rgb, heat, vmax), caption="Relevance over the tile", width="stretch")
    with d:
        if info is not None:
            st.markdown(f"**Prediction:** {md(info['prediction'])}")
            st.dataframe({"class": classes, "probability": [round(p, 4) for p in info["probabilities"]]},
                         hide_index=True, width="stretch")
            st.caption(f"Relevance of '{md(target)}', {md(composite)}, {mode} output; computed in "
                       f"{info['seconds']:.2f} s on {info['device']}.")
        elif row is not None:
            st.markdown(f"**Prediction (stored):** {md(row.get('prediction', '?'))}  \n"
                        f"**Probability:** {float(row.get('probability', float('nan'))):.3f}")
        if model_error:
            st.warning(page_message(model_error, cfg.roots))
    if st.button("Close tile view", key="close_tile"):
        st.session_state.pop("tile", None)
        st.rerun()


def _tile_explainer(st, model_key: str, bundle, composite: str, mode: str):
    """A reusable ``TileExplainer`` and its lock (LRP hooks on a shared model are not re-entrant)."""
    @st.cache_resource(show_spinner=False, max_entries=8)
    def make(_model_key: str, composite: str, mode: str):
        import threading

        import torch

        from lrp_captum.wsi.tile_relevance import TileExplainer

        explainer = TileExplainer(bundle, composite, mode)
        # the first attribution traces the model for its canonizers; do it here, not on the user's click
        blank = torch.full((1, bundle.tile_size, bundle.tile_size, 3), 200, dtype=torch.uint8)
        explainer.explain(blank, 0)
        return explainer, threading.Lock()

    return make(model_key, composite, mode)


def _explain_tile(st, model_key, bundle, entry, tile, rgb, target: int, composite: str, mode: str):
    @st.cache_data(show_spinner="Explaining the tile…", max_entries=64)
    def run(model_key: str, slide_key: str, box: tuple, target: int, composite: str, mode: str):
        import torch
        from PIL import Image

        size = bundle.tile_size
        model_rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BOX)) if rgb.shape[:2] != (size, size) else rgb
        explainer, lock = _tile_explainer(st, model_key, bundle, composite, mode)
        t0 = time.perf_counter()
        with lock:
            # one tile is too small to gain from intra-op threads; on a busy CPU they cost seconds
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                rel, probs, _ = explainer.explain(torch.from_numpy(np.array(model_rgb, copy=True))[None], target)
            finally:
                torch.set_num_threads(threads)
        seconds = time.perf_counter() - t0
        rel, probs = np.asarray(rel[0], np.float32), [float(p) for p in probs[0]]
        return rel, {"probabilities": probs, "prediction": bundle.classes[int(np.argmax(probs))] if len(probs) else "?",
                     "seconds": seconds, "device": str(bundle.device)}

    box = (tile["x0"], tile["y0"], tile["w0"], tile["h0"])
    return run(model_key, f"{entry.path}:{tuple(file_identity(entry.path))}", box, target, composite, mode)


def _explain_section(st, cfg, entry, replace: bool = False):
    """Start (or follow) the pipeline on this slide; ``replace`` re-explains an existing result."""
    jobs = _jobs(st)
    job = jobs.get(entry.result_dir)
    if job is not None and job.state in ("queued", "running"):
        st.subheader("Explaining this slide")
        _progress_fragment(st, jobs, entry)
        return
    if not replace:
        st.subheader("Explain this slide")
    if job is not None and job.state == "failed":
        st.error(failure_message("The last run failed", job.message, cfg.roots))
    model_path = cfg.model_config
    if model_path is None:
        st.warning("No model configured: start the app with `--model CONFIG` "
                   "(the demo model: `lrp-captum slide train-demo`).")
        return
    values = _explain_form(st)
    label = f"{'Re-explain' if replace else 'Explain'} {md(entry.rel_path)}"
    if st.button(label, type="primary", key="explain_start"):
        try:
            options = SlideOptions(_read_form(values), device=cfg.device, quiet=True, num_workers=0)
        except ValueError as exc:
            st.error(page_message(exc, cfg.roots))
            return
        overwrite = entry.status in ("explained", "corrupt")
        manifest = entry.result_dir / "manifest.json"
        if entry.status == "corrupt" and manifest.is_file():
            # keep the damaged file for inspection, out of the pipeline's way
            manifest.rename(manifest.with_name(f"manifest.json.damaged-{int(time.time())}"))
        jobs.start(entry.path, str(model_path), entry.result_dir, **options.replace(overwrite=overwrite))
        st.rerun()


def _explain_form(st) -> list:
    """The explain form: one field per slide option that declares one (``form_fields``); returns
    ``(field, what it holds)`` pairs."""
    fields = form_fields()
    entered = []
    for column, f in zip(st.columns(max(1, len(fields))), fields):
        key = f"explain_{f.name}"
        if f.widget == "select":
            value = column.selectbox(f.label, f.choices, index=f.choices.index(f.default),
                                     format_func=f.choice_label, key=key, help=f.help)
        elif f.widget == "checkbox":
            value = column.checkbox(f.label, value=bool(f.default), key=key, help=f.help)
        else:
            value = column.text_input(f.label, f.text, key=key, help=f.help)
        entered.append((f, value))
    return entered


def _read_form(entered: list) -> dict:
    """The options the form's fields hold (``ValueError`` naming a field whose text is no value)."""
    return {f.name: f.value(value) for f, value in entered}


def _progress_fragment(st, jobs, entry):
    @st.fragment(run_every=1.0)
    def progress():
        job = jobs.get(entry.result_dir)
        snap = job.snapshot()
        if snap["state"] in ("queued", "running"):
            text = (f"Explaining… {snap['done']}/{snap['total']} tiles" if snap["total"]
                    else "Explaining… preparing tiles") + f" ({snap['elapsed_s']:.0f} s)"
            st.progress(snap["fraction"], text=text)
        else:
            st.rerun(scope="app")

    progress()
