"""Token deletion: how fast the predicted class fades when the tokens an explanation ranks
first are removed (MoRF), or last (LeRF).

For every text the word tokens (special tokens stay) are ordered by relevance -- most relevant
first for MoRF, least relevant first for LeRF, ties in a seeded random order -- and replaced
step by step by a neutral token (``[UNK]`` by default, so that the length and the positions of
the other tokens do not change). At step ``k`` of ``S`` the first ``round(k · n / S)`` of the
``n`` word tokens are replaced, so texts of any length share the x axis "fraction deleted".
The curve is the model's probability of the explained class (the predicted one) after each
step, computed like :func:`lrp_captum.text.explain_text` computes it (over windows for long
texts).

Summaries (trapezoidal area over the fraction deleted, 0 to 1):

* **MoRF AUC** -- lower is better: removing what the explanation calls relevant destroys the
  prediction quickly;
* **LeRF AUC** -- higher is better: removing what it calls irrelevant keeps the prediction;
* **LeRF − MoRF** -- higher is better, the area between the two curves (a faithful explanation
  separates them; a random one gives about 0).

References: Samek et al. 2017 (region perturbation), Arras et al. 2017 and Achtibat et al. 2024
(token deletion for text).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from lrp_captum.core.model_mode import evaluation_mode
from lrp_captum.devices import model_device
from lrp_captum.evaluation.metrics import perturbation_order
from lrp_captum.text.attribute import ids_to_logits
from lrp_captum.text.encoding import encode_texts
from lrp_captum.text.explain import TextExplanation, input_settings, window_logits
from lrp_captum.text.windows import plan_windows, special_ends

ORDERS = ("morf", "lerf")
REPLACEMENTS = ("unk", "mask", "pad")


@dataclass
class DeletionResult:
    """MoRF and LeRF curves of one method over a set of texts.

    Attributes
    ----------
    fractions : torch.Tensor
        ``(S + 1,)`` fraction of word tokens deleted at each step, 0 to 1.
    morf, lerf : torch.Tensor
        ``(T, S + 1)`` probability of the explained class per text and step.
    """
    fractions: torch.Tensor
    morf: torch.Tensor
    lerf: torch.Tensor

    @property
    def morf_auc(self) -> float:
        """Mean over texts of the area under the MoRF curve (lower is better)."""
        return float(curve_auc(self.fractions, self.morf).mean())

    @property
    def lerf_auc(self) -> float:
        """Mean over texts of the area under the LeRF curve (higher is better)."""
        return float(curve_auc(self.fractions, self.lerf).mean())

    @property
    def abpc(self) -> float:
        """Area between the curves, ``LeRF AUC − MoRF AUC`` (higher is better)."""
        return self.lerf_auc - self.morf_auc


def curve_auc(fractions: torch.Tensor, curves: torch.Tensor) -> torch.Tensor:
    """Trapezoidal area under each curve ``(T, S + 1)`` over ``fractions`` ``(S + 1,)``."""
    widths = fractions[1:] - fractions[:-1]
    return ((curves[:, 1:] + curves[:, :-1]) / 2 * widths).sum(dim=1)


def replacement_id(tokenizer, replacement: str) -> int:
    """Token id of ``"unk"``, ``"mask"`` or ``"pad"`` in the tokenizer's vocabulary."""
    from lrp_captum.text.encoding import backend_tokenizer

    if replacement not in REPLACEMENTS:
        raise ValueError(f"replacement must be one of {', '.join(REPLACEMENTS)}, got "
                         f"{replacement!r}")
    backend = backend_tokenizer(tokenizer)
    for token in {"unk": ("[UNK]", "<unk>"), "mask": ("[MASK]", "<mask>"),
                  "pad": ("[PAD]", "<pad>")}[replacement]:
        tid = backend.token_to_id(token)
        if tid is not None:
            return int(tid)
    raise ValueError(f"the tokenizer has no {replacement} token")


def deletion_curves(model: nn.Module, tokenizer, explanations: Sequence[TextExplanation],
                    n_steps: int = 10, replacement: str = "unk", max_length: int | None = None,
                    batch_size: int = 32, seed: int = 0) -> DeletionResult:
    """MoRF and LeRF token-deletion curves of explanations of one model.

    Parameters
    ----------
    model : nn.Module
        The model that was explained (word-CNN or Hugging Face classifier).
    tokenizer
        Its tokenizer, as given to :func:`~lrp_captum.text.explain_text`.
    explanations : sequence of TextExplanation
        From :func:`~lrp_captum.text.explain_text` with any method; their ``target`` is the
        tracked class and their ``token_relevance`` orders the tokens.
    n_steps : int
        Steps from nothing to every word token deleted.
    replacement : {"unk", "mask", "pad"}
        Token that takes the place of a deleted one.
    max_length : int, optional
        As given to ``explain_text`` (default the model's maximum; longer texts use windows).
    batch_size : int
        Model inputs per forward pass.
    seed : int
        Seeds the order of tokens with equal relevance.

    Returns
    -------
    DeletionResult
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    replace = replacement_id(tokenizer, replacement)
    max_length, pad_id, min_length = input_settings(model, tokenizer, max_length)
    encoded = encode_texts(tokenizer, [e.text for e in explanations])
    fractions = torch.linspace(0, 1, n_steps + 1)
    perturbed: dict[str, list[list[int]]] = {order: [] for order in ORDERS}
    plans = []
    for e, enc in zip(explanations, encoded):
        if e.token_ids[:len(enc.ids)] != enc.ids:
            raise ValueError(f"explanation of {e.text[:40]!r} was made with another tokenizer")
        plan = plan_windows(len(enc.ids), *special_ends(enc.token_word), max_length)
        plans += [plan] * (n_steps + 1)
        words = torch.tensor([i for i, w in enumerate(enc.token_word) if w is not None],
                             dtype=torch.long)
        scores = torch.tensor(e.token_relevance[:len(enc.ids)])[words]
        for order in ORDERS:
            ranked = words[perturbation_order(scores[None], order, seed)[0]] if len(words) \
                else words
            for k in range(n_steps + 1):
                ids = list(enc.ids)
                for i in ranked[:round(k * len(words) / n_steps)].tolist():
                    ids[i] = replace
                perturbed[order].append(ids)
    curves = {}
    targets = torch.tensor([e.target for e in explanations]).repeat_interleave(n_steps + 1)
    with evaluation_mode(model):
        for order in ORDERS:
            logits = window_logits(ids_to_logits(model), perturbed[order], plans,
                                   min_length=min_length, pad_id=pad_id,
                                   batch_size=batch_size, device=model_device(model))
            probs = torch.softmax(logits, dim=1).gather(1, targets[:, None])[:, 0]
            curves[order] = probs.view(len(explanations), n_steps + 1)
    return DeletionResult(fractions, curves["morf"], curves["lerf"])


def format_deletion_table(rows: Sequence[dict]) -> str:
    """Markdown table of ``{"method", "result": DeletionResult | None, "seconds", "note"}``."""
    lines = ["| method | MoRF AUC (lower better) | LeRF AUC (higher better) | LeRF − MoRF "
             "(higher better) | seconds |", "|---|---|---|---|---|"]
    for row in rows:
        r = row.get("result")
        if r is None:
            lines.append(f"| {row['method']} | – | – | – | {row.get('note', '')} |")
            continue
        seconds = f"{row['seconds']:.1f}" if row.get("seconds") is not None else "–"
        lines.append(f"| {row['method']} | {r.morf_auc:.3f} | {r.lerf_auc:.3f} | "
                     f"{r.abpc:+.3f} | {seconds} |")
    return "\n".join(lines)
