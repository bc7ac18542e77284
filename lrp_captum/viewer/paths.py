"""Path safety: every file the app lists, reads or serves must lie under a configured root.

One rule for every page: a path from a browser goes through :func:`resolve_under`; a file or
folder a page reads goes through :func:`check_inside` first (a symbolic link anywhere in it that
leads out of the page's folder refuses it); folders are searched with :func:`files_named`, which
never follows a link out. Containment is :func:`is_inside`, by path components.
Messages name paths relative to their root: the app may be seen by people who need not learn
where on the server its folders are.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath


class UnsafePathError(ValueError):
    """A user-supplied path is absolute, escapes its root, or is otherwise not allowed."""


def resolve_under(root: str | Path, user_path: str | Path) -> Path:
    """Resolve ``user_path`` relative to ``root`` and refuse anything outside it.

    Parameters
    ----------
    root : str or Path
        Configured directory (e.g. ``--slides``). Must exist.
    user_path : str or Path
        Relative path as received from a browser or a widget, ``/``-separated.

    Returns
    -------
    Path
        Absolute, symlink-resolved path that lies inside ``root`` (it may not exist).

    Raises
    ------
    UnsafePathError
        For absolute paths (POSIX or Windows style, drive letters, UNC), ``..`` components,
        NUL bytes, empty paths, or symlinks that resolve outside ``root``.
    """
    text = str(user_path)
    if not text or text.strip() == "" or "\x00" in text:
        raise UnsafePathError(f"empty or invalid path {text!r}")
    posix, windows = PurePosixPath(text), PureWindowsPath(text)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or text.startswith(("/", "\\")):
        raise UnsafePathError(f"absolute paths are not allowed: {text!r}; give a path relative to the configured folder")
    parts = [p for p in text.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafePathError(f"'..' is not allowed in {text!r}; give a path inside the configured folder")
    if not parts:
        raise UnsafePathError(f"path {text!r} names the folder itself, not a file in it")
    base = Path(root).resolve(strict=True)
    target = base.joinpath(*parts).resolve(strict=False)
    if not is_inside(target, base):
        raise UnsafePathError(f"{text!r} resolves outside the configured folder (symbolic link?)")
    return target


def is_inside(path: str | Path, root: str | Path) -> bool:
    """True when ``path``, with every symbolic link resolved, is ``root`` or lies under it.

    The one containment test of the app: compared by path components, so ``results_evil/`` is
    not inside ``results/`` although its name starts with the same characters.
    """
    base = Path(root).resolve()
    target = Path(path).resolve()
    return target == base or base in target.parents


def check_inside(root: str | Path, paths, depth: int | None = None, what: str = "the results folder") -> None:
    """Refuse files that lead outside ``root``: each of ``paths``, and what lies in the folders among them.

    Parameters
    ----------
    root : path
        The page's configured folder.
    paths : iterable of path
        Files or folders the page is about to read (missing ones are skipped).
    depth : int, optional
        How many levels of a folder's entries to check: 0 the folder only, 1 its entries, None all
        (the walk does not enter links, it checks where they lead).
    what : str
        How messages name ``root``.

    Raises
    ------
    UnsafePathError
        Naming the first path, relative to ``root``, that resolves outside it.
    """
    base = Path(root).resolve()

    def refuse(path: Path):
        raise UnsafePathError(f"{shown_path(path, base)} lies outside {what} (symbolic link?); it is not read. "
                              "Remove the link.")

    for path in map(Path, paths):
        if not os.path.lexists(path):
            continue
        if not is_inside(path, base):
            refuse(path)
        if depth == 0 or not path.is_dir():
            continue
        top = len(path.resolve().parts)
        for folder, dirs, files in os.walk(path.resolve()):
            level = len(Path(folder).parts) - top
            for name in dirs + files:
                entry = Path(folder, name)
                if (os.path.islink(entry) or level == 0) and not is_inside(entry, base):
                    refuse(entry)
            if depth is not None and level + 1 >= depth:
                dirs.clear()


def files_named(root: str | Path, name: str, max_depth: int = 6) -> list[Path]:
    """Files called ``name`` under ``root`` (itself included) that resolve inside it, sorted.

    Hidden folders are skipped and links are not followed out of ``root``, so nothing outside
    it is ever opened while searching.
    """
    base = Path(root).resolve()
    found = []
    if not base.is_dir():
        return found
    for folder, dirs, files in os.walk(base):
        if len(Path(folder).relative_to(base).parts) >= max_depth:
            dirs.clear()
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if name in files and is_inside(Path(folder, name), base) and Path(folder, name).is_file():
            found.append(Path(folder, name))
    return sorted(found)


def shown_path(path: str | Path, root: str | Path) -> str:
    """``path`` as a message shows it: ``/``-separated relative to ``root``, else its name only."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        try:
            return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            return Path(path).name


def without_roots(message: str, roots: dict) -> str:
    """``message`` with each absolute root folder replaced by a name for it.

    The last line of defence for messages written by libraries (OpenSlide, zarr, pandas), which
    name files by their absolute path.

    Parameters
    ----------
    message : str
    roots : dict of {path: str}
        Folder -> what to call it, e.g. ``{slides_dir: "slides folder"}``; paths under a root
        become relative to it.
    """
    pairs = sorted(((str(Path(r).resolve()), name) for r, name in roots.items()), key=lambda p: -len(p[0]))
    for root, name in pairs:
        message = message.replace(root + "/", "").replace(root, name)
    return message
