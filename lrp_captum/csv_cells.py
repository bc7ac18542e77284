"""Writing CSV files that a spreadsheet opens as data, never as formulas.

Excel, LibreOffice and Google Sheets run a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a
formula (and a leading tab or carriage return is dropped before they look), so a label such as
``=HYPERLINK("http://host/x", "open")`` copied from a user's table into ``cohort.csv`` would
become a live link or worse (CSV injection). Every CSV the project writes goes through
:func:`write_csv_rows` or :func:`write_csv_frame`: a text cell that starts with one of
:data:`FORMULA_PREFIXES` and is not a plain number gets a leading ``'`` (what the spreadsheets
themselves use to mark a cell as text); numbers, and text that reads as a number such as ``-1.5``,
are written unchanged, so numeric columns stay numeric. The project reads its own files back
with :func:`read_csv_frame` (or :func:`original_cell`), which undoes exactly that: a class named
``+ve`` is ``'+ve`` in ``tiles.csv`` and ``+ve`` again when the cohort counts its tiles.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["FORMULA_PREFIXES", "neutral_cell", "original_cell", "write_csv_rows", "write_csv_frame", "read_csv_frame"]

#: what makes a spreadsheet read a text cell as a formula
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


def _runs(text: str) -> bool:
    return text.startswith(FORMULA_PREFIXES) and not _NUMBER.fullmatch(text)


def _escaped(text: str) -> bool:
    """Whether ``text`` reads as a neutralised cell: ``'`` before a cell that runs or is escaped."""
    return text.startswith("'") and (_runs(text[1:]) or _escaped(text[1:]))


def neutral_cell(value):
    """``value`` for a CSV cell: text that a spreadsheet would take for a formula prefixed with
    ``'`` (and so is text that already looks like that, so :func:`original_cell` undoes exactly
    this); anything else (numbers, ``None``, other text) unchanged."""
    if isinstance(value, str) and (_runs(value) or _escaped(value)):
        return "'" + value
    return value


def original_cell(value):
    """The value :func:`neutral_cell` was given (for reading the project's own CSV files back)."""
    return value[1:] if isinstance(value, str) and _escaped(value) else value


def write_csv_rows(path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    """Write ``header`` and ``rows`` (sequences of cells) to ``path`` with every cell
    :func:`neutral_cell`; the file is complete or absent (written under a temporary name)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow([neutral_cell(c) for c in header])
            w.writerows([neutral_cell(c) for c in row] for row in rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_csv_frame(path, table, float_format: str | None = None) -> Path:
    """Write a pandas ``DataFrame`` to ``path`` (without its index) with every text cell and column
    name :func:`neutral_cell`; numeric columns are written as numbers (with ``float_format``)."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    safe = table.rename(columns=lambda c: neutral_cell(str(c)))
    for i, column in enumerate(safe.columns):
        values = safe.iloc[:, i]
        if not (is_numeric_dtype(values) or is_bool_dtype(values)):
            safe.isetitem(i, values.map(neutral_cell))
    # "\r\n" ends the lines, so a cell holding a lone "\r" is quoted too (with "\n" it is not, and a
    # reader would start a new row inside the cell)
    safe.to_csv(path, index=False, float_format=float_format, lineterminator="\r\n")
    return Path(path)


def read_csv_frame(path, **read_csv):
    """A CSV file written by :func:`write_csv_frame` as a pandas ``DataFrame``, every text cell and
    column name :func:`original_cell` (``read_csv``: passed to ``pandas.read_csv``)."""
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    table = pd.read_csv(path, **read_csv)
    table = table.rename(columns=lambda c: original_cell(c))
    for i in range(table.shape[1]):
        values = table.iloc[:, i]
        if not (is_numeric_dtype(values) or is_bool_dtype(values)):
            table.isetitem(i, values.map(original_cell))
    return table
