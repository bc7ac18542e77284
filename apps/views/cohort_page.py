"""Cohort page: the table of a cohort run (``lrp-captum slide cohort``), sorted and filtered by
status or prediction, each slide one click from the slide viewer.

The table files must lie inside the results folder (``load_cohort`` checks them before reading);
names from the file system are shown literally, messages name no absolute path.
"""
from __future__ import annotations

from urllib.parse import quote

from lrp_captum.cohort.table import STATUSES, CohortTableError
from lrp_captum.viewer.cohort_results import filter_cohort, find_cohorts, load_cohort, prediction_labels, sort_cohort
from lrp_captum.viewer.escaping import streamlit_literal as md
from lrp_captum.viewer.page_messages import page_message
from lrp_captum.viewer.paths import UnsafePathError
from lrp_captum.wording import counted

# the slide viewer is the app's default page, served at the app's root ("./" from this page);
# its own url_path ("slides") is not a path Streamlit serves on a fresh load
VIEWER_URL = "./?slide={}"
# first columns shown; the rest of the cohort table follows
SHOWN = ["viewer", "slide_id", "status", "prediction", "n_tiles", "error"]


def _viewer_url(rel) -> str | None:
    return VIEWER_URL.format(quote(rel)) if isinstance(rel, str) else None  # missing: None or NaN


def render_cohort_page(st, cfg) -> None:
    """Render the cohort page with ``st`` (the streamlit module) and an ``AppConfig``."""
    roots = {cfg.results_dir: "the results folder"}
    cohorts = find_cohorts(cfg.results_dir)
    if not cohorts:
        st.info("No cohort in the results folder (`--results`). Run `lrp-captum slide cohort SLIDES --out DIR` "
                "with DIR the results folder (or a folder inside it) to make one.")
        return
    rel = st.selectbox("Cohort", cohorts, key="cohort",
                       format_func=lambda r: "results folder" if r == "." else r) if len(cohorts) > 1 else cohorts[0]
    cohort_dir = cfg.results_dir / rel
    try:
        table = load_cohort(cohort_dir, getattr(cfg, "slides_dir", None), cfg.results_dir)
    except (CohortTableError, UnsafePathError) as exc:
        st.error(page_message(exc, roots))
        return

    counts = {s: int((table["status"] == s).sum()) for s in STATUSES}
    cols = st.columns(4)
    cols[0].metric("Slides", f"{len(table):,}")
    for col, s in zip(cols[1:], STATUSES):
        col.metric(s.capitalize(), f"{counts[s]:,}")

    statuses = [s for s in STATUSES if counts[s]]
    predictions = prediction_labels(table)
    sortable = [c for c in table.columns if c not in ("viewer", "path", "output", "error")]
    f1, f2, f3, f4 = st.columns([2, 2, 2, 1])
    chosen_status = f1.multiselect("Status", statuses, default=statuses, key="cohort_status")
    chosen_pred = f2.multiselect("Prediction", predictions, default=predictions, key="cohort_prediction")
    by = f3.selectbox("Sort by", sortable, index=sortable.index("slide_id"), key="cohort_sort")
    descending = f4.toggle("Descending", key="cohort_descending")
    view = sort_cohort(filter_cohort(table, chosen_status, chosen_pred), by, descending)

    view = view.assign(viewer=[_viewer_url(v) for v in view["viewer"]])
    order = [c for c in SHOWN if c in view.columns] + [c for c in view.columns if c not in SHOWN]
    st.dataframe(view[order], hide_index=True, key="cohort_table", column_config={
        "viewer": st.column_config.LinkColumn("Viewer", display_text="open", help="open the slide in the viewer"),
        "error": st.column_config.TextColumn("Error", width="large"),
    })
    linked = view[view["viewer"].notna()]
    if len(linked):
        pick, go = st.columns([3, 1], vertical_alignment="bottom")
        slide_id = pick.selectbox("Open a slide in the viewer", list(linked["slide_id"]), key="cohort_open")
        go.link_button("Open in viewer", linked.set_index("slide_id").loc[slide_id, "viewer"])
    st.caption(f"{len(view):,} of {counted(len(table), 'slide')} shown · table: {md(cohort_dir.name)}/cohort.csv · "
               "fractions are shares of tissue tiles predicted as each class; research/demo output, not a diagnosis.")
    unlinked = int(table["viewer"].isna().sum())
    if unlinked:
        its = "its" if unlinked == 1 else "their"
        st.caption(f"{counted(unlinked, 'slide')} cannot be opened in the viewer: {its} file is outside the app's "
                   f"--slides folder, or {its} outputs are not where the viewer looks (--results/<slide name>). "
                   "Run the cohort on the slides folder with --out set to the results folder to link them.")
