"""``lrp-captum slide sample|train-demo|explain``: a thin layer over :mod:`lrp_captum.wsi`.

Every argument is checked before any work starts (argparse types from
:mod:`lrp_captum.cli.arguments`, the explain options by their declaration through
:mod:`lrp_captum.cli.slide_options`, then :func:`model_from_args` for arguments that depend on
each other), so a bad one ends in one line and exit code 2 and leaves nothing behind.
"""
from __future__ import annotations

import json

from lrp_captum.cli import add_group
from lrp_captum.cli.arguments import CommandError, existing_file, fail, non_negative_int, output_file, output_folder
from lrp_captum.cli.slide_options import (add_explain_options, explain_options, model_from_args, options_from_args,
                                         resolution, sample_side)
from lrp_captum.wsi.slide_options import EXPLAIN, MAX_SAMPLE_SIDE

__all__ = ["register", "add_explain_options", "explain_options", "model_from_args"]

# library defaults the help texts quote (tests/test_cli_help.py checks them against the code)
_SAMPLE_SIZE = 4096
_SAMPLE_MPP = 0.5


_sample_size = sample_side(256)


def register(subparsers) -> None:
    from lrp_captum.demos.slide_model import DEMO_DEFAULTS

    sub = add_group(subparsers, "slide", "whole-slide images: sample data, demo model, explain",
                    "Whole-slide images: sample slides, the demo model, and slide-level LRP "
                    "heatmaps.")

    s = sub.add_parser("sample", help="write an OpenSlide-readable sample slide (no downloads)")
    s.add_argument("out", type=output_file,
                   help="output file (.tif / .tiff for --kind tiff, .svs for --kind svs)")
    s.add_argument("--size", type=_sample_size, nargs="+", default=[_SAMPLE_SIZE], metavar="PX",
                   help=f"level-0 size: one value for a square, or WIDTH HEIGHT, each at least 256 "
                        f"(default {_SAMPLE_SIZE}; at most {MAX_SAMPLE_SIDE})")
    s.add_argument("--kind", choices=("tiff", "svs"), default=None,
                   help="generic tiled TIFF or Aperio SVS-like (default: from the file extension)")
    s.add_argument("--mpp", type=resolution, default=_SAMPLE_MPP,
                   help=f"µm per level-0 pixel (default {_SAMPLE_MPP}, i.e. 20x)")
    s.add_argument("--seed", type=non_negative_int, default=0, help="tissue layout (default 0)")
    s.set_defaults(func=_sample)

    t = sub.add_parser("train-demo", help="train (or reuse) the demo DAB-positive tile classifier")
    t.add_argument("--arch", choices=tuple(DEMO_DEFAULTS), default="demo_cnn",
                   help="demo_cnn, a small CNN, or demo_vit, a small Vision Transformer "
                        "(default demo_cnn)")
    t.add_argument("--out", type=output_folder, default=None,
                   help="folder for ARCH.pt/.json (default: the cache, $LRP_CAPTUM_CACHE or "
                        "~/.cache/lrp-captum, reused if present)")
    t.add_argument("--quiet", action="store_true", help="no progress messages")
    t.set_defaults(func=_train)

    e = sub.add_parser("explain", help="explain every tissue tile of a slide and stitch the heatmap")
    e.add_argument("slide", type=existing_file, help="slide file (any format OpenSlide reads)")
    e.add_argument("--out", type=output_folder, required=True,
                   help="output folder (rerun the same command to resume)")
    add_explain_options(e, EXPLAIN)
    e.set_defaults(func=_explain)
    from lrp_captum.cli.cohort import register_cohort  # `slide cohort` lives in cli/cohort.py (Ray)
    register_cohort(sub)
    from lrp_captum.cli.mil import register_mil  # MIL commands live in cli/mil.py
    register_mil(sub)


def _sample(args) -> int:
    from lrp_captum.demos.sample_slide import write_sample_slide

    if len(args.size) > 2:
        return fail("lrp-captum slide sample", f"--size takes one or two values (WIDTH HEIGHT), got {len(args.size)}")
    out = str(args.out)
    kind = args.kind or ("svs" if out.lower().endswith(".svs") else "tiff")
    size = args.size[0] if len(args.size) == 1 else tuple(args.size[:2])
    path = write_sample_slide(out, size, kind=kind, mpp=args.mpp, seed=args.seed)
    print(path)
    return 0


def _train(args) -> int:
    from lrp_captum.demos.slide_model import demo_model_config, train_demo_model

    if args.out:
        train_demo_model(args.out, arch=args.arch, quiet=args.quiet)
        print(f"{args.out}/{args.arch}.json")
    else:
        print(demo_model_config(arch=args.arch, quiet=args.quiet))
    return 0


def _explain(args) -> int:
    from lrp_captum.core.composites import NoRuleError
    from lrp_captum.core.engine.functional import UncoveredOpError
    from lrp_captum.wsi.tile_relevance import TRANSFORMER_COMPOSITE
    from lrp_captum.wsi.folder_lock import FolderLockedError
    from lrp_captum.wsi.pipeline import explain_slide
    from lrp_captum.wsi.reader import SlideError

    prog = "lrp-captum slide explain"
    try:
        manifest = explain_slide(args.slide, model_from_args(args), args.out, options_from_args(args, EXPLAIN))
    except (NoRuleError, UncoveredOpError) as exc:
        # a composite that does not fit the model, such as a CNN composite on a ViT
        chosen = f"--composite {args.composite}" if args.composite else "the default composite"
        return fail(prog, f"{chosen} does not cover this model: {exc} Without --composite the run "
                          f"chooses by model ({TRANSFORMER_COMPOSITE} for transformers)")
    except (CommandError, SlideError, FileExistsError, FileNotFoundError, FolderLockedError, ValueError,
            RuntimeError) as exc:
        return fail(prog, exc)
    if not args.quiet:
        print(json.dumps({k: manifest[k] for k in ("n_tiles", "output_downsample", "positive_tiles")}))
    return 0
