"""``lrp-captum slide cohort-sample|train-mil|explain-mil``: a thin layer over :mod:`lrp_captum.wsi.mil`."""
from __future__ import annotations

import json
import sys


def register_mil(sub) -> None:
    """Add the MIL commands to the ``slide`` group's sub-parsers ``sub``."""
    c = sub.add_parser("cohort-sample", help="write a synthetic MIL cohort: slides, lesion masks, labels")
    c.add_argument("--n", type=int, required=True, help="number of slides (classes alternate)")
    c.add_argument("--out", required=True, help="cohort folder (slides/, masks/, cohort.csv, cohort.json)")
    c.add_argument("--size", type=int, default=2048, help="level-0 side in px, at least 1024 (default 2048)")
    c.add_argument("--mpp", type=float, default=0.5, help="µm per level-0 pixel (default 0.5)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--test-fraction", type=float, default=0.4, help="share of held-out slides (default 0.4)")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=_cohort)

    t = sub.add_parser("train-mil", help="train a MIL head (ABMIL or transformer) on slide labels only")
    t.add_argument("--cohort", required=True, help="cohort folder or its cohort.csv (slide, label, split)")
    t.add_argument("--out", required=True, help="head path without suffix (writes OUT.pt and OUT.json)")
    t.add_argument("--head", choices=("abmil", "transmil"), default="abmil")
    _encoder_args(t)
    t.add_argument("--embeddings", default=None, help="embedding cache folder (default COHORT/embeddings)")
    t.add_argument("--epochs", type=int, default=None, help="training epochs (default 100 for abmil, 80 for transmil)")
    t.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 2e-3 for abmil, 5e-4 for transmil)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_train)

    e = sub.add_parser("explain-mil", help="signed evidence per tile for a slide-level MIL prediction, "
                                           "pixel maps of the top tiles")
    e.add_argument("slide", help="slide file (any format OpenSlide reads)")
    e.add_argument("--mil", required=True, help="MIL head JSON written by train-mil")
    e.add_argument("--out", required=True, help="output folder (rerun the same command: returns at once)")
    e.add_argument("--method", default="xmil_lrp",
                   help="evidence method: xmil_lrp (default), attention, attention_norm, gradient, "
                        "integrated_gradients, single, leave_one_out")
    e.add_argument("--composite", default=None, help="LRP composite of xmil_lrp (default: xmil)")
    e.add_argument("--target", default="predicted", help="'predicted', a class name or index")
    e.add_argument("--top-tiles", type=int, default=8, help="tiles that get pixel maps (default 8)")
    e.add_argument("--pixel-composite", default="epsilon_plus_flat", help="LRP composite in the encoder")
    _encoder_args(e, default=None)
    e.add_argument("--embeddings", default=None, help="embedding cache folder (default the lrp-captum cache)")
    e.add_argument("--output-downsample", type=int, default=None, help="level-0 px per map px")
    e.add_argument("--min-tissue", type=float, default=0.1)
    e.add_argument("--tissue-threshold", type=float, default=None, help="saturation threshold 0..1 for tissue")
    e.add_argument("--slide-mpp", type=float, default=None, help="µm/px of level 0 if the slide lacks it")
    e.add_argument("--overwrite", action="store_true", help="replace a different explanation in --out")
    e.add_argument("--quiet", action="store_true")
    e.set_defaults(func=_explain)


def _encoder_args(p, default: str | None = "demo") -> None:
    p.add_argument("--encoder", default=default,
                   help="tile encoder: 'demo' (demo CNN trunk), a tile-model config JSON, or with --arch"
                        + (" (default demo)" if default else " (default: the head's own)"))
    p.add_argument("--arch", default=None, help="encoder architecture instead of --encoder: torchvision name "
                                                "(resnet18), timm:NAME or package.module:factory; random init")
    p.add_argument("--encoder-weights", default=None, help="state_dict for --arch (loaded with weights_only=True)")
    p.add_argument("--encoder-seed", type=int, default=0, help="seed of the random init of --arch")
    p.add_argument("--encoder-tile-size", type=int, default=None, help="tile side in px for --arch (default: 128, the size torchvision/timm encoders are built for)")
    p.add_argument("--encoder-mpp", type=float, default=None, help="µm/px for --arch (default: 0.5 µm/px, i.e. 20x)")


def _encoder_spec(args):
    if args.arch:
        spec = dict(arch=args.arch, seed=args.encoder_seed)
        for key, value in (("weights", args.encoder_weights), ("tile_size", args.encoder_tile_size),
                           ("mpp", args.encoder_mpp)):
            if value is not None:
                spec[key] = value
        return spec
    if args.encoder in (None, "demo"):
        return args.encoder
    return dict(arch="model-config", config=args.encoder)


def _fail(command: str, exc: Exception) -> int:
    print(f"lrp-captum slide {command}: error: {exc}", file=sys.stderr)
    return 2


def _cohort(args) -> int:
    from lrp_captum.demos.mil_cohort import write_cohort

    try:
        path = write_cohort(args.out, args.n, size=args.size, mpp=args.mpp, seed=args.seed,
                            test_fraction=args.test_fraction, quiet=args.quiet)
    except (ValueError, FileExistsError) as exc:
        return _fail("cohort-sample", exc)
    print(path)
    return 0


def _train(args) -> int:
    from lrp_captum.wsi.mil.training import train_mil
    from lrp_captum.wsi.reader import SlideError

    overrides = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr)) if v is not None}
    try:
        metrics = train_mil(args.cohort, args.out, head=args.head, encoder=_encoder_spec(args) or "demo",
                            cache_dir=args.embeddings, seed=args.seed, threads=args.threads, quiet=args.quiet,
                            **overrides)
    except (SlideError, FileNotFoundError, ValueError, RuntimeError) as exc:
        return _fail("train-mil", exc)
    print(json.dumps({k: metrics[k] for k in ("head", "n_train", "n_test", "train_balanced_accuracy",
                                              "test_balanced_accuracy", "embed_seconds", "train_seconds")}))
    return 0


def _explain(args) -> int:
    from lrp_captum.wsi.mil.explain import explain_mil_slide
    from lrp_captum.wsi.reader import SlideError

    options = {"composite": args.composite} if args.composite else None
    if options and args.method != "xmil_lrp":
        return _fail("explain-mil", ValueError("--composite applies to --method xmil_lrp only"))
    target = int(args.target) if args.target.lstrip("-").isdigit() else args.target
    try:
        manifest = explain_mil_slide(
            args.slide, args.mil, args.out, method=args.method, method_options=options, target=target,
            top_tiles=args.top_tiles, encoder=_encoder_spec(args), embeddings_dir=args.embeddings,
            pixel_composite=args.pixel_composite, output_downsample=args.output_downsample,
            min_tissue=args.min_tissue,
            tissue_options={"threshold": args.tissue_threshold} if args.tissue_threshold is not None else None,
            slide_mpp_override=args.slide_mpp, overwrite=args.overwrite, quiet=args.quiet)
    except (SlideError, FileExistsError, FileNotFoundError, ValueError, RuntimeError) as exc:
        return _fail("explain-mil", exc)
    if not args.quiet:
        print(json.dumps({"prediction": manifest["prediction"]["class_name"], "n_tiles": manifest["n_tiles"],
                          "timings": {k: round(v, 3) for k, v in manifest["timings"].items()}}))
    return 0
