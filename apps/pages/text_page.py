"""Text page of the app: type sentences, see word relevance (thin: library calls only)."""
from __future__ import annotations

from pathlib import Path

EXAMPLES = ("the hotel was not clean , but the staff were friendly .\n"
            "the sequel is never boring .\n"
            "i did not expect much , but the coffee was really good .")


def render_text_page(st, model_dir) -> None:
    """Explain sentences with a model saved by ``lrp-captum text train-demo --out DIR``.

    Parameters
    ----------
    st : the ``streamlit`` module
    model_dir : path
        Folder holding ``config.json`` and ``model_state.pt``.
    """
    from lrp_captum.composites import list_composites
    from lrp_captum.text.explain import explain_text
    from lrp_captum.text.render import explanations_html, explanations_json
    from lrp_captum.text.train import CONFIG_FILE, load_text_model

    model_dir = Path(model_dir)
    if not (model_dir / CONFIG_FILE).is_file():
        st.info(f"No text model in {model_dir}: run "
                f"`lrp-captum text train-demo --out {model_dir}` first.")
        return
    model, tokenizer, config = _cached_model(st, load_text_model)(str(model_dir))
    cols = st.columns(3)
    cols[0].metric("held-out accuracy", f"{config.get('test_accuracy', float('nan')):.3f}")
    cols[1].metric("classes", ", ".join(config.get("class_names", [])))
    cols[2].metric("max tokens", config.get("tokenizer", {}).get("max_length", 128))

    text = st.text_area("Sentences (one per line)", EXAMPLES, height=120)
    c1, c2, c3 = st.columns(3)
    method = c1.selectbox("method", ["lrp", "input_x_gradient", "integrated_gradients"])
    # box composites need pixel bounds and make no sense for embeddings
    composites = [c for c in list_composites() if c not in ("epsilon_gamma_box", "seeds")]
    composite = c2.selectbox("LRP composite", composites, index=composites.index("epsilon"),
                             disabled=method != "lrp")
    target = c3.selectbox("explain class", ["predicted"] + list(config.get("class_names", [])))
    texts = [line for line in text.splitlines() if line.strip()] or [""]
    explanations = explain_text(model, tokenizer, texts, composite=composite, method=method,
                                target=None if target == "predicted" else target)
    page = explanations_html(explanations, title="Word relevance")
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
