"""The slides of a cohort: a folder of slide files, or a CSV listing them.

A CSV has a ``path`` column (absolute, or relative to the CSV's folder) and optional ``slide_id``,
``label`` and ``mpp`` (µm per level-0 pixel, for slides that do not record it) columns. A folder
contributes every slide file directly inside it (not in subfolders). Each slide's outputs go to
``<out>/<slide_id>/``, so ids must be unique, non-empty folder names; a slide without an explicit
id gets its result folder's name (:func:`lrp_captum.wsi.slide_files.result_names`: the file name
without its suffix, the name the app looks for), and two slides that would share one are refused.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from lrp_captum.wsi.slide_files import SLIDE_SUFFIXES, ResultNameClash, result_names, slide_files_in
from lrp_captum.wsi.slide_options import RESOLUTION

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")


class CohortInputError(ValueError):
    """The cohort's slide list is unusable; the message names the file/row and says what to do."""


@dataclass(frozen=True)
class SlideSpec:
    """One slide of a cohort.

    Attributes
    ----------
    slide_id : folder name of the slide's outputs under the cohort's output folder.
    path : absolute path of the slide file.
    label : optional study label (carried into the cohort table, never used by the model).
    mpp : µm per level-0 pixel to use when the slide does not record it (None: from the file).
    """

    slide_id: str
    path: Path
    label: str | None = None
    mpp: float | None = None


def _check_id(slide_id: str, where: str) -> str:
    if not _SAFE_ID.match(slide_id) or slide_id in (".", ".."):
        raise CohortInputError(f"{where}: slide_id {slide_id!r} cannot be a folder name; use letters, digits, "
                               f"'.', '_' and '-' only, starting with a letter or digit")
    return slide_id


def _used_twice(source: Path, slide_id: str, first: Path, second: Path) -> CohortInputError:
    return CohortInputError(f"{source}: slide_id {slide_id!r} is used by both {first} and {second}; list the "
                            f"slides in a CSV with a unique slide_id column")


def _check_unique(specs: list[SlideSpec], source: Path) -> list[SlideSpec]:
    seen: dict[str, Path] = {}
    for s in specs:
        if s.slide_id in seen:
            raise _used_twice(source, s.slide_id, seen[s.slide_id], s.path)
        seen[s.slide_id] = s.path
    return specs


def _result_names(paths: list[Path], source: Path) -> dict[Path, str]:
    """The result folder name of each slide (the app's), or the refusal of two that share one."""
    try:
        return result_names(paths)
    except ResultNameClash as exc:
        first, second = exc.slides
        raise _used_twice(source, second.stem, first, second) from None


def _from_folder(folder: Path) -> list[SlideSpec]:
    paths = slide_files_in(folder)
    if not paths:
        raise CohortInputError(f"{folder} holds no slide files ({', '.join(SLIDE_SUFFIXES)}); pass a folder "
                               f"of slides or a CSV with a 'path' column")
    names = _result_names(paths, folder)
    return [SlideSpec(_check_id(names[p], str(p)), p.resolve()) for p in paths]


def _cell(value) -> str | None:
    """A CSV cell as stripped text, None when empty (pandas reads empty cells as NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _from_csv(csv: Path) -> list[SlideSpec]:
    import pandas as pd

    try:
        table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises several parser error types
        raise CohortInputError(f"{csv} cannot be read as CSV ({exc})") from None
    if "path" not in table.columns:
        raise CohortInputError(f"{csv} has no 'path' column (columns: {', '.join(table.columns)}); add one "
                               f"with a slide file per row")
    rows = []
    for i, row in enumerate(table.to_dict("records"), start=2):  # row 1 is the header
        where = f"{csv} line {i}"
        path = _cell(row.get("path"))
        if path is None:
            raise CohortInputError(f"{where}: empty 'path'")
        p = Path(path).expanduser()
        p = (p if p.is_absolute() else csv.parent / p).resolve()
        mpp = _cell(row.get("mpp"))
        if mpp is not None:
            try:
                mpp = float(mpp)
            except ValueError:
                raise CohortInputError(f"{where}: mpp {mpp!r} is not a number (µm per level-0 pixel)") from None
            if not (mpp > 0 and math.isfinite(mpp)):
                raise CohortInputError(f"{where}: mpp must be a positive number of µm per pixel, got {mpp}")
            try:  # the range every slide resolution is checked against (--slide-mpp)
                mpp = RESOLUTION.check(mpp)
            except ValueError as exc:
                raise CohortInputError(f"{where}: mpp {exc}") from None
        rows.append((where, _cell(row.get("slide_id")), p, _cell(row.get("label")), mpp))
    if not rows:
        raise CohortInputError(f"{csv} lists no slides")
    names = _result_names([p for _, given, p, _, _ in rows if given is None], csv)
    return _check_unique([SlideSpec(_check_id(given or names[p], where), p, label, mpp)
                          for where, given, p, label, mpp in rows], csv)


def read_slides(source: str | Path) -> list[SlideSpec]:
    """The slides of a cohort from a folder or a CSV file (see the module docstring).

    Missing or unreadable slide files are not an error here: each is recorded as a failed slide
    when the cohort runs, so one bad file never stops the others.

    Raises
    ------
    CohortInputError
        ``source`` does not exist, lists no slides, lacks a ``path`` column, has a bad ``mpp`` or
        a duplicate/unsafe ``slide_id``.
    """
    src = Path(source).expanduser()
    if src.is_dir():
        return _from_folder(src.resolve())
    if src.is_file():
        if src.suffix.lower() != ".csv":
            raise CohortInputError(f"{src} is neither a folder nor a .csv file; pass a folder of slides or a CSV "
                                   f"with a 'path' column")
        return _from_csv(src.resolve())
    raise CohortInputError(f"{src} does not exist; pass a folder of slides or a CSV with a 'path' column")
