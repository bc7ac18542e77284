"""Command line interface: ``lrp-captum <group> <command> ...``.

A thin layer over library functions. Each group lives in its own module of this package
(``core``, ``evaluate``, ``slide``, ``eeg``, ``text``, ``app``) exposing ``register(subparsers)``;
this module only wires them together, importing each lazily, so that a missing optional
dependency (e.g. OpenSlide) disables one group with a clear message instead of breaking the
whole tool.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: what ``lrp-captum --help`` says first (plain text: argparse prints it as it is)
DESCRIPTION = ("Layer-wise relevance propagation (LRP) for PyTorch classifiers, native to Captum: "
               "explain image models, whole-slide images and cohorts, EEG epochs and texts, rank "
               "explanation methods, and browse the results in the app.")
EPILOG = "Run 'lrp-captum GROUP --help' for the commands of a group, 'lrp-captum GROUP COMMAND --help' for one."

# (group name, module path, help) -- the module defines ``register(subparsers)``. A group's
# summary in ``lrp-captum --help`` is its help here followed by its commands, listed from the
# parser itself so that it never leaves one out.
_GROUPS = [
    ("core", "lrp_captum.cli.core", "list composites, explain a torchvision model"),
    ("evaluate", "lrp_captum.cli.evaluate", "rank explanation methods by quality"),
    ("slide", "lrp_captum.cli.slide", "whole-slide images, cohorts and MIL"),
    ("eeg", "lrp_captum.cli.eeg", "EEG epochs"),
    ("text", "lrp_captum.cli.text", "text classifiers"),
    ("app", "lrp_captum.cli.app", "start the Streamlit app: Slides, Cohort, MIL, EEG and Text pages"),
]


def add_group(subparsers, name: str, help: str, description: str | None = None,
              dest: str | None = None):
    """Add the command group ``name`` and return the sub-parsers its commands go into.

    ``lrp-captum <name>`` without a command prints the group's help and exits with 2.
    """
    group = subparsers.add_parser(name, help=help, description=description or help)
    sub = group.add_subparsers(dest=dest or f"{name.replace('-', '_')}_command",
                               metavar="COMMAND")
    group.set_defaults(func=lambda args: (group.print_help(), 2)[1])
    return sub


def build_parser() -> argparse.ArgumentParser:
    from lrp_captum.cli.arguments import OneLineParser  # bad arguments: one line and exit code 2, every group

    from lrp_captum import __version__

    parser = OneLineParser(prog="lrp-captum", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"lrp-captum {__version__}")
    sub = parser.add_subparsers(dest="group", metavar="GROUP")
    for name, module_path, help_text in _GROUPS:
        try:
            module = importlib.import_module(module_path)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == module_path or module_path.startswith(exc.name + ".")):
                continue  # group not implemented in this installation
            missing = exc.name

            def _unavailable(args, _name=name, _missing=missing):
                sys.exit(f"lrp-captum {_name}: needs the Python package '{_missing}'. "
                         f"Install the extra: pip install 'lrp-captum[all]'")

            p = sub.add_parser(name, help=f"{help_text} (unavailable: missing {missing})")
            p.set_defaults(func=_unavailable)
            continue
        module.register(sub)
    _summarise_groups(sub, {name: text for name, _, text in _GROUPS})
    return parser


def _summarise_groups(sub, summaries: dict) -> None:
    """Set each entry's line in ``lrp-captum --help``: the summary of ``_GROUPS`` and, for a group,
    its commands as its parser has them."""
    for choice in sub._choices_actions:  # argparse keeps the listed help of each sub-command here
        if choice.dest not in summaries:
            continue
        parser = sub.choices[choice.dest]
        commands = [list(a.choices) for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        choice.help = summaries[choice.dest] + (f": {', '.join(commands[0])}" if commands else "")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    result = args.func(args)
    return int(result or 0)
