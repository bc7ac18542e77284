"""Path safety: every file the app lists, reads or serves must lie under a configured root.

Messages name paths relative to their root: the app may be seen by people who need not learn
where on the server its folders are.
"""
from __future__ import annotations

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
