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

The words of the command line are one vocabulary (:data:`VOCABULARY`): an option that means the
same thing is spelled the same way, takes the same values and says so with the same help in
every command (``tests/test_cli_vocabulary.py`` checks every command). Add them with
:func:`add_option`; a renamed option keeps its old spelling as a hidden alias that still works
and prints a deprecation note (:func:`add_option`'s ``old``).
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

__all__ = ["OneLineParser", "DefaultsHelpFormatter", "CommandError", "fail", "reporting_errors", "int_range",
           "positive_int", "non_negative_int", "positive_float", "non_negative_float", "number_in", "fraction",
           "existing_file", "existing_path", "output_folder", "output_file", "device_name", "composite_name",
           "bound_free_composite", "one_of", "comma_list", "VOCABULARY", "OUTPUT_MODES", "add_option"]


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help, unless the help already says its default or
    there is none to state (``None``, ``False``)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: ``prog: error: message (see prog --help)``.

    Sub-parsers created from it (``add_subparsers().add_parser``) are of the same class, and every
    one states its options' defaults in ``--help`` (:class:`DefaultsHelpFormatter`).
    """

    def __init__(self, *args, formatter_class=None, **kwargs):
        super().__init__(*args, formatter_class=formatter_class or DefaultsHelpFormatter, **kwargs)

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


class CommandError(Exception):
    """Arguments that are wrong together (or a file that turns out unusable): reported by
    :func:`fail` as one line with exit code 2."""


def fail(prog: str, error: BaseException | str) -> int:
    """Print ``prog: error: <error>`` on stderr as one line and return the exit code 2."""
    print(f"{prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
    return 2


def reporting_errors(prog: str, command: Callable, errors: tuple = (CommandError, ValueError, OSError)):
    """``command(args)`` that reports ``errors`` with :func:`fail` (one line, exit code 2)
    instead of a traceback: the ``func`` a command sets with ``set_defaults``."""
    def run(args) -> int:
        try:
            return command(args)
        except errors as exc:
            return fail(prog, exc)

    run.__doc__ = command.__doc__
    return run


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


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """A type for integers ``low <= n`` (``<= high`` when given)."""
    expected = {0: "an integer >= 0", 1: "a positive integer"}.get(low, f"an integer >= {low}")
    too_small = {0: "must be 0 or more", 1: "must be a positive integer (1 or more)"}.get(
        low, f"must be {low} or more")

    @_named(expected.removeprefix("a ").removeprefix("an "))
    def convert(text: str) -> int:
        value = _number(text, int, expected)
        if value < low:
            raise argparse.ArgumentTypeError(f"{too_small}, got {text!r}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {text!r}")
        return value

    convert.__doc__ = f"{expected[0].upper()}{expected[1:]}" + (f", at most {high}." if high is not None else ".")
    return convert


#: an integer >= 1
positive_int = int_range(1)
#: an integer >= 0
non_negative_int = int_range(0)


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


#: a finite number > 0
positive_float = _at_least(float, 0.0, True, "positive number", "a positive number",
                           "must be a positive number (greater than 0)")
#: a finite number >= 0
non_negative_float = _at_least(float, 0.0, False, "non-negative number", "a number >= 0", "must be 0 or more")


def number_in(lower: float = -math.inf, upper: float = math.inf, *, lower_open: bool = False,
              upper_open: bool = False, why: str = "") -> Callable[[str], float]:
    """A type for a finite number in ``[lower, upper]``; ``*_open`` excludes that end, an infinite
    end is no bound. ``why`` follows the range in the message (e.g. ``" (the band-pass needs it)"``)."""
    if math.isinf(upper):
        interval = f"> {lower:g}" if lower_open else f">= {lower:g}"
    elif math.isinf(lower):
        interval = f"< {upper:g}" if upper_open else f"<= {upper:g}"
    else:
        interval = f"in {'(' if lower_open else '['}{lower:g}, {upper:g}{')' if upper_open else ']'}"

    @_named(f"number {interval}")
    def convert(text: str) -> float:
        value = _number(text, float, f"a number {interval}")
        below = value <= lower if lower_open else value < lower
        above = value >= upper if upper_open else value > upper
        if below or above:
            raise argparse.ArgumentTypeError(f"must be {interval}{why}, got {text!r}")
        return value

    return convert


def fraction(lower: float = 0.0, upper: float = 1.0, *, lower_open: bool = False,
             upper_open: bool = False) -> Callable[[str], float]:
    """A type for a number in ``[lower, upper]`` (default ``[0, 1]``); ``*_open`` excludes that end."""
    return number_in(lower, upper, lower_open=lower_open, upper_open=upper_open)


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
    # found here, before any model is loaded or slide read, not when the first file is written
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if existing.is_dir() and not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text}: {existing} is not writable (read-only or "
                                         f"another user's); choose another folder")
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
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; a GPU that this machine lacks is refused
    here, before any work (:func:`lrp_captum.devices.resolve_device`)."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use auto, cpu, cuda, cuda:N or mps")
    if text.startswith("cuda"):
        from lrp_captum.devices import resolve_device

        try:
            resolve_device(text)
        except RuntimeError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    elif text == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError("device 'mps': Apple's Metal GPU is not available on this "
                                             "machine; use 'auto' or 'cpu'")
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


def bound_free_composite(inputs: str) -> Callable[[str], str]:
    """A type for a registered composite that needs no input bounds (no z^B rule), for inputs
    that have none (``inputs``, e.g. ``"EEG epochs in µV"``, ``"token embeddings"``)."""
    @_named("composite")
    def convert(text: str) -> str:
        from lrp_captum.core.composites import composite_needs_bounds, list_composites

        if composite_needs_bounds(composite_name(text)):
            usable = [n for n in list_composites() if not composite_needs_bounds(n)]
            raise argparse.ArgumentTypeError(
                f"composite {text!r} needs input bounds (z^B rule), which {inputs} do not have; "
                f"choose from {', '.join(usable)}")
        return text

    return convert


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


# --- the vocabulary ---------------------------------------------------------------------------

#: what ``--output-mode`` can explain (as :meth:`lrp_captum.LRP.attribute` takes it)
OUTPUT_MODES = ("logit", "probability", "contrastive")

#: every option that means the same in several commands: its spelling, its ``add_argument``
#: keywords and its help. A command may narrow ``choices``/``default`` and add to the help after
#: the common part, never respell or retype the option.
VOCABULARY = {
    "--device": dict(type=device_name, default="auto",
                     help="where to compute: auto (a CUDA GPU when there is one, else the CPU), cpu, "
                          "cuda, cuda:N or mps"),
    "--output-mode": dict(choices=OUTPUT_MODES, default="logit",
                          help="what is explained: the target's logit, its softmax probability, or the "
                               "contrastive score (target against the other classes)"),
    "--seed": dict(type=non_negative_int, default=0, help="random seed (an integer >= 0)"),
    "--batch-size": dict(type=positive_int, help="inputs per forward/backward pass"),
}


class _OldSpelling(argparse.Action):
    """A renamed option's old spelling: stores like the new one and prints a deprecation note."""

    def __init__(self, option_strings, dest, new: str = "", **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: note: {option_string} is the old spelling of {self.new}; it still works "
              "but goes in lrp-captum 0.3", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_option(parser, flag: str, *, old: Sequence[str] = (), help_more: str = "", **overrides):
    """Add the vocabulary's option ``flag`` to ``parser`` (``overrides`` narrow its keywords).

    ``old`` spellings (a renamed option's former names) are accepted as hidden aliases that print a
    deprecation note; the help says which spelling it replaces. ``help_more`` follows the common help.
    """
    keywords = {**VOCABULARY.get(flag, {}), **overrides}
    text = keywords.pop("help", "")
    if help_more:
        text = f"{text}; {help_more}" if text else help_more
    if old:
        text += f" (formerly {', '.join(old)}: still accepted)"
    # a required option and its old spelling: exactly one of them (argparse names only the new one)
    target = parser.add_mutually_exclusive_group(required=True) if old and keywords.pop("required", False) \
        else parser
    action = target.add_argument(flag, help=text, **keywords)
    if old:
        same = {k: v for k, v in keywords.items() if k in ("type", "choices", "nargs", "metavar")}
        target.add_argument(*old, dest=action.dest, action=_OldSpelling, new=flag, help=argparse.SUPPRESS,
                            default=argparse.SUPPRESS, **same)
    return action
