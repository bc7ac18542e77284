"""EEG page of the app: browse results of ``lrp-captum eeg explain`` (thin: library calls only).

Every file of the chosen result is checked to lie inside the EEG results folder before it is read
(:func:`lrp_captum.viewer.paths.check_inside`); values from ``summary.json`` are shown literally,
messages name no absolute path (:func:`lrp_captum.viewer.page_messages.page_message`).
"""
from __future__ import annotations

from pathlib import Path

ROOT_NAME = "the EEG results folder"


def render_eeg_page(st, results_dir) -> None:
    """Show class averages, topomaps and single trials of the EEG relevance under ``results_dir``.

    Parameters
    ----------
    st : the ``streamlit`` module
    results_dir : path
        A folder written by ``lrp-captum eeg explain --out DIR``, or a folder containing such
        folders.
    """
    from lrp_captum.eeg.explain import find_relevance_folders, load_relevance
    from lrp_captum.eeg.plots import plot_channel_time, plot_class_averages, plot_topomaps
    from lrp_captum.viewer.escaping import matplotlib_literal
    from lrp_captum.viewer.escaping import streamlit_literal as md
    from lrp_captum.viewer.page_messages import page_message
    from lrp_captum.viewer.paths import UnsafePathError, check_inside

    results_dir = Path(results_dir)
    roots = {results_dir: ROOT_NAME}
    if not results_dir.is_dir():
        st.info("No EEG results folder: the folder given with `--eeg-results` does not exist. Create one with "
                "`lrp-captum eeg explain EPOCHS-epo.fif --model MODEL_DIR --out DIR`.")
        return
    folders = find_relevance_folders(results_dir)
    if not folders:
        st.info("No EEG relevance in the EEG results folder (`--eeg-results`): run "
                "`lrp-captum eeg explain EPOCHS.fif --model MODEL --out DIR` first.")
        return
    labels = [str(f.relative_to(results_dir)) if f != results_dir else f.name for f in folders]
    choice = st.selectbox("Result", labels)
    folder = folders[labels.index(choice)]
    try:
        check_inside(results_dir, [folder], depth=1, what=ROOT_NAME)
        epochs, evokeds, summary = load_relevance(folder)
    except (UnsafePathError, OSError, ValueError) as exc:
        st.error(page_message(exc, roots))
        return

    truth = summary.get("ground_truth") or {}
    cols = st.columns(3)
    cols[0].metric("epochs", len(epochs))
    # an accuracy is shown only with the split it was measured on (held-out before training)
    for key, label in (("held_out_accuracy", "held-out accuracy"),
                       ("training_accuracy", "training accuracy")):
        if summary.get(key) is not None:
            cols[1].metric(label, f"{summary[key]:.3f}")
            break
    if truth:
        cols[2].metric("ground-truth concentration", f"{truth['ratio']:.1f}x")
    if summary.get("composite"):
        st.caption(f"composite {md(summary['composite'])}, target {md(summary.get('target'))}; "
                   f"relevance of {md(summary.get('figures_of', 'epochs of unknown split'))}")
    if summary.get("at_chance"):
        st.warning("The model is at chance level on these epochs: its relevance maps do not "
                   "show what distinguishes the classes. Do not interpret them.")

    t0, t1 = float(epochs.times[0]), float(epochs.times[-1])
    default = (truth["tmin"], truth["tmax"]) if truth else (t0, t1)
    window = st.slider("time window (s)", t0, t1, (float(default[0]), float(default[1])),
                       step=float(epochs.times[1] - epochs.times[0]))
    highlight = truth.get("channels", [])

    st.subheader("Class averages")
    st.pyplot(plot_class_averages(evokeds, window, highlight))

    st.subheader("Topomaps")
    name = st.selectbox("class", list(evokeds))
    times = st.multiselect("time points (s)", [round(float(t), 2) for t in epochs.times],
                           default=[round(float(t), 2) for t in
                                    epochs.times[len(epochs.times) // 4::len(epochs.times) // 4][:3]])
    st.pyplot(plot_topomaps(evokeds[name], sorted(times), [window], highlight, title=matplotlib_literal(name)))

    st.subheader("Single trial")
    index = st.number_input("trial", min_value=0, max_value=len(epochs) - 1, value=0)
    row = epochs.metadata.iloc[int(index)] if epochs.metadata is not None else None
    title = f"trial {int(index)}"
    if row is not None and "class_name" in row:
        title += f" ({row['class_name']}, predicted {row.get('predicted')})"
    st.pyplot(plot_channel_time(epochs[int(index)].average(), window=window,
                                highlight=highlight, title=matplotlib_literal(title)))
