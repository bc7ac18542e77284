"""Slide files, and the name of each one's result folder.

A slide's result goes to a folder named after the slide's file name without its suffix
(``case_1.svs`` -> ``case_1``), by ``lrp-captum slide cohort``, by the app's slide list, and by
the paths the docs suggest for ``slide explain --out``. Two slide files in one folder whose names
differ only in the suffix (``case.mrxs`` next to a converted ``case.tif``), or only in case
(``A.svs``, ``a.tif``: one folder on macOS and Windows), would share that folder; neither then
gets one (:class:`ResultNameClash`), so that one slide's result can never replace the other's.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Iterable

__all__ = ["SLIDE_SUFFIXES", "ResultNameClash", "is_slide_name", "slide_files_in", "result_names", "result_name"]

#: file suffixes of the slide formats OpenSlide reads
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".vms", ".vmu", ".scn", ".mrxs", ".svslide", ".bif")


class ResultNameClash(ValueError):
    """Two slide files would share one result folder; the message names both and what to do."""

    def __init__(self, first: Path, second: Path, name: str):
        super().__init__(f"{first.name} and {second.name} would share the result folder {name}/; rename one of "
                         f"them (or move it to its own folder) so that each slide has its own result")
        self.slides = (first, second)


def is_slide_name(name: str) -> bool:
    """Whether a file name is a slide's: a slide suffix, not hidden."""
    return not name.startswith(".") and Path(name).suffix.lower() in SLIDE_SUFFIXES


def slide_files_in(folder: str | Path) -> list[Path]:
    """The slide files directly inside ``folder`` (not in subfolders), sorted by name."""
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries if is_slide_name(e.name) and e.is_file())


def _key(path: Path) -> str:
    return path.stem.casefold()


def result_names(slides: Iterable[str | Path]) -> dict[Path, str]:
    """The result folder name of each slide file of ``slides`` (as given, in order).

    Raises :class:`ResultNameClash` naming the first two slides whose folders would be the same.
    """
    names: dict[Path, str] = {}
    seen: dict[str, Path] = {}
    for slide in map(Path, slides):
        other = seen.setdefault(_key(slide), slide)
        if other != slide:
            raise ResultNameClash(other, slide, slide.stem)
        names[slide] = slide.stem
    return names


@lru_cache(maxsize=256)
def _names_in(folder: str, mtime_ns: int) -> dict[str, tuple[Path, ...]]:
    """The slide files of ``folder`` by result-folder key (re-read when the folder changes)."""
    found: dict[str, list[Path]] = {}
    for slide in slide_files_in(folder):
        found.setdefault(_key(slide), []).append(slide)
    return {k: tuple(v) for k, v in found.items()}


def result_name(slide: str | Path) -> str:
    """The result folder name of ``slide``, checked against the other slide files of its folder.

    Raises :class:`ResultNameClash` when another slide file there would get the same name.
    """
    slide = Path(slide)
    folder = slide.parent
    try:
        same = _names_in(str(folder), folder.stat().st_mtime_ns).get(_key(slide), ())
    except OSError:  # no folder to look into: nothing to clash with
        same = ()
    other = next((s for s in same if s.name != slide.name), None)
    if other is not None:
        raise ResultNameClash(*sorted((slide, other)), slide.stem)
    return slide.stem
