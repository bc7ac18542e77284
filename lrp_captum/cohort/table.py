"""The files of a cohort output folder: per-slide records, the cohort table and how to read it.

Layout of a cohort folder ``OUT`` (see docs/cohort.md):

- ``OUT/<slide_id>/`` -- each slide's outputs, in the format of ``lrp-captum slide explain``.
- ``OUT/cohort.csv``, ``OUT/cohort.parquet`` -- the cohort table, one row per slide.
- ``OUT/cohort.json`` -- the cohort manifest: parameters, resources, versions, counts.
- ``OUT/.cohort/<slide_id>.json`` -- the record of each slide's last attempt, written when it
  ends; the table is rebuilt from these, and a rerun skips slides whose record says done.
- ``OUT/cohort.lock`` -- present while a run writes to ``OUT``.
"""
from __future__ import annotations

import json
from pathlib import Path

from lrp_captum.csv_cells import read_csv_frame
from lrp_captum.wsi.outputs import write_json, write_table

RECORDS = ".cohort"
TABLE_CSV, TABLE_PARQUET, MANIFEST = "cohort.csv", "cohort.parquet", "cohort.json"
STATUSES = ("done", "failed", "pending")
# first columns of the table; task summary fields (prediction, frac_<class>, relevance ...) follow
LEAD = ["slide_id", "status", "error", "label", "prediction"]
TAIL = ["n_tiles", "relevance_sum", "relevance_pos", "relevance_neg", "relevance_per_tile", "seconds", "device",
        "host", "attempts", "finished_at", "path", "output"]


class CohortTableError(RuntimeError):
    """A cohort folder has no readable table; the message names the file and says what to do."""


def record_path(out_dir: Path, slide_id: str) -> Path:
    return Path(out_dir) / RECORDS / f"{slide_id}.json"


def write_record(out_dir: Path, slide_id: str, record: dict) -> None:
    path = record_path(out_dir, slide_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, record)


def read_record(out_dir: Path, slide_id: str) -> dict | None:
    """A slide's record, or None when missing or damaged (the slide then simply runs again)."""
    try:
        record = json.loads(record_path(out_dir, slide_id).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def cohort_table(specs, records: dict):
    """One row per slide of ``specs``: its record's fields, or ``status="pending"`` without one.

    Parameters
    ----------
    specs : list of :class:`~lrp_captum.cohort.slides.SlideSpec`, in cohort order.
    records : ``{slide_id: record}``; ``key`` and other bookkeeping fields stay out of the table.
    """
    import pandas as pd

    rows = []
    for s in specs:
        r = {k: v for k, v in (records.get(s.slide_id) or {}).items() if k not in ("key", "pid")}
        rows.append(dict(r, slide_id=s.slide_id, status=r.get("status", "pending"), error=r.get("error", ""),
                         label=s.label, path=str(s.path), output=s.slide_id))
    table = pd.DataFrame(rows)
    middle = sorted(c for c in table.columns if c not in LEAD + TAIL)
    order = [c for c in LEAD + middle + TAIL if c in table.columns]
    return table[order]


def write_cohort_table(out_dir: Path, table) -> None:
    """``cohort.csv`` and ``cohort.parquet`` in ``out_dir``, each written completely or not at all."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_table(Path(out_dir) / TABLE_CSV, table)
    write_table(Path(out_dir) / TABLE_PARQUET, table)


def read_cohort_table(out_dir: str | Path):
    """The cohort table of ``out_dir`` (Parquet if present, else CSV) as a pandas DataFrame.

    Raises
    ------
    CohortTableError
        Neither file exists or the one present cannot be read.
    """
    import pandas as pd

    out = Path(out_dir)
    for name, reader in ((TABLE_PARQUET, pd.read_parquet), (TABLE_CSV, read_csv_frame)):
        path = out / name
        if path.is_file():
            try:
                table = reader(path)
            except Exception as exc:  # pyarrow and pandas raise many types for damaged files
                raise CohortTableError(f"{path} cannot be read ({type(exc).__name__}: {exc}); rerun "
                                       f"`lrp-captum slide cohort` into {out} to rewrite it") from exc
            missing = [c for c in ("slide_id", "status") if c not in table.columns]
            if missing:
                raise CohortTableError(f"{path} lacks column(s) {', '.join(missing)}; it is not a cohort table")
            return table
    raise CohortTableError(f"{out} holds no {TABLE_PARQUET} or {TABLE_CSV}; run `lrp-captum slide cohort ... "
                           f"--out {out}` first")
