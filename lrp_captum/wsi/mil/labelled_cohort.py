"""A cohort with slide labels: the table ``train-mil`` and the faithfulness checks read.

``cohort.csv`` in the cohort folder has one row per slide:

- ``slide`` -- the slide file, relative to the folder (or absolute);
- ``label`` -- the class index, 0 .. C-1;
- ``split`` -- ``train`` or ``test`` (held out: scored after training, never trained on);
- ``class`` (optional) -- the class name of ``label`` (the head's class names; default the index);
- ``mask`` (optional) -- a lesion mask: a level-0 uint8 TIFF, non-zero on lesion pixels
  (:func:`tile_lesion_fraction`).

Other columns are kept out of the way. The synthetic generator
(:func:`lrp_captum.demos.mil_cohort.write_cohort`) writes this format with :func:`write_cohort_csv`;
any real cohort in it works the same.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrp_captum.csv_cells import original_cell, write_csv_rows

__all__ = ["REQUIRED_COLUMNS", "CohortEntry", "read_cohort", "cohort_classes", "write_cohort_csv",
           "tile_lesion_fraction"]

REQUIRED_COLUMNS = ("slide", "label", "split")


@dataclass
class CohortEntry:
    """One row of ``cohort.csv`` with absolute paths (``mask`` None without one)."""

    slide: Path
    mask: Path | None
    label: int
    split: str
    class_name: str | None = None


def read_cohort(cohort) -> list[CohortEntry]:
    """Rows of a cohort's ``cohort.csv`` (``cohort`` is the folder or the CSV file)."""
    path = Path(cohort)
    if path.is_dir():
        path = path / "cohort.csv"
    if not path.is_file():
        raise FileNotFoundError(f"cohort table {path} does not exist; write a cohort with "
                                f"`lrp-captum slide cohort-sample --n N --out DIR`")
    with open(path, newline="") as f:
        rows = [{original_cell(k): original_cell(v) for k, v in r.items()} for r in csv.DictReader(f)]
    missing = set(REQUIRED_COLUMNS) - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"cohort table {path} lacks the columns {sorted(missing)} (needs slide, label, split)")
    base = path.parent
    return [CohortEntry(slide=base / r["slide"], mask=base / r["mask"] if r.get("mask") else None,
                        label=int(r["label"]), split=r["split"], class_name=r.get("class") or None) for r in rows]


def cohort_classes(entries: list[CohortEntry]) -> list[str]:
    """The class names by label index (``class`` column, else the index as text).

    Raises ``ValueError`` when labels are not 0 .. C-1 or a label has two names.
    """
    names: dict[int, str] = {}
    for e in entries:
        name = e.class_name or str(e.label)
        if names.setdefault(e.label, name) != name:
            raise ValueError(f"label {e.label} is called both {names[e.label]!r} and {name!r} in the cohort table")
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"cohort labels must be 0 .. C-1, got {sorted(names)}")
    return [names[k] for k in range(len(names))]


def write_cohort_csv(out_dir, rows: list[dict]) -> Path:
    """Write ``out_dir/cohort.csv`` (complete or not at all) from ``rows`` with at least
    :data:`REQUIRED_COLUMNS`; returns its path."""
    missing = set(REQUIRED_COLUMNS) - set(rows[0] if rows else {})
    if missing:
        raise ValueError(f"cohort rows lack the columns {sorted(missing)}")
    header = list(rows[0])
    return write_csv_rows(Path(out_dir) / "cohort.csv", header, ([r.get(k, "") for k in header] for r in rows))


def tile_lesion_fraction(mask_path, tiles: np.ndarray) -> np.ndarray:
    """(N,) float64 fraction of lesion pixels in each tile's level-0 box (``tiles`` fields x0, y0, w0, h0).

    Boxes are clipped to the mask; the fraction is over the whole box.
    """
    import tifffile

    mask = tifffile.imread(mask_path) > 0
    integral = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = mask.shape
    x0 = np.clip(np.round(tiles["x0"]).astype(np.int64), 0, w)
    y0 = np.clip(np.round(tiles["y0"]).astype(np.int64), 0, h)
    x1 = np.clip(np.round(tiles["x0"] + tiles["w0"]).astype(np.int64), 0, w)
    y1 = np.clip(np.round(tiles["y0"] + tiles["h0"]).astype(np.int64), 0, h)
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return inside / np.maximum(tiles["w0"] * tiles["h0"], 1.0)
