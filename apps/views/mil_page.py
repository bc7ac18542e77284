"""MIL page of the app: slide-level prediction, signed tile evidence, pixel maps of the top tiles.

Thin: reads folders written by ``lrp-captum slide explain-mil`` through :mod:`lrp_captum.wsi.mil.results`.
"""
from __future__ import annotations

from pathlib import Path


def render_mil_page(st, results_dir) -> None:
    """Show a MIL explanation under ``results_dir``: prediction, evidence map (red for, blue
    against, one colour per tile), the strongest tiles and, for a chosen tile, its pixel map."""
    import numpy as np

    from lrp_captum.wsi.mil.results import find_mil_explanations, read_mil_explanation
    from lrp_captum.visualization.colormaps import colorize

    results_dir = Path(results_dir)
    folders = find_mil_explanations(results_dir) if results_dir.is_dir() else []
    if not folders:
        st.info(f"No MIL explanations under {results_dir}. Make one with "
                "`lrp-captum slide explain-mil SLIDE --mil HEAD.json --out DIR` (DIR inside the results folder).")
        return
    labels = [str(f.relative_to(results_dir)) if f != results_dir else f.name for f in folders]
    choice = st.selectbox("Explanation", labels, key="mil_result")
    try:
        ex = read_mil_explanation(folders[labels.index(choice)])
    except ValueError as exc:
        st.error(str(exc))
        return
    m = ex.manifest
    target = m["target"]["class_name"]
    cols = st.columns(3)
    cols[0].metric("prediction", m["prediction"]["class_name"])
    cols[1].metric("probability", f"{max(m['prediction']['probabilities']):.2f}")
    cols[2].metric("tiles", m["n_tiles"])
    st.caption(f"{Path(m['slide']['path']).name} · method {m['method']} · evidence for {target} "
               f"(red for, blue against; one colour per tile)")

    left, right = st.columns(2)
    left.image(colorize(ex.evidence_map, m["vmax"]), caption=f"evidence for {target}", width="stretch")
    tiles = ex.tiles.sort_values("evidence_rank")
    right.dataframe(tiles[["tile_index", "row", "col", "evidence", "pixel_map"]].head(12), hide_index=True)

    st.subheader("Tile pixel map")
    with_maps = [int(i) for i in tiles.loc[tiles["pixel_map"], "tile_index"]]
    if not with_maps:
        st.info(f"{m['method']} gives one number per tile, so this explanation has no pixel maps; "
                "explain with xmil_lrp, gradient or integrated_gradients for them.")
        return
    tile = st.selectbox("tile", with_maps, format_func=lambda i: f"tile {i} (evidence "
                        f"{float(ex.tiles.loc[ex.tiles['tile_index'] == i, 'evidence'].iloc[0]):+.3g})", key="mil_tile")
    pixels = ex.pixel_map(tile)
    vmax = float(np.abs(pixels).max()) or 1.0
    st.image(colorize(pixels, vmax), caption=f"pixel relevance of tile {tile} (sum {pixels.sum():+.3g})", width=320)
