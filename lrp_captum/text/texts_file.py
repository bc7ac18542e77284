"""Files of texts: JSONL to explain (``text`` with optional ``id``, ``target``) or to score
(``text`` and ``label``), and JSONL of explanations.

A line that is not JSON, or JSON of the wrong shape, stops the reading with ``FILE:LINE``: the
file itself is wrong. A line that is well-formed but not valid text -- bytes that are not UTF-8,
a lone surrogate such as ``"\\ud800"`` -- is reported with its line and skipped, so that one bad
text does not cost the others (:class:`SkippedLine`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from lrp_captum.text.encoding import unicode_problem


@dataclass
class TextItem:
    """One text of a file: ``id`` (its own, else its line number), ``target`` or ``label`` when
    given, and its ``line`` (1-based)."""
    id: Any
    text: str
    line: int
    target: Any = None
    label: Optional[str] = None


@dataclass
class SkippedLine:
    """A line that holds no usable text, and why (``where`` is ``FILE:LINE``)."""
    id: Any
    line: int
    where: str
    reason: str

    def message(self) -> str:
        return f"{self.where}: {self.reason}; skipped"


def read_texts_file(path) -> tuple[list[TextItem], list[SkippedLine]]:
    """Texts of a JSONL file: each line a JSON string or an object with a string ``text`` and
    optional ``id``, ``target``, ``label``; blank lines are ignored.

    Returns
    -------
    items : list of TextItem
        In file order.
    skipped : list of SkippedLine
        Lines that are not valid text (not UTF-8, lone surrogates), each with its reason.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``FILE:LINE``: a line is not JSON, or not a string or an object with a string ``text``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    items, skipped = [], []
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            skipped.append(SkippedLine(number, number, where, f"not UTF-8 (byte {exc.start + 1} of the line)"))
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
        if isinstance(obj, str):
            obj = {"text": obj}
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise ValueError(f"{where}: expected a JSON string or an object with a string field 'text'")
        item_id = obj.get("id", number)
        problem = unicode_problem(obj["text"])
        if problem:
            skipped.append(SkippedLine(item_id, number, where, f"the text is not valid Unicode: {problem}"))
            continue
        items.append(TextItem(item_id, obj["text"], number, obj.get("target"), obj.get("label")))
    return items, skipped


def explanations_jsonl(items: Sequence[TextItem], explanations: Sequence,
                       skipped: Sequence[SkippedLine] = ()) -> str:
    """JSONL of explanations, one line per input line in file order: ``id`` plus every field of
    the explanation of each item, ``{"id", "line", "error"}`` for each skipped line."""
    rows = [(it.line, {"id": it.id, **e.to_dict()}) for it, e in zip(items, explanations)]
    rows += [(s.line, {"id": s.id, "line": s.line, "error": s.reason}) for s in skipped]
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for _, row in sorted(rows, key=lambda r: r[0]))


def write_explanations_jsonl(path, items: Sequence[TextItem], explanations: Sequence,
                             skipped: Sequence[SkippedLine] = ()) -> Path:
    """Write :func:`explanations_jsonl` to ``path`` (UTF-8; its folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(explanations_jsonl(items, explanations, skipped), encoding="utf-8")
    return path
