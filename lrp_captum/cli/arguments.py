"""Argument types and errors shared by the command groups, so that bad input is refused before
any work starts with one line and exit code 2.

Each type is a callable for ``argparse``'s ``type=``: it returns the converted value or raises
``argparse.ArgumentTypeError`` with a message that says what is wrong and what is expected;
argparse then prefixes the option name. :class:`OneLineParser` prints that as one line (with a
pointer to ``--help``) instead of the usage block. :class:`CommandError` is for checks that need
several arguments at once; :func:`fail` reports it the same way.

    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--overlap", type=fraction(upper_open=True), default=0.0)
    p.add_argument("--composite", type=composite_name)
    p.add_argument("--out", type=output_folder, required=True)
"""
from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

__all__ = ["OneLineParser", "DefaultsHelpFormatter", "CommandError", "fail", "positive_int", "non_negative_int",
           "positive_float", "non_negative_float", "fraction", "existing_file", "existing_path", "output_folder",
           "output_file", "device_name", "composite_name", "one_of", "comma_list"]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``prog: error: message (see prog --help)``.

    Sub-parsers created from it (``add_subparsers().add_parser``) are of the same class.
    """

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help, unless the help already says its default or
    there is none to state (``None``, ``False``)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class CommandError(Exception):
    """Arguments that are wrong together (or a file that turns out unusable): reported by
    :func:`fail` as one line with exit code 2."""


def fail(prog: str, error: BaseException | str) -> int:
    """Print ``prog: error: <error>`` on stderr as one line and return the exit code 2."""
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return 2


def _named(name: str):
    def wrap(fn):
        fn.__name__ = name  # argparse names the type in its fallback message
        return fn
    return wrap


def _number(text: str, kind: type, what: str):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _at_least(kind: type, low: float, strict: bool, name: str, expected: str, too_small: str):
    """A type for numbers of ``kind`` that are >= ``low`` (> with ``strict``)."""
    @_named(name)
    def convert(text: str):
        value = _number(text, kind, expected)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"{too_small}, got {text!r}")
        return value

    convert.__doc__ = f"{expected[0].upper()}{expected[1:]} (finite)."
    return convert


#: an integer >= 1
positive_int = _at_least(int, 1, False, "positive integer", "a positive integer",
                         "must be a positive integer (1 or more)")
#: an integer >= 0
non_negative_int = _at_least(int, 0, False, "non-negative integer", "an integer >= 0", "must be 0 or more")
#: a finite number > 0
positive_float = _at_least(float, 0.0, True, "positive number", "a positive number",
                           "must be a positive number (greater than 0)")
#: a finite number >= 0
non_negative_float = _at_least(float, 0.0, False, "non-negative number", "a number >= 0", "must be 0 or more")


def fraction(lower: float = 0.0, upper: float = 1.0, *, lower_open: bool = False,
             upper_open: bool = False) -> Callable[[str], float]:
    """A type for a number in ``[lower, upper]``; ``*_open`` excludes that end."""
    left, right = "(" if lower_open else "[", ")" if upper_open else "]"
    interval = f"{left}{lower:g}, {upper:g}{right}"

    @_named(f"number in {interval}")
    def convert(text: str) -> float:
        value = _number(text, float, f"a number in {interval}")
        below = value <= lower if lower_open else value < lower
        above = value >= upper if upper_open else value > upper
        if below or above:
            raise argparse.ArgumentTypeError(f"must be in {interval}, got {text!r}")
        return value

    return convert


@_named("existing file")
def existing_file(text: str) -> Path:
    """A path to an existing file (not a folder)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; expected a file")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file {text} does not exist")
    return path


@_named("existing path")
def existing_path(text: str) -> Path:
    """A path to an existing file or folder."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return path


def _blocking_file(path: Path) -> Path | None:
    """The first existing non-folder among ``path``'s parents (it blocks creating ``path``)."""
    for parent in path.absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _output_path(text: str, folder: bool) -> Path:
    """``text`` as a path that can be written: a folder (``folder``) or a file, created if missing."""
    path = Path(text).expanduser()
    if folder and path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is an existing file; give a folder (it is created "
                                         f"if missing)")
    if not folder and path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    blocker = _blocking_file(path)
    if blocker is not None:
        raise argparse.ArgumentTypeError(f"cannot {'create folder' if folder else 'write'} {text}: "
                                         f"{blocker} is a file, not a folder")
    return path


@_named("output folder")
def output_folder(text: str) -> Path:
    """A folder to write into: it may exist (as a folder) or be created; not an existing file."""
    return _output_path(text, folder=True)


@_named("output file")
def output_file(text: str) -> Path:
    """A file to write: it may exist (it is replaced) but not be a folder; its folder may be created."""
    return _output_path(text, folder=False)


@_named("device")
def device_name(text: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (whether it is present is checked later)."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use auto, cpu, cuda, cuda:N or mps")
    return text


@_named("composite")
def composite_name(text: str) -> str:
    """A registered LRP composite name (:func:`lrp_captum.list_composites`), returned as given."""
    from lrp_captum.core.composites import UnknownCompositeError, composite_needs_bounds

    try:
        composite_needs_bounds(text)
    except UnknownCompositeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def one_of(choices: Iterable[str], what: str = "value") -> Callable[[str], str]:
    """A type accepting only ``choices`` (like ``choices=``, but usable inside :func:`comma_list`)."""
    allowed = tuple(choices)

    @_named(what)
    def convert(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r}; choose from {', '.join(allowed)}")
        return text

    return convert


def comma_list(item: Callable[[str], object], allow_empty: bool = True) -> Callable[[str], list]:
    """A type for comma-separated values, each converted by ``item`` (blank entries skipped)."""
    @_named(f"comma-separated {getattr(item, '__name__', 'values')}")
    def convert(text: str) -> Sequence:
        values = [item(part.strip()) for part in text.split(",") if part.strip()]
        if not values and not allow_empty:
            raise argparse.ArgumentTypeError("expected at least one value")
        return values

    return convert
