"""Word-level relevance for text classifiers: the word-CNN on offline MiniLM embeddings and
Hugging Face transformers (e.g. the MiniLM demo classifier), loaded from model folders.

>>> from lrp_captum.text import explain_text, load_text_model
>>> model, tokenizer, info = load_text_model("demo_output/text_minilm")
>>> explain_text(model, tokenizer, "the hotel was not clean .").word_relevance

The demo models are trained by ``lrp-captum text train-demo`` (:mod:`lrp_captum.demos`).
"""
from lrp_captum.text.explain import TextExplanation, explain_text
from lrp_captum.text.model_folders import load_text_model

__all__ = ["explain_text", "TextExplanation", "load_text_model"]


def __getattr__(name: str):
    # train_demo_model, the demo trainer, is lrp_captum.demos.text_wordcnn's (0.1 exported it here)
    from lrp_captum.deprecated_paths import moved_name

    return moved_name(__name__, name)
