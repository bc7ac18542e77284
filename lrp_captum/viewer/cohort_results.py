"""Library side of the app's cohort page: find cohort folders, filter and sort their table, and
link each slide to the slide viewer.

A cohort folder is what ``lrp-captum slide cohort`` writes (see :mod:`lrp_captum.cohort.table`).
The viewer shows a slide ``<rel>`` of the app's ``--slides`` folder with the result in
``<--results>/<rel without suffix>`` (:func:`~lrp_captum.viewer.results.result_dir_for`), so a
cohort row links to the viewer when its slide lies in the slides folder and its outputs are that
result folder -- e.g. for ``lrp-captum slide cohort SLIDES --out RESULTS`` with the app started
as ``lrp-captum app --slides SLIDES --results RESULTS``.
"""
from __future__ import annotations

from pathlib import Path

from lrp_captum.cohort.table import TABLE_CSV, TABLE_PARQUET, read_cohort_table
from lrp_captum.viewer.paths import UnsafePathError, check_inside, is_inside
from lrp_captum.viewer.results import result_dir_for

NO_PREDICTION = "(none)"


def find_cohorts(results_dir: str | Path, max_depth: int = 2) -> list[str]:
    """Cohort folders under ``results_dir`` (itself included), as '/'-separated relative paths.

    ``"."`` stands for ``results_dir`` itself. Hidden folders and symbolic links leaving
    ``results_dir`` are skipped.
    """
    base = Path(results_dir).resolve()
    found = []

    def visit(folder: Path, depth: int):
        if (folder / TABLE_PARQUET).is_file() or (folder / TABLE_CSV).is_file():
            found.append(folder.relative_to(base).as_posix() or ".")
        if depth < max_depth:
            for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
                if child.resolve() != base and is_inside(child, base):
                    visit(child, depth + 1)

    if base.is_dir():
        visit(base, 0)
    return found


def viewer_slide(slide_path, output: str, cohort_dir: Path, slides_dir: Path, results_dir: Path) -> str | None:
    """The viewer's name (path relative to ``slides_dir``) of a cohort slide, or None if it cannot show it.

    None when the slide lies outside ``slides_dir``, or when the viewer would look for its result
    somewhere other than the cohort's ``cohort_dir/output``.
    """
    try:
        rel = Path(slide_path).resolve().relative_to(Path(slides_dir).resolve()).as_posix()
    except ValueError:
        return None
    try:
        if result_dir_for(rel, results_dir, slides_dir).resolve() != (Path(cohort_dir) / str(output)).resolve():
            return None
    except UnsafePathError:  # a result folder the viewer refuses (shared by two slides, or linked out)
        return None
    return rel


def load_cohort(cohort_dir: str | Path, slides_dir: str | Path | None, results_dir: str | Path):
    """The cohort table of ``cohort_dir`` with a ``viewer`` column: the viewer's slide name or missing.

    The table files must lie inside ``results_dir`` (a link out is refused before anything is
    read); without ``slides_dir`` no slide links to the viewer.

    Raises
    ------
    CohortTableError
        When there is no readable table.
    UnsafePathError
        When the cohort folder or its table leads outside ``results_dir``.
    """
    check_inside(results_dir, [cohort_dir, Path(cohort_dir) / TABLE_PARQUET, Path(cohort_dir) / TABLE_CSV], depth=0)
    table = read_cohort_table(cohort_dir)
    table["error"] = table["error"].fillna("") if "error" in table.columns else ""
    if "prediction" not in table.columns:
        table["prediction"] = None
    outputs = table["output"] if "output" in table.columns else table["slide_id"]
    paths = table["path"] if "path" in table.columns else [None] * len(table)
    table["viewer"] = [viewer_slide(p, o, Path(cohort_dir), Path(slides_dir), Path(results_dir))
                       if isinstance(p, str) and slides_dir is not None else None for p, o in zip(paths, outputs)]
    return table


def prediction_labels(table) -> list[str]:
    """The distinct slide predictions in ``table``, with :data:`NO_PREDICTION` for failed/pending rows."""
    values = table["prediction"].astype(object).where(table["prediction"].notna(), NO_PREDICTION)
    return sorted(set(values))


def filter_cohort(table, statuses=None, predictions=None):
    """Rows whose ``status`` is in ``statuses`` and ``prediction`` in ``predictions`` (None: any).

    ``predictions`` may contain :data:`NO_PREDICTION` for rows without a prediction.
    """
    keep = table["status"].isin(list(statuses) if statuses is not None else list(table["status"]))
    if predictions is not None:
        pred = table["prediction"].astype(object).where(table["prediction"].notna(), NO_PREDICTION)
        keep &= pred.isin(list(predictions))
    return table[keep]


def sort_cohort(table, by: str, descending: bool = False):
    """``table`` sorted by column ``by`` (missing values last), ties kept in cohort order."""
    return table.sort_values(by, ascending=not descending, na_position="last", kind="stable")
