"""Word-level relevance for text classifiers: the word-CNN demo on offline MiniLM embeddings,
Hugging Face transformers (the MiniLM demo classifier), VADER-derived and generated data.

>>> from lrp_captum.text import explain_text, train_demo_model
>>> model, tokenizer, report = train_demo_model()
>>> explain_text(model, tokenizer, "the hotel was not clean .").word_relevance
"""
from lrp_captum.text.explain import TextExplanation, explain_text
from lrp_captum.text.model_folders import load_text_model
from lrp_captum.demos.text_wordcnn import train_demo_model

__all__ = ["explain_text", "TextExplanation", "train_demo_model", "load_text_model"]
