"""Word-level LRP for text classifiers: offline MiniLM embeddings, VADER-derived data, a word-CNN.

>>> from lrp_captum.text import explain_text, train_demo_model
>>> model, tokenizer, report = train_demo_model()
>>> explain_text(model, tokenizer, "the hotel was not clean .").word_relevance
"""
from .explain import TextExplanation, explain_text
from .train import load_text_model, train_demo_model

__all__ = ["explain_text", "TextExplanation", "train_demo_model", "load_text_model"]
