"""Which file a slide is, and whether a result was made from it.

Two questions with one answer: a tile cache must not serve bytes of a slide file that has since
been replaced, and an overlay must not be drawn over a slide it was not computed from. Both are
answered from the file's identity (modification time, size, inode) and from what the WSI
pipeline records about the slide in ``manifest.json`` (``manifest["slide"]``: ``bytes``,
``mtime_ns``, ``dimensions``; an OpenSlide ``quickhash`` when the pipeline writes one).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple


class FileIdentity(NamedTuple):
    """What changes when a file is rewritten or replaced (``os.stat`` fields)."""

    mtime_ns: int
    size: int
    inode: int


def file_identity(path: str | Path) -> FileIdentity:
    """Identity of the file at ``path`` now (follows symbolic links)."""
    st = os.stat(path)
    return FileIdentity(st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass(frozen=True)
class SlideCheck:
    """Does a result belong to the slide it is shown on?

    Attributes
    ----------
    verdict : {"same", "changed", "different", "unknown"}
        ``same``: the recorded size, dimensions and time (or content hash) match. ``changed``:
        same size and dimensions but another modification time, so the file was rewritten or
        copied without its times; it may or may not be the same slide. ``different``: another
        size, other dimensions or another content hash; the overlay is not this slide's.
        ``unknown``: the manifest records no slide.
    message : str
        What differs and what to do; empty when ``same``.
    """

    verdict: str
    message: str = ""

    @property
    def overlay_allowed(self) -> bool:
        """False when the result was certainly made from another slide."""
        return self.verdict != "different"


def check_result_slide(manifest: dict, path: str | Path, slide) -> SlideCheck:
    """Compare the slide recorded in a result's manifest with the slide file now at ``path``.

    Parameters
    ----------
    manifest : dict
        The result's ``manifest.json``.
    path : path
        The slide file shown.
    slide : openslide.OpenSlide
        That file, opened (for its level-0 dimensions and OpenSlide's quick hash).

    Returns
    -------
    SlideCheck
    """
    recorded = manifest.get("slide") if isinstance(manifest, dict) else None
    if not isinstance(recorded, dict):
        return SlideCheck("unknown", "This result does not record which slide file it was made from, "
                                     "so it cannot be checked against this slide.")
    now = file_identity(path)
    differences = []
    dims = recorded.get("dimensions")
    if isinstance(dims, (list, tuple)) and len(dims) == 2 and tuple(int(d) for d in dims) != tuple(slide.dimensions):
        differences.append(f"dimensions {dims[0]}×{dims[1]} px then, {slide.dimensions[0]}×{slide.dimensions[1]} now")
    quickhash = recorded.get("quickhash")
    current_hash = slide.properties.get("openslide.quickhash-1")
    if quickhash and current_hash and quickhash != current_hash:
        differences.append("another content hash (openslide.quickhash-1)")
    size = recorded.get("bytes")
    if isinstance(size, int) and size != now.size:
        differences.append(f"{size:,} bytes then, {now.size:,} now")
    if differences:
        return SlideCheck("different", "This result was made from another slide file (" + "; ".join(differences)
                          + "). Its overlay is not shown: explain this slide again.")
    if quickhash and current_hash:
        return SlideCheck("same")  # content hash equal: a copy that lost its times is still the slide
    mtime = recorded.get("mtime_ns")
    if isinstance(mtime, int) and mtime != now.mtime_ns:
        return SlideCheck("changed", "This slide file was modified after its result was made (same size and "
                                     "dimensions, other modification time): the overlay may belong to an earlier "
                                     "version of the slide. Explain it again to be sure.")
    return SlideCheck("same")
