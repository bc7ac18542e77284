"""Escape a value for the place it is written to: a ``<script>`` block, or Streamlit markdown.

Slide names, class names and run parameters come from the file system and from result files, so
they are data an attacker may have chosen (a slide stored as
``x</script><script>alert(1)</script>.svs`` in nested folders). HTML text and attributes use
:func:`html.escape`; the two contexts here need more than that.

Every value a page of the app writes into Streamlit markdown (labels, metric values, captions,
messages, buttons, tabs, expanders, image captions) goes through :func:`streamlit_literal`;
values shown by widgets that render plain text (dataframe cells, select options) go in as they
are. ``tests/test_app_markdown_browser.py`` checks both against what Streamlit renders.
"""
from __future__ import annotations

import json
import re

# Inside <script>, the HTML parser ends the block at "</script" whatever JavaScript thinks, and
# "<!--" changes how it looks for the end; "&" matters in XHTML; U+2028/2029 end a line in older
# JavaScript engines. JSON allows each of them as a \u escape, so the value is unchanged.
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}

# Characters that start markdown syntax anywhere in a line, in CommonMark or in Streamlit's
# extensions (":red[...]" colours, ":material/icon:" and ":emoji:" short codes, "$...$" LaTeX).
_MARKDOWN_SPECIAL = set("\\`*_{}[]()<>!:~$&\"'")
# Characters that start a block only at the beginning of a line (headings, lists, "1." ordered
# lists, setext underlines, table rows): a value has no line breaks left, so only its first
# character (or the "." / ")" after leading digits) needs the escape; "case_0.tif" stays readable
# in messages.
_BLOCK_START = set("#+-=|.")
_ORDERED_LIST_NUMBER = re.compile(r"\d{1,9}(?=[.)])")

# Streamlit turns some text into markup after backslash escapes are resolved: GFM autolink
# literals (``www.x.y``, ``http://...``, ``a@b.c``) and its short codes ``:streamlit:`` and
# ``:material/...:``. An invisible WORD JOINER (U+2060) inside each pattern breaks it.
_WORD_JOINER = "\u2060"
_TEXT_PATTERNS = re.compile(r"(?i)(?<=www)(?=\.)|(?<=:)(?=//)|(?<=@)|(?<=:)(?=streamlit:|material[/_])")


def json_for_script(value) -> str:
    """``value`` as a JSON literal that is safe to place inside an HTML ``<script>`` element.

    Parameters
    ----------
    value : JSON-serialisable
        Any value ``json.dumps`` accepts.

    Returns
    -------
    str
        JSON text without the characters ``<``, ``>``, ``&``, U+2028 and U+2029 (each written
        as its ``\\uXXXX`` escape); ``json.loads`` of it gives back ``value``.
    """
    text = json.dumps(value, ensure_ascii=False)
    return "".join(_SCRIPT_UNSAFE.get(ch, ch) for ch in text)


def markdown_literal(text) -> str:
    """``text`` escaped so that Streamlit's markdown (captions, errors, labels) shows it as typed.

    Every ASCII punctuation character that can start markdown syntax gets a backslash (a valid
    CommonMark escape for any ASCII punctuation): inline syntax anywhere, block syntax (``#``,
    ``-``, ``+``, ``1.``) where the text begins. Line breaks become spaces, so a name cannot start
    a heading or a list further on, and leading spaces become ``&#32;`` (no indented code block).

    Parameters
    ----------
    text : object
        Converted with ``str``.

    Returns
    -------
    str
    """
    line = "".join(" " if ch in "\r\n\u2028\u2029" else ch for ch in str(text))
    body = line.lstrip(" \t")
    out = ["&#32;" * (len(line) - len(body))]
    number = _ORDERED_LIST_NUMBER.match(body)
    if number:
        out.append(number.group())
        body = body[number.end():]
    for i, ch in enumerate(body):
        out.append("\\" + ch if ch in _MARKDOWN_SPECIAL or (i == 0 and ch in _BLOCK_START) else ch)
    return "".join(out)


def matplotlib_literal(text) -> str:
    """``text`` for a matplotlib title or label: ``$`` would start mathtext (a parse error or a formula)."""
    return str(text).replace("$", "\\$")


def streamlit_literal(text) -> str:
    """``text`` escaped so that Streamlit shows it as typed wherever it renders markdown.

    :func:`markdown_literal` (same argument, same result type) plus an invisible word joiner
    (U+2060) inside the patterns that Streamlit recognises in text after escapes are resolved
    (autolinks, ``:streamlit:``, ``:material/...:``); the text reads and prints the same.
    """
    return markdown_literal(_TEXT_PATTERNS.sub(_WORD_JOINER, str(text)))
