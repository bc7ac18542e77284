"""The command-line side of the slide options: argparse options generated from their declaration
(:data:`lrp_captum.wsi.slide_options.SLIDE_OPTIONS`, and the MIL table that shares it), the model
options of ``slide explain`` and ``slide cohort``, and reading both back.

Each option's kind parses its text (a bad value ends in one line naming the flag, exit code 2),
its help is the declared one, its default the declared one; nothing here names an option.
"""
from __future__ import annotations

import argparse

from lrp_captum.cli.arguments import CommandError, add_option, existing_file, positive_float, positive_int
from lrp_captum.model_files import class_names
from lrp_captum.wsi.slide_options import (COHORT, EXPLAIN, MAX_SAMPLE_SIDE, RESOLUTION, SLIDE_OPTIONS, Choice, Flag,
                                          Kind, Option, OptionTable, int_in)

__all__ = ["add_options", "options_from_args", "add_explain_options", "explain_options", "model_from_args",
           "argument_type", "resolution", "sample_side"]


def argument_type(kind: Kind):
    """An argparse ``type`` parsing with ``kind`` (an option's, or one of the declared kinds such
    as :data:`~lrp_captum.wsi.slide_options.RESOLUTION`): ``ArgumentTypeError`` with its message."""
    def convert(text: str):
        try:
            return kind.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = kind.name  # argparse names the type in its own messages
    return convert


#: ``--mpp`` of the commands that write sample slides: the range of the slide options' resolutions
resolution = argument_type(RESOLUTION)


def sample_side(low: int):
    """A sample slide's side in px, from ``low`` to :data:`~lrp_captum.wsi.slide_options.MAX_SAMPLE_SIDE`."""
    convert = argument_type(int_in(low, MAX_SAMPLE_SIDE))
    convert.__name__ = "slide side"
    return convert


def add_options(parser, command: str, table: OptionTable = SLIDE_OPTIONS, title: str = "explain options") -> None:
    """Add the options ``command`` offers (from ``table``) to ``parser``, as one group."""
    group = parser.add_argument_group(title)
    for o in table.for_command(command):
        if o.cli_flag == "--device":  # spelled and checked as in every other command
            add_option(group, "--device", dest=o.dest, default=o.default,
                       help_more=f"(default {o.default})")
        elif isinstance(o.kind, Flag):
            group.add_argument(o.cli_flag, dest=o.dest, action="store_false" if o.default else "store_true",
                               help=o.help_in(command))
        elif isinstance(o.kind, Choice):  # argparse lists the choices in its message
            group.add_argument(o.cli_flag, dest=o.dest, default=o.default, choices=o.kind.choices,
                               help=o.help_in(command))
        else:
            group.add_argument(o.cli_flag, dest=o.dest, type=argument_type(o.kind), default=o.default,
                               help=o.help_in(command))


def options_from_args(args, command: str, table: OptionTable = SLIDE_OPTIONS) -> dict:
    """The values of the options ``command`` offers, by option name, from parsed ``args``."""
    return {o.name: getattr(args, o.dest) for o in table.for_command(command)}


# --- slide explain and slide cohort -----------------------------------------------------------------
def _model_arg(text: str):
    """``demo`` or an existing model config JSON file."""
    return text if text == "demo" else existing_file(text)


_model_arg.__name__ = "model config"


def add_explain_options(parser, command: str) -> None:
    """The model options and the explain options of ``slide explain`` / ``slide cohort``
    (``command``: :data:`~lrp_captum.wsi.slide_options.EXPLAIN` or ``COHORT``). Read them back
    with :func:`model_from_args` and :func:`options_from_args`."""
    model = parser.add_argument_group("model options")
    model.add_argument("--model", type=_model_arg, default="demo",
                       help="model config JSON, or 'demo' (trained and cached on first use; default demo)")
    model.add_argument("--arch", default=None,
                       help="instead of --model: a torchvision name (resnet18, vit_b_16), timm:NAME "
                            "(timm:vit_small_patch16_224), demo_vit, or package.module:factory; needs "
                            "--weights and --classes (and --model-tile-size, --model-mpp if not 224, "
                            "0.5); Vision Transformers are built for --model-tile-size. Or a model folder as "
                            "the hub stores a timm classifier (config.json + model.safetensors or "
                            "pytorch_model.bin): weights, input size, normalisation and classes from it")
    model.add_argument("--weights", type=existing_file, default=None,
                       help="state_dict file for --arch (loaded with weights_only=True)")
    model.add_argument("--classes", default=None, help="comma-separated class names for --arch")
    model.add_argument("--model-tile-size", type=positive_int, default=224, help="input side for --arch (default 224)")
    model.add_argument("--model-mpp", type=positive_float, default=0.5, help="µm/px for --arch (default 0.5)")
    add_options(parser, command)


def explain_options(args) -> dict:
    """The options ``slide explain`` and ``slide cohort`` share, by name, from parsed ``args``
    (either command's: the same options, read the same way)."""
    return {o.name: getattr(args, o.dest) for o in SLIDE_OPTIONS.for_command(EXPLAIN)
            if COHORT in o.commands}


def model_from_args(args):
    """The model argument of ``explain_slide`` from :func:`add_explain_options`' options: a dict
    for ``--arch``, else a config path (``demo``: the demo model's, trained and cached on first use).

    Raises :class:`CommandError` for arguments that do not fit together.
    """
    if not args.arch:
        if args.weights or args.classes:
            raise CommandError("--weights and --classes go with --arch; a --model config names its own")
        if args.model == "demo":
            from lrp_captum.demos.slide_model import demo_model_config

            return str(demo_model_config(quiet=getattr(args, "quiet", False)))
        return args.model
    if args.model != "demo":
        raise CommandError("give either --model CONFIG or --arch, not both")
    from lrp_captum.wsi.hub_folders import hub_folder_classes, is_hub_folder

    if is_hub_folder(args.arch):  # the folder holds its weights, input size, normalisation and classes
        classes = [c.strip() for c in args.classes.split(",")] if args.classes else hub_folder_classes(args.arch)
        if not classes:
            raise CommandError(f"model folder {args.arch} names no classes (label_names): give --classes a,b,...")
        config = dict(architecture=args.arch, classes=classes, tile_size=args.model_tile_size, mpp=args.model_mpp)
        return dict(config, weights=str(args.weights)) if args.weights else config
    if not (args.weights and args.classes):
        raise CommandError("--arch needs --weights FILE and --classes a,b,...")
    try:
        classes = class_names([c.strip() for c in args.classes.split(",")], "--classes")
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return dict(architecture=args.arch, weights=str(args.weights), classes=classes,
                kwargs=dict(num_classes=len(classes)), tile_size=args.model_tile_size, mpp=args.model_mpp)
