"""MIL page of the app: slide-level prediction, signed tile evidence, pixel maps of the top tiles.

Thin: finds folders written by ``lrp-captum slide explain-mil`` under the results folder without
following links out of it, checks every file of the chosen one (:func:`lrp_captum.viewer.paths.check_inside`)
and reads it through :mod:`lrp_captum.wsi.mil.results`. Values from its manifest are shown
literally (:func:`lrp_captum.viewer.escaping.streamlit_literal`), messages through
:func:`lrp_captum.viewer.page_messages.page_message`.
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT_NAME = "the results folder"


def mil_folders(results_dir: Path) -> list[Path]:
    """Finished MIL explanation folders under ``results_dir``: a ``manifest.json`` inside it (links out
    are never opened) of the explain-mil format."""
    from lrp_captum.viewer.paths import files_named
    from lrp_captum.wsi.mil.explain import FORMAT

    found = []
    for manifest in files_named(results_dir, "manifest.json"):
        try:
            if json.loads(manifest.read_text()).get("format") == FORMAT:
                found.append(manifest.parent)
        except (OSError, ValueError, AttributeError):
            continue
    return found


def render_mil_page(st, results_dir) -> None:
    """Show a MIL explanation under ``results_dir``: prediction, evidence map (one colour per tile,
    for and against the target), the strongest tiles and, for a chosen tile, its pixel map."""
    import numpy as np

    from lrp_captum.viewer.colormaps import SLIDE_CMAP, legend_words
    from lrp_captum.viewer.escaping import streamlit_literal as md
    from lrp_captum.viewer.page_messages import page_message
    from lrp_captum.viewer.paths import UnsafePathError, check_inside
    from lrp_captum.viewer.units import probability_label
    from lrp_captum.visualization.colormaps import colorize
    from lrp_captum.wsi.mil.results import read_mil_explanation

    results_dir = Path(results_dir)
    roots = {results_dir: ROOT_NAME}
    folders = mil_folders(results_dir) if results_dir.is_dir() else []
    if not folders:
        st.info("No MIL explanations in the results folder (`--results`). Make one with "
                "`lrp-captum slide explain-mil SLIDE --mil HEAD.json --out DIR` (DIR inside the results folder).")
        return
    labels = [f.relative_to(results_dir.resolve()).as_posix() if f != results_dir.resolve() else f.name
              for f in folders]
    choice = st.selectbox("Explanation", labels, key="mil_result")
    folder = folders[labels.index(choice)]
    try:
        check_inside(results_dir, [folder], what=ROOT_NAME)
        ex = read_mil_explanation(folder)
    except (UnsafePathError, ValueError) as exc:
        st.error(page_message(exc, roots))
        return
    m = ex.manifest
    target = m["target"]["class_name"]
    predicted = m["prediction"]["class_name"]
    cols = st.columns(3)
    cols[0].metric("prediction", md(predicted))
    cols[1].metric("probability", md(probability_label(predicted, max(m["prediction"]["probabilities"]))))
    cols[2].metric("tiles", m["n_tiles"])
    colours = legend_words(SLIDE_CMAP, float(m["vmax"]))
    st.caption(f"{md(Path(str(m['slide']['path'])).name)} · method {md(m['method'])} · evidence for {md(target)} "
               f"(one colour per tile; {colours}, in units of the head's logit)")

    sums = m.get("sums")
    if sums:
        st.caption(_sums_caption(sums, len(ex.tile_maps)))
    st.caption(f"Over the slide itself: the slide viewer (Slides page) shows this evidence as an overlay, with "
               f"attention as a second map, when the explanation is written to the results folder under the "
               f"slide's name (here: {md(Path(str(m['slide']['path'])).stem)}/).")
    left, right = st.columns(2)
    left.image(colorize(ex.evidence_map, m["vmax"]), caption=f"evidence for {md(target)}", width="stretch")
    tiles = ex.tiles.sort_values("evidence_rank")
    columns = ["tile_index", "row", "col", "evidence", "pixel_map"] + [
        c for c in ("pixel_map_sum", "pixel_map_to_evidence") if c in tiles.columns]
    right.dataframe(tiles[columns].head(12), hide_index=True)

    st.subheader("Tile pixel map")
    with_maps = [int(i) for i in tiles.loc[tiles["pixel_map"], "tile_index"]]
    if not with_maps:
        if m.get("features"):
            st.info("This explanation read TRIDENT/CLAM features: there is no tile encoder to trace the evidence "
                    "into the tiles' pixels, so it has no pixel maps.")
        else:
            st.info(f"{md(m['method'])} gives one number per tile, so this explanation has no pixel maps; "
                    "explain with xmil_lrp, gradient or integrated_gradients for them.")
        return
    tile = st.selectbox("tile", with_maps, format_func=lambda i: f"tile {i} (evidence "
                        f"{float(ex.tiles.loc[ex.tiles['tile_index'] == i, 'evidence'].iloc[0]):+.3g})", key="mil_tile")
    pixels = ex.pixel_map(tile)
    vmax = float(np.abs(pixels).max()) or 1.0
    st.image(colorize(pixels, vmax), caption=f"pixel relevance of tile {tile} (tile sum {pixels.sum():+.3g}; "
             f"{legend_words(SLIDE_CMAP, vmax)})", width=320)
    row = ex.tiles.loc[ex.tiles["tile_index"] == tile]
    if "pixel_map_to_evidence" in row and np.isfinite(float(row["pixel_map_to_evidence"].iloc[0])):
        st.caption(f"The pixel map of tile {tile} sums to {float(row['pixel_map_to_evidence'].iloc[0]):.4f} × its "
                   f"evidence ({float(row['pixel_map_sum'].iloc[0]):+.4g} of {float(row['evidence'].iloc[0]):+.4g}).")


def _sums_caption(sums: dict, n_maps: int) -> str:
    """How the explanation adds up, from the manifest's ``sums`` (docs/mil.md, "Maps that add up")."""
    text = (f"Σ tile evidence {sums['evidence_sum']:+.4g} against the target logit {sums['target_logit']:+.4g}"
            + (f" (ratio {sums['evidence_to_logit']:.4f})" if sums.get("evidence_to_logit") is not None else ""))
    if n_maps:
        within = n_maps - int(sums.get("pixel_maps_off_by_more_than_1_percent") or 0)
        text += (f"; {within} of {n_maps} pixel maps sum to their tile's evidence within 1 % (ratios "
                 f"{sums['pixel_map_to_evidence_min']:.4f} to {sums['pixel_map_to_evidence_max']:.4f})")
    return text + "."
