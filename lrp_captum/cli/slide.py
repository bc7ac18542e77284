"""``lrp-captum slide sample|train-demo|explain``: a thin layer over :mod:`lrp_captum.wsi`.

Every argument is checked before any work starts (argparse types from
:mod:`lrp_captum.cli.arguments`, then :func:`model_from_args` for arguments that depend on each
other), so a bad one ends in one line and exit code 2 and leaves nothing behind.
"""
from __future__ import annotations

import argparse
import json

from lrp_captum.cli import add_group
from lrp_captum.cli.arguments import (CommandError, composite_name, device_name, existing_file, fail, fraction,
                                      non_negative_int, output_file, output_folder, positive_float, positive_int)

# library defaults the help texts quote (tests/test_cli_help.py checks them against the code)
_SAMPLE_SIZE = 4096
_SAMPLE_MPP = 0.5


def _model_arg(text: str):
    """``demo`` or an existing model config JSON file."""
    return text if text == "demo" else existing_file(text)


_model_arg.__name__ = "model config"


def _sample_size(text: str) -> int:
    value = positive_int(text)
    if value < 256:
        raise argparse.ArgumentTypeError(f"slide sides must be at least 256 px, got {text!r}")
    return value


_sample_size.__name__ = "slide side"


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
                        f"(default {_SAMPLE_SIZE}; up to 40000+)")
    s.add_argument("--kind", choices=("tiff", "svs"), default=None,
                   help="generic tiled TIFF or Aperio SVS-like (default: from the file extension)")
    s.add_argument("--mpp", type=positive_float, default=_SAMPLE_MPP,
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
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_train)

    e = sub.add_parser("explain", help="explain every tissue tile of a slide and stitch the heatmap")
    e.add_argument("slide", type=existing_file, help="slide file (any format OpenSlide reads)")
    e.add_argument("--out", type=output_folder, required=True,
                   help="output folder (rerun the same command to resume)")
    add_explain_options(e)
    e.add_argument("--workers", type=non_negative_int, default=None,
                   help="DataLoader reader processes, 0 = read in the main process (default: "
                        "cores-1, max 4)")
    e.add_argument("--device", type=device_name, default="auto", help="auto | cpu | cuda (default auto)")
    e.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    e.set_defaults(func=_explain)
    from lrp_captum.cli.cohort import register_cohort  # `slide cohort` lives in cli/cohort.py (Ray)
    register_cohort(sub)
    from lrp_captum.cli.mil import register_mil  # MIL commands live in cli/mil.py
    register_mil(sub)


def add_explain_options(parser, help_overrides: dict | None = None) -> None:
    """Add the model and explain options of ``slide explain`` (everything but the slide, the output
    folder, the reader processes, the device and ``--quiet``) to ``parser``, as a group.

    ``slide cohort`` adds the same options this way, so the two commands never drift apart;
    ``help_overrides`` (``{dest: help}``) rewords options whose meaning differs per cohort.
    Read them back with :func:`model_from_args` and :func:`explain_options`.
    """
    from lrp_captum.wsi.tile_relevance import DEFAULT_COMPOSITE, TRANSFORMER_COMPOSITE
    from lrp_captum.wsi.pipeline import DEFAULT_OVERLAP
    from lrp_captum.wsi.tissue import MAX_SATURATION_THRESHOLD, MIN_SATURATION

    group = parser.add_argument_group("model and explain options")
    overrides = help_overrides or {}

    def add(*flags, help, **kwargs):  # noqa: A002 - argparse's own keyword
        dest = kwargs.get("dest") or flags[0].lstrip("-").replace("-", "_")
        group.add_argument(*flags, help=overrides.get(dest, help), **kwargs)

    add("--model", type=_model_arg, default="demo",
        help="model config JSON, or 'demo' (trained and cached on first use; default demo)")
    add("--arch", default=None,
        help="instead of --model: a torchvision name (resnet18, vit_b_16), timm:NAME "
        "(timm:vit_small_patch16_224), demo_vit, or package.module:factory; needs "
        "--weights and --classes (and --model-tile-size, --model-mpp if not 224, "
        "0.5); Vision Transformers are built for --model-tile-size")
    add("--weights", type=existing_file, default=None,
        help="state_dict file for --arch (loaded with weights_only=True)")
    add("--classes", default=None, help="comma-separated class names for --arch")
    add("--model-tile-size", type=positive_int, default=224,
        help="input side for --arch (default 224)")
    add("--model-mpp", type=positive_float, default=0.5, help="µm/px for --arch (default 0.5)")
    add("--target", default="predicted",
        help="'predicted', a class name or index (default predicted)")
    add("--composite", type=composite_name, default=None,
        help=f"LRP composite (default: {TRANSFORMER_COMPOSITE} for transformers, "
        f"{DEFAULT_COMPOSITE} otherwise); see `lrp-captum composites`")
    add("--output-mode", default="logit", choices=("logit", "probability", "contrastive"),
        help="what is explained (default logit)")
    add("--mpp", type=positive_float, default=None,
        help="tile resolution in µm/px (default: the model's)")
    add("--tile-size", type=positive_int, default=None,
        help="tile side in px (default: the model's)")
    add("--overlap", type=fraction(upper_open=True), default=DEFAULT_OVERLAP,
        help=f"tile overlap fraction in [0, 1), blended on stitching (default {DEFAULT_OVERLAP:g})")
    add("--output-downsample", type=positive_int, default=None,
        help="level-0 px per heatmap px (default: about 16 px per tile)")
    add("--min-tissue", type=fraction(), default=0.1,
        help="minimum tissue fraction per tile, 0..1 (default 0.1)")
    add("--tissue-threshold", type=fraction(), default=None,
        help=f"saturation threshold 0..1 for tissue (default: the triangle method on the "
        f"thumbnail's saturation histogram, kept within "
        f"{MIN_SATURATION:g}..{MAX_SATURATION_THRESHOLD:g})")
    add("--no-mask-glass", dest="mask_glass", action="store_false",
        help="colour the relevance on glass too (without it, pixels the tissue mask calls "
        "glass get no colour)")
    add("--slide-mpp", type=positive_float, default=None,
        help="µm/px of level 0 if the slide lacks it")
    add("--batch-size", type=positive_int, default=32, help="tiles per batch (default 32)")
    add("--threads", type=positive_int, default=None,
        help="torch CPU threads (default: torch's choice)")
    add("--overwrite", action="store_true", help="discard a different run already in --out")
    add("--keep-work", action="store_true", help="keep per-batch files in OUT/.lrp_work")


