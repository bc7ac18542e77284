"""``lrp-captum slide sample|train-demo|explain``: a thin layer over :mod:`lrp_captum.wsi`."""
from __future__ import annotations

import argparse
import json
import sys

from . import add_group


def register(subparsers) -> None:
    sub = add_group(subparsers, "slide", "whole-slide images: sample data, demo model, explain",
                    "Whole-slide images: sample slides, the demo model, and slide-level LRP "
                    "heatmaps.")

    s = sub.add_parser("sample", help="write an OpenSlide-readable sample slide (no downloads)")
    s.add_argument("out", help="output file (.tif / .tiff for --kind tiff, .svs for --kind svs)")
    s.add_argument("--size", type=int, nargs="+", default=[4096], metavar="PX",
                   help="level-0 size: one value for a square, or WIDTH HEIGHT (default 4096; up to 40000+)")
    s.add_argument("--kind", choices=("tiff", "svs"), default=None,
                   help="generic tiled TIFF or Aperio SVS-like (default: from the file extension)")
    s.add_argument("--mpp", type=float, default=0.5, help="µm per level-0 pixel (default 0.5, i.e. 20x)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_sample)

    t = sub.add_parser("train-demo", help="train (or reuse) the demo DAB-positive tile classifier")
    t.add_argument("--out", default=None, help="folder for demo_cnn.pt/.json (default: the cache, "
                                               "$LRP_CAPTUM_CACHE or ~/.cache/lrp-captum, reused if present)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_train)

    e = sub.add_parser("explain", help="explain every tissue tile of a slide and stitch the heatmap")
    e.add_argument("slide", help="slide file (any format OpenSlide reads)")
    e.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
    e.add_argument("--model", default="demo",
                   help="model config JSON, or 'demo' (trained and cached on first use)")
    e.add_argument("--arch", default=None, help="instead of --model: torchvision name (e.g. resnet18) or "
                                                "package.module:factory; needs --weights, --classes, "
                                                "--model-tile-size and --model-mpp")
    e.add_argument("--weights", default=None, help="state_dict file for --arch (loaded with weights_only=True)")
    e.add_argument("--classes", default=None, help="comma-separated class names for --arch")
    e.add_argument("--model-tile-size", type=int, default=224, help="input side for --arch (default 224)")
    e.add_argument("--model-mpp", type=float, default=0.5, help="µm/px for --arch (default 0.5)")
    e.add_argument("--target", default="predicted", help="'predicted', a class name or index (default predicted)")
    e.add_argument("--composite", default=None, help="LRP composite (default epsilon_plus_flat); "
                                                     "see `lrp-captum core composites`")
    e.add_argument("--output-mode", default="logit", choices=("logit", "probability", "contrastive"))
    e.add_argument("--mpp", type=float, default=None, help="tile resolution in µm/px (default: the model's)")
    e.add_argument("--tile-size", type=int, default=None, help="tile side in px (default: the model's)")
    e.add_argument("--overlap", type=float, default=0.0, help="tile overlap fraction, e.g. 0.25 (default 0)")
    e.add_argument("--output-downsample", type=int, default=None,
                   help="level-0 px per heatmap px (default: about 16 px per tile)")
    e.add_argument("--min-tissue", type=float, default=0.1, help="minimum tissue fraction per tile (default 0.1)")
    e.add_argument("--tissue-threshold", type=float, default=None,
                   help="saturation threshold 0..1 for tissue (default: Otsu)")
    e.add_argument("--slide-mpp", type=float, default=None, help="µm/px of level 0 if the slide lacks it")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--workers", type=int, default=None, help="DataLoader reader processes (default cores-1, max 4)")
    e.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    e.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    e.add_argument("--overwrite", action="store_true", help="discard a different run already in --out")
    e.add_argument("--keep-work", action="store_true", help="keep per-batch files in OUT/.lrp_work")
    e.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    e.set_defaults(func=_explain)
    from .mil import register_mil; register_mil(sub)  # noqa: E702 -- MIL commands: lrp_captum/cli/mil.py


def _sample(args) -> int:
    from ..wsi.sample import write_sample_slide

    kind = args.kind or ("svs" if args.out.lower().endswith(".svs") else "tiff")
    size = args.size[0] if len(args.size) == 1 else tuple(args.size[:2])
    path = write_sample_slide(args.out, size, kind=kind, mpp=args.mpp, seed=args.seed)
    print(path)
    return 0


def _train(args) -> int:
    from ..wsi.train import demo_model_config, train_demo_model

    if args.out:
        train_demo_model(args.out, quiet=args.quiet)
        print(f"{args.out}/demo_cnn.json")
    else:
        print(demo_model_config(quiet=args.quiet))
    return 0


def _explain(args) -> int:
    from ..wsi.explain import DEFAULT_COMPOSITE
    from ..wsi.pipeline import explain_slide
    from ..wsi.reader import SlideError

    try:
        if args.arch:
            if not (args.weights and args.classes):
                raise ValueError("--arch needs --weights FILE and --classes a,b,...")
            model = dict(architecture=args.arch, weights=args.weights,
                         classes=[c.strip() for c in args.classes.split(",")],
                         kwargs=dict(num_classes=len(args.classes.split(","))),
                         tile_size=args.model_tile_size, mpp=args.model_mpp)
        elif args.model == "demo":
            from ..wsi.train import demo_model_config

            model = demo_model_config(quiet=args.quiet)
        else:
            model = args.model
        target = int(args.target) if args.target.lstrip("-").isdigit() else args.target
        manifest = explain_slide(
            args.slide, model, args.out, target=target, composite=args.composite or DEFAULT_COMPOSITE,
            output_mode=args.output_mode, mpp=args.mpp, tile_size=args.tile_size, overlap=args.overlap,
            output_downsample=args.output_downsample, min_tissue=args.min_tissue,
            tissue_options={"threshold": args.tissue_threshold} if args.tissue_threshold is not None else None,
            slide_mpp_override=args.slide_mpp, batch_size=args.batch_size, num_workers=args.workers,
            device=args.device, threads=args.threads, overwrite=args.overwrite, quiet=args.quiet, keep_work=args.keep_work)
    except (SlideError, FileExistsError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"lrp-captum slide explain: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(json.dumps({k: manifest[k] for k in ("n_tiles", "output_downsample", "positive_tiles")}))
    return 0
