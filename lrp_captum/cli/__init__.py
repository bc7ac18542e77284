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

# (group name, module path, help) -- the module defines ``register(subparsers)``.
_GROUPS = [
    ("core", "lrp_captum.cli.core", "list composites, explain a torchvision model"),
    ("evaluate", "lrp_captum.cli.evaluate", "rank composites by explanation quality"),
    ("slide", "lrp_captum.cli.slide", "whole-slide images: sample data, demo model, explain"),
    ("eeg", "lrp_captum.cli.eeg", "EEG epochs: simulate, train, explain"),
    ("text", "lrp_captum.cli.text", "text classifiers: explain words"),
    ("app", "lrp_captum.cli.app", "start the Streamlit viewer"),
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

    parser = OneLineParser(prog="lrp-captum", description=__doc__.splitlines()[0])
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    result = args.func(args)
    return int(result or 0)
