"""Text page of the app: type sentences, see word relevance (thin: library calls only)."""
from __future__ import annotations

from pathlib import Path

EXAMPLES = ("the hotel was not clean , but the staff were friendly .\n"
            "the sequel is never boring .\n"
            "I didn't expect much, but the coffee was really good.")


def model_folders(model_dir) -> list[Path]:
    """The text models the page offers, the one shown first (a transformer) first
    (:func:`lrp_captum.text.model_folders.find_text_models`); a folder that leads outside
    ``model_dir`` (symbolic link) is not offered."""
    from lrp_captum.text.model_folders import find_text_models
    from lrp_captum.viewer.paths import is_inside

    return [p for p in find_text_models(model_dir) if is_inside(p, Path(model_dir))]


def text_composites() -> list[str]:
    """Registered composites that apply to token embeddings (none that needs pixel bounds)."""
    from lrp_captum.core.composites import composite_needs_bounds, list_composites

    return [c for c in list_composites() if not composite_needs_bounds(c)]


def render_text_page(st, model_dir) -> None:
    """Explain sentences with a model saved by ``lrp-captum text train-demo --out DIR``
    (word-CNN or MiniLM transformer) or any Hugging Face classifier folder.

    Parameters
    ----------
    st : the ``streamlit`` module
    model_dir : path
        A model folder, or a folder of model folders (the page offers each).
    """
    from lrp_captum.text.attribute import ATTENTION_METHODS, METHODS, default_composite
    from lrp_captum.text.explain import explain_text
    from lrp_captum.text.model_folders import accuracy_report, load_text_model
    from lrp_captum.text.render import explanations_html, explanations_json
    from lrp_captum.text.transformer import is_hugging_face_model
    from lrp_captum.viewer.escaping import streamlit_literal as md
    from lrp_captum.viewer.page_messages import failure_message, page_message
    from lrp_captum.viewer.paths import UnsafePathError, check_inside

    roots = {Path(model_dir): "the text model folder"}
    folders = model_folders(model_dir)
    if not folders:
        st.info("No text model in the text model folder (`--text-model`): run `lrp-captum text train-demo "
                "--out DIR` (word-CNN) or `lrp-captum text train-demo --arch minilm` (transformer) first.")
        return
    names = [p.name for p in folders]
    chosen = folders[names.index(st.selectbox("model", names))] if len(folders) > 1 \
        else folders[0]
    try:
        check_inside(model_dir, [chosen], what="the text model folder")
        model, tokenizer, info = _cached_model(st, load_text_model)(str(chosen))
    except (UnsafePathError, OSError, ValueError) as exc:
        st.error(page_message(exc, roots))
        return
    transformer = is_hugging_face_model(model)
    accuracies = accuracy_report(info)  # each named for what it was measured on
    cols = st.columns(2 + len(accuracies))
    cols[0].metric("model", "transformer" if transformer else type(model).__name__)
    cols[1].metric("classes", md(", ".join(info.get("class_names", []))))
    for col, (name, value) in zip(cols[2:], accuracies):
        col.metric(f"accuracy: {md(name)}", f"{value:.3f}")

    text = st.text_area("Sentences (one per line)", EXAMPLES, height=120)
    c1, c2, c3, c4 = st.columns(4)
    methods = [m for m in METHODS if m != "random" and
               (transformer or m not in ATTENTION_METHODS)]
    method = c1.selectbox("method", methods)
    composites = text_composites()
    default = default_composite(model)
    composite = c2.selectbox("LRP composite", composites,
                             index=composites.index(default) if default in composites else 0,
                             disabled=method != "lrp")
    target = c3.selectbox("explain class", ["predicted"] + list(info.get("class_names", [])))
    scale = c4.radio("colour scale", ["text", "shared"],
                     format_func=lambda s: "per text" if s == "text" else "shared by all")
    texts = [line for line in text.splitlines() if line.strip()] or [""]
    try:
        explanations = explain_text(model, tokenizer, texts, composite=composite, method=method,
                                    target=None if target == "predicted" else target)
    except (KeyError, ValueError, TypeError) as exc:
        st.error(failure_message(f"Cannot explain with {method}" + (f" ({composite})" if method == "lrp" else ""),
                                 exc, roots))
        return
    for warning in dict.fromkeys(w for e in explanations for w in e.warnings):  # on the page, not in a log
        st.warning(page_message(warning, roots))
    page = explanations_html(explanations, title="Word relevance", scale=scale)
    if hasattr(st, "html"):
        st.html(page)
    else:  # pragma: no cover - older Streamlit
        st.markdown(page, unsafe_allow_html=True)
    st.download_button("JSON", explanations_json(explanations), file_name="word_relevance.json",
                       mime="application/json")
    st.download_button("HTML", page, file_name="word_relevance.html", mime="text/html")


def _cached_model(st, loader):
    cache = getattr(st, "cache_resource", None)
    return cache(loader) if cache else loader
