"""Path safety: every file the app lists, reads or serves must lie under a configured root."""
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
    if target != base and base not in target.parents:
        raise UnsafePathError(f"{text!r} resolves outside {base} (symbolic link?)")
    return target