def explain_options(args) -> dict:
    """Keyword arguments of :func:`~lrp_captum.wsi.pipeline.explain_slide` from the options of
    :func:`add_explain_options` (the model excepted: :func:`model_from_args`)."""
    target = int(args.target) if args.target.lstrip("-").isdigit() else args.target
    return dict(target=target, composite=args.composite, output_mode=args.output_mode, mpp=args.mpp,
                tile_size=args.tile_size, overlap=args.overlap, output_downsample=args.output_downsample,
                min_tissue=args.min_tissue,
                tissue_options={"threshold": args.tissue_threshold} if args.tissue_threshold is not None else None,
                slide_mpp_override=args.slide_mpp, batch_size=args.batch_size, threads=args.threads,
                overwrite=args.overwrite, keep_work=args.keep_work, mask_glass=args.mask_glass)


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
    if not (args.weights and args.classes):
        raise CommandError("--arch needs --weights FILE and --classes a,b,...")
    classes = [c.strip() for c in args.classes.split(",")]
    if not all(classes) or len(set(classes)) != len(classes):
        raise CommandError(f"--classes must be distinct, non-empty names, got {args.classes!r}")
    return dict(architecture=args.arch, weights=str(args.weights), classes=classes,
                kwargs=dict(num_classes=len(classes)), tile_size=args.model_tile_size, mpp=args.model_mpp)


def _explain(args) -> int:
    from lrp_captum.core.composites import NoRuleError
    from lrp_captum.core.engine.functional import UncoveredOpError
    from lrp_captum.wsi.tile_relevance import TRANSFORMER_COMPOSITE
    from lrp_captum.wsi.pipeline import explain_slide
    from lrp_captum.wsi.reader import SlideError

    prog = "lrp-captum slide explain"
    try:
        manifest = explain_slide(args.slide, model_from_args(args), args.out, num_workers=args.workers,
                                 device=args.device, quiet=args.quiet, **explain_options(args))
    except (NoRuleError, UncoveredOpError) as exc:
        # a composite that does not fit the model, such as a CNN composite on a ViT
        chosen = f"--composite {args.composite}" if args.composite else "the default composite"
        return fail(prog, f"{chosen} does not cover this model: {exc} Without --composite the run "
                          f"chooses by model ({TRANSFORMER_COMPOSITE} for transformers)")
    except (CommandError, SlideError, FileExistsError, FileNotFoundError, ValueError, RuntimeError) as exc:
        return fail(prog, exc)
    if not args.quiet:
        print(json.dumps({k: manifest[k] for k in ("n_tiles", "output_downsample", "positive_tiles")}))
    return 0
