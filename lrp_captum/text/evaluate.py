"""How well word relevance finds the words that decide a label (ground truth from
:mod:`lrp_captum.demos.text_sentences`), and a comparison of LRP with Captum baselines."""
from __future__ import annotations

import statistics
import time
from typing import Sequence

from lrp_captum.text.explain import TextExplanation, explain_text


def positive_relevance(explanation: TextExplanation) -> float:
    """Sum of the positive relevance of all words and special tokens."""
    return (sum(max(r, 0.0) for r in explanation.word_relevance)
            + sum(max(s["relevance"], 0.0) for s in explanation.special_tokens))


def evidence_mass(explanation: TextExplanation, evidence: Sequence[int]) -> float:
    """Share of the positive relevance that lies on the ``evidence`` words.

    ``Σ_{w ∈ evidence} max(R_w, 0) / Σ_{all words and special tokens} max(R, 0)``; 0 when
    nothing is positive.
    """
    total = positive_relevance(explanation)
    if total <= 0:
        return 0.0
    return sum(max(explanation.word_relevance[i], 0.0) for i in set(evidence)) / total


def word_share(explanation: TextExplanation, index: int) -> float:
    """Share of the positive relevance on one word (e.g. the negation)."""
    total = positive_relevance(explanation)
    return max(explanation.word_relevance[index], 0.0) / total if total > 0 else 0.0


def evaluate_explanations(explanations: Sequence[TextExplanation], examples) -> dict:
    """Ground-truth scores of explanations of ``examples`` (SentimentExample, same order).

    Returns
    -------
    dict
        ``n``, ``accuracy`` of the predictions, ``evidence_mass_mean``/``_median``,
        ``evidence_mass_ge_0.7`` (fraction of texts), ``top_word_is_evidence`` (fraction),
        and over the texts where a negation flips the label: ``n_negated``,
        ``negation_share_mean``, ``negation_in_top2`` (fraction); over texts with a
        distractor negation that does not flip: ``distractor_share_mean``.
    """
    masses, top_hits, neg_shares, neg_top2, distractor = [], [], [], [], []
    correct = 0
    for ex, ep in zip(examples, explanations):
        correct += int(ep.predicted == ex.label)
        masses.append(evidence_mass(ep, ex.evidence))
        order = sorted(range(len(ep.words)), key=lambda i: -ep.word_relevance[i])
        top_hits.append(bool(order) and order[0] in ex.evidence)
        if ex.negation_index is not None:
            neg_shares.append(word_share(ep, ex.negation_index))
            neg_top2.append(ex.negation_index in order[:2])
        if ex.distractor_negation_index is not None:
            distractor.append(word_share(ep, ex.distractor_negation_index))
    mean = lambda xs: float(statistics.fmean(xs)) if xs else float("nan")  # noqa: E731
    return {
        "n": len(masses), "accuracy": correct / max(1, len(masses)),
        "evidence_mass_mean": mean(masses),
        "evidence_mass_median": float(statistics.median(masses)) if masses else float("nan"),
        "evidence_mass_ge_0.7": mean([m >= 0.7 for m in masses]),
        "top_word_is_evidence": mean(top_hits),
        "n_negated": len(neg_shares), "negation_share_mean": mean(neg_shares),
        "negation_in_top2": mean(neg_top2),
        "n_distractor": len(distractor), "distractor_share_mean": mean(distractor),
    }


def compare_methods(model, tokenizer, examples, methods: Sequence[str] = (
        "lrp", "input_x_gradient", "integrated_gradients"), composite=None,
        batch_size: int = 64) -> list[dict]:
    """Explain the predicted class of every example with each method and score it.

    Returns one row per method: ``{"method", "seconds", **evaluate_explanations(...)}``.
    """
    rows = []
    texts = [e.text for e in examples]
    for method in methods:
        start = time.perf_counter()
        explanations = explain_text(model, tokenizer, texts, composite=composite, method=method,
                                    batch_size=batch_size)
        seconds = time.perf_counter() - start
        name = f"lrp ({explanations[0].composite})" if method == "lrp" and explanations \
            else method
        rows.append({"method": name, "seconds": seconds,
                     **evaluate_explanations(explanations, examples)})
    return rows


def format_table(rows: list[dict], columns: Sequence[str] = (
        "method", "accuracy", "evidence_mass_mean", "evidence_mass_median",
        "evidence_mass_ge_0.7", "top_word_is_evidence", "negation_share_mean",
        "negation_in_top2", "distractor_share_mean", "seconds")) -> str:
    """A Markdown table of :func:`compare_methods` rows."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def labelled_accuracy(model, tokenizer, path) -> dict:
    """Accuracy of ``model`` on a labelled JSONL file (``text`` and ``label``, a class name).

    Returns
    -------
    dict
        ``file`` (its name), ``n`` (texts scored), ``accuracy``, ``sha256`` of the file (so a
        record says which version was scored) and ``skipped`` (lines that are not valid text).

    Raises
    ------
    ValueError
        A line without a ``label`` that names one of the model's classes (``FILE:LINE``), or no
        text to score.
    """
    import hashlib
    from pathlib import Path

    from lrp_captum.text.explain import class_names_of, predict_proba
    from lrp_captum.text.texts_file import read_texts_file

    items, skipped = read_texts_file(path)
    names = class_names_of(model)
    for it in items:
        if it.label not in names:
            raise ValueError(f"{path}:{it.line}: label {it.label!r} is not a class of the model "
                             f"({', '.join(names)})")
    if not items:
        raise ValueError(f"{path}: no labelled text to score")
    predicted = predict_proba(model, tokenizer, [it.text for it in items]).argmax(1).tolist()
    correct = sum(names[p] == it.label for p, it in zip(predicted, items))
    return {"file": Path(path).name, "n": len(items), "accuracy": correct / len(items),
            "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(), "skipped": len(skipped)}
