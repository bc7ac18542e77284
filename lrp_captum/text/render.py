"""Highlighted-text HTML and JSON for :class:`~lrp_captum.text.explain.TextExplanation`.

Colours: red for relevance *for* the explained class, blue for relevance *against* it, the
intensity scaled by the largest ``|relevance|`` of the words -- of each text on its own
(``scale="text"``, the default: colours cannot be compared between texts, and every block says
so) or of all texts on the page (``scale="shared"``). The two hues are the
ends of ColorBrewer's RdBu scale (distinguishable with the common colour-vision deficiencies);
text switches to white on dark backgrounds to keep a WCAG contrast of at least 4.5:1; and the
sign is also shown without colour (solid underline = for, dotted = against) and spelled out in
each word's tooltip / ``aria-label``.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Sequence

from lrp_captum.visualization.colormaps import NEGATIVE_RGB, POSITIVE_RGB  # RdBu #b2182b, #2166ac
from lrp_captum.text.explain import TextExplanation


def relevance_color(value: float, scale: float) -> tuple[str, str]:
    """Background and text colour (CSS hex) for ``value`` on a ``[-scale, scale]`` range."""
    t = 0.0 if scale <= 0 else max(-1.0, min(1.0, value / scale))
    end = POSITIVE_RGB if t >= 0 else NEGATIVE_RGB
    a = abs(t)
    rgb = tuple(round(255 + (c - 255) * a) for c in end)
    background = "#%02x%02x%02x" % rgb
    return background, ("#ffffff" if _luminance(rgb) < 0.18 else "#000000")


def _luminance(rgb) -> float:
    def lin(c):
        c = c / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    def rgb(h):
        return tuple(int(h[i:i + 2], 16) for i in (1, 3, 5))
    la, lb = sorted((_luminance(rgb(foreground)), _luminance(rgb(background))), reverse=True)
    return (la + 0.05) / (lb + 0.05)


_CSS = """
.lrp-text{font-family:system-ui,sans-serif;line-height:2.1;max-width:60em}
.lrp-text .lrp-item{margin:0 0 1.2em 0}
.lrp-text .lrp-meta{font-size:.85em;color:#333}
.lrp-text .w{padding:.1em .15em;border-radius:.2em}
.lrp-text .w.pos{border-bottom:2px solid #000}
.lrp-text .w.neg{border-bottom:2px dotted #000}
.lrp-text .lrp-warn{font-size:.85em;color:#7a4d00}
.lrp-legend{display:flex;align-items:center;gap:.5em;font-size:.85em;margin:.5em 0 1em}
.lrp-legend .bar{width:14em;height:1em;border:1px solid #888;
 background:linear-gradient(to right,#2166ac,#ffffff,#b2182b)}
"""


SCALES = ("text", "shared")


def legend_html(scale: float | None = None) -> str:
    """The colour legend: blue = against, white = 0, red = for the explained class.

    ``scale`` is the relevance of the full colours when all texts share it; ``None`` when every
    text has its own (then each block states its own scale).
    """
    lo = f"−{scale:.3g}" if scale is not None else "−max |R| of the text"
    hi = f"+{scale:.3g}" if scale is not None else "+max |R| of the text"
    return ('<div class="lrp-legend" role="img" aria-label="colour legend: blue, dotted '
            'underline = relevance against the class; red, solid underline = relevance for '
            f'the class; full colour at {html.escape(hi[1:])}">'
            f'<span>{lo} against (blue, dotted)</span><span class="bar"></span>'
            f'<span>{hi} for (red, solid)</span></div>')


def word_scale(explanation: TextExplanation) -> float:
    """Largest ``|relevance|`` among the words of one explanation (0 for no words)."""
    return max((abs(r) for r in explanation.word_relevance), default=0.0)


def _probabilities_text(e: TextExplanation) -> str:
    names = e.class_names if len(e.class_names) == len(e.probabilities) else \
        [str(i) for i in range(len(e.probabilities))]
    return ", ".join(f"{name} {p:.2f}" for name, p in zip(names, e.probabilities))


#: the parts of :attr:`TextExplanation.logit_split`, as they are named on the page
SPLIT_PARTS = (("words", "words"), ("special_tokens", "special tokens"),
               ("position_type_embeddings", "position/type embeddings"), ("biases", "biases"))


def split_text(explanation: TextExplanation) -> str:
    """``"output 0.92 = words 0.21 + special tokens -0.21 + position/type embeddings 0.03 + biases
    0.89"``: where LRP put the explained output; ``""`` when there is no split."""
    split = explanation.logit_split
    if not split:
        return ""
    parts = " + ".join(f"{name} {split[key]:.3g}" for key, name in SPLIT_PARTS)
    return f"output {split['output']:.3g} = {parts}"


def explanation_html(explanation: TextExplanation, show_meta: bool = True,
                     shared_scale: float | None = None, n_shared: int | None = None) -> str:
    """One text as an HTML fragment: the original text with each word highlighted.

    Parameters
    ----------
    explanation : TextExplanation
    show_meta : bool
        Add the explained/predicted class, the probabilities per class name, the method and
        the colour scale under the text.
    shared_scale : float, optional
        Relevance of the full colours, shared with other texts (``n_shared`` of them); by
        default the text's own largest ``|word relevance|``, stated as not comparable.
    """
    e = explanation
    scale = word_scale(e) if shared_scale is None else float(shared_scale)
    parts, cursor = [], 0
    for word, (start, end), rel in zip(e.words, e.word_spans, e.word_relevance):
        parts.append(html.escape(e.text[cursor:start]))
        bg, fg = relevance_color(rel, scale)
        sign = "pos" if rel > 0 else "neg" if rel < 0 else "zero"
        label = (f"{word}: relevance {rel:+.4f} "
                 f"({'for' if rel > 0 else 'against' if rel < 0 else 'neutral to'} "
                 f"{e.target_name})")
        parts.append(f'<span class="w {sign}" style="background:{bg};color:{fg}" '
                     f'title="{html.escape(label)}" aria-label="{html.escape(label)}">'
                     f'{html.escape(e.text[start:end])}</span>')
        cursor = end
    parts.append(html.escape(e.text[cursor:]))
    body = "".join(parts) if e.words else '<em>(no words)</em>'
    meta = ""
    if show_meta:
        special = ", ".join(f"{s['token']} {s['relevance']:+.3f}" for s in e.special_tokens)
        how = f"LRP ({e.composite})" if e.method == "lrp" else e.method
        if shared_scale is None:
            scale_note = (f"colour scale of this text only: ±{scale:.3g} = full colour "
                          "(not comparable between texts)")
        else:
            scale_note = f"colour scale ±{scale:.3g} shared by all {n_shared} texts"
        split = split_text(e)
        meta = (f'<div class="lrp-meta">explained class: <b>{html.escape(e.target_name)}</b> '
                f'(predicted {html.escape(e.predicted_name)}; probabilities '
                f'{html.escape(_probabilities_text(e))}); {html.escape(how)}; '
                f'{html.escape(scale_note)}; special tokens: '
                f'{html.escape(special) or "none"}</div>'
                + (f'<div class="lrp-meta">where the output went: {html.escape(split)}</div>' if split else ""))
    warns = "".join(f'<div class="lrp-warn" role="note">⚠ {html.escape(w)}</div>'
                    for w in e.warnings)
    return f'<div class="lrp-item"><div>{body}</div>{meta}{warns}</div>'


def explanations_html(explanations: Sequence[TextExplanation], title: str = "Word relevance",
                      scale: str = "text") -> str:
    """A complete HTML page with a legend and one highlighted block per text.

    Parameters
    ----------
    explanations : sequence of TextExplanation
    title : str
    scale : {"text", "shared"}
        ``"text"``: every text scaled by its own largest ``|word relevance|`` (each block says
        so); ``"shared"``: one scale, the largest over all texts, so colours compare.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    shared = max((word_scale(e) for e in explanations), default=0.0) if scale == "shared" \
        else None
    items = "\n".join(explanation_html(e, shared_scale=shared, n_shared=len(explanations))
                      for e in explanations)
    intro = ("Each word's colour shows its relevance for the explained class. "
             + ("One colour scale is shared by all texts, so colours compare between texts."
                if shared is not None else
                "Each text has its own colour scale (its largest absolute word relevance): "
                "colours are not comparable between texts."))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
            f'<body><div class="lrp-text"><h1>{html.escape(title)}</h1>'
            f"<p>{intro}</p>{legend_html(shared)}\n{items}</div></body></html>\n")


def write_html(explanations: Sequence[TextExplanation], path: str | Path, **kwargs) -> Path:
    """Write :func:`explanations_html` to ``path`` (UTF-8)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(explanations_html(explanations, **kwargs), encoding="utf-8")
    return path


def explanations_json(explanations: Sequence[TextExplanation] | TextExplanation,
                      indent: int | None = 2) -> str:
    """JSON text of one explanation (an object) or several (an array)."""
    if isinstance(explanations, TextExplanation):
        return json.dumps(explanations.to_dict(), indent=indent, ensure_ascii=False)
    return json.dumps([e.to_dict() for e in explanations], indent=indent, ensure_ascii=False)


def write_json(explanation: TextExplanation, path: str | Path) -> Path:
    """Write one explanation as :func:`explanations_json` to ``path`` (UTF-8; its folder is
    created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(explanations_json(explanation), encoding="utf-8")
    return path
