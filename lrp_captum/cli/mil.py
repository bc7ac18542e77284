"""``lrp-captum slide cohort-sample|train-mil|explain-mil``: a thin layer over :mod:`lrp_captum.wsi.mil`.

The options ``train-mil`` and ``explain-mil`` share with the slide commands (``--target``,
``--min-tissue``, ``--threads``, ...) and those of ``explain-mil`` itself (``--method``,
``--top-tiles``, ...) are generated from their declarations
(:data:`~lrp_captum.wsi.slide_options.SLIDE_OPTIONS`, :data:`~lrp_captum.wsi.mil.explain.MIL_OPTIONS`).
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from lrp_captum.cli.arguments import CommandError, add_option, composite_name, fail, output_file, output_folder
from lrp_captum.cli.slide_options import add_options, options_from_args, resolution, sample_side
from lrp_captum.wsi.slide_options import EXPLAIN_MIL, HEAD_OPTIONS, TRAIN_MIL


def register_mil(sub) -> None:
    """Add the MIL commands to the ``slide`` group's sub-parsers ``sub``."""
    c = sub.add_parser("cohort-sample", help="write a synthetic MIL cohort: slides, lesion masks, labels")
    c.add_argument("--n", type=int, required=True, help="number of slides (classes alternate)")
    c.add_argument("--out", required=True, type=output_folder, help="cohort folder (slides/, masks/, cohort.csv, cohort.json)")
    c.add_argument("--size", type=sample_side(1024), default=2048, help="level-0 side in px, from 1024 to 100000 (default 2048)")
    c.add_argument("--mpp", type=resolution, default=0.5, help="µm per level-0 pixel (default 0.5)")
    add_option(c, "--seed", help_more="of the slides' layout and lesions (default 0)")
    c.add_argument("--test-fraction", type=float, default=0.4, help="share of held-out slides (default 0.4)")
    c.add_argument("--quiet", action="store_true", help="no progress messages")
    c.set_defaults(func=_cohort)

    t = sub.add_parser("train-mil", help="train a MIL head (ABMIL or transformer) on slide labels only")
    t.add_argument("--cohort", required=True, help="cohort folder or its cohort.csv (slide, label, split)")
    t.add_argument("--out", required=True, type=output_file, help="head path without suffix (writes OUT.pt and OUT.json)")
    t.add_argument("--head", choices=("abmil", "transmil"), default="abmil",
                   help="head architecture: gated attention-MIL or a transformer aggregator (default abmil)")
    _encoder_args(t)
    t.add_argument("--embeddings", default=None, help="embedding cache folder (default COHORT/embeddings)")
    t.add_argument("--epochs", type=int, default=None, help="training epochs (default 100 for abmil, 80 for transmil)")
    t.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 2e-3 for abmil, 5e-4 for transmil)")
    add_option(t, "--seed", help_more="of the head's initial weights and batches (default 0)")
    add_options(t, TRAIN_MIL, title="run options")
    t.set_defaults(func=_train)

    e = sub.add_parser("explain-mil", help="signed evidence per tile for a slide-level MIL prediction, "
                                           "pixel maps of the top tiles",
                       description="Explain a slide-level MIL prediction: a head of train-mil (--mil) on tiles "
                                   "embedded here, or a head trained elsewhere (--head, --head-arch) on the "
                                   "TRIDENT/CLAM features of the slide (--features; no tile is embedded, so "
                                   "there are no pixel maps).")
    e.add_argument("slide", help="slide file (any format OpenSlide reads)")
    e.add_argument("--mil", default=None, help="MIL head JSON written by train-mil (or --head)")
    e.add_argument("--out", required=True, type=output_folder, help="output folder (rerun the same command: returns at once)")
    e.add_argument("--composite", type=composite_name, default=None,
                   help="LRP composite of xmil_lrp (default: xmil)")
    _encoder_args(e, default=None)
    from lrp_captum.wsi.mil.explain import MIL_OPTIONS

    add_options(e, EXPLAIN_MIL, MIL_OPTIONS)
    add_options(e, EXPLAIN_MIL, HEAD_OPTIONS, title="a head trained elsewhere (with --features)")
    e.set_defaults(func=_explain)


def _encoder_args(p, default: str | None = "demo") -> None:
    p.add_argument("--encoder", default=default,
                   help="tile encoder: 'demo' (demo CNN trunk), a tile-model config JSON, a model folder as the "
                        "hub stores it (config.json + model.safetensors or pytorch_model.bin: UNI, Virchow2, "
                        "H-optimus-0, Phikon; CONCH's pytorch_model.bin alone), or with --arch"
                        + (" (default demo)" if default else " (default: the head's own)"))
    p.add_argument("--arch", default=None, help="encoder architecture instead of --encoder: torchvision name "
                                                "(resnet18), timm:NAME or package.module:factory; random init")
    p.add_argument("--encoder-weights", default=None, help="state_dict for --arch (loaded with weights_only=True)")
    p.add_argument("--encoder-seed", type=int, default=0, help="seed of the random init of --arch")
    p.add_argument("--encoder-tile-size", type=int, default=None, help="tile side in px for --arch (default: 128, the size torchvision/timm encoders are built for)")
    p.add_argument("--encoder-mpp", type=float, default=None, help="µm/px for --arch or an encoder folder (default: 0.5 µm/px, i.e. 20x)")


def _encoder_spec(args, head_spec: dict | None = None):
    """The encoder spec of the arguments (None: ``head_spec``), the demo model's config filled in."""
    if args.arch:
        spec = dict(arch=args.arch, seed=args.encoder_seed)
        for key, value in (("weights", args.encoder_weights), ("tile_size", args.encoder_tile_size),
                           ("mpp", args.encoder_mpp)):
            if value is not None:
                spec[key] = value
        return spec
    if args.encoder is None:
        spec = head_spec
    elif args.encoder == "demo":
        spec = {"arch": "demo"}
    elif Path(args.encoder).is_dir():  # a hub folder (timm or transformers ViT): build_encoder reads it
        return {"arch": args.encoder, **({"mpp": args.encoder_mpp} if args.encoder_mpp is not None else {})}
    else:
        return dict(arch="model-config", config=args.encoder)
    if spec is not None and spec.get("arch") == "demo":
        from lrp_captum.demos.slide_model import demo_encoder_spec

        spec = dict(spec, **demo_encoder_spec())  # the library never trains the demo model itself
    return spec


def _fail(command: str, exc: Exception) -> int:
    return fail(f"lrp-captum slide {command}", exc)


def _report_warnings(prog: str, caught) -> None:
    """The library's warnings about the user's files (a doubtful feature file, ...) as one line
    each, ``prog: warning: message``; others as Python shows them (call it outside the
    ``catch_warnings`` block that caught them: inside, showing one records it again)."""
    for w in caught:
        if "lrp_captum" in str(w.filename).replace("\\", "/"):
            print(f"{prog}: warning: {' '.join(str(w.message).split())}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def head_from_args(args):
    """The MIL head of ``explain-mil``/``cohort``: a train-mil JSON (``--mil``) or a checkpoint
    trained elsewhere (:data:`~lrp_captum.wsi.slide_options.HEAD_OPTIONS`), loaded once here so a
    bad file stops the command before any slide is read.

    Raises :class:`CommandError` for options that do not fit together, ``ValueError`` /
    ``FileNotFoundError`` naming a bad file.
    """
    from lrp_captum.wsi.mil.head_files import head_from_checkpoint, load_head

    mil = getattr(args, "mil", None)
    if args.head is None:
        if args.head_arch or args.head_classes:
            raise CommandError("--head-arch and --head-classes go with --head CHECKPOINT")
        if mil is None:
            raise CommandError("name the MIL head: --mil HEAD.json (train-mil) or --head CHECKPOINT --head-arch ARCH")
        return load_head(mil)
    if mil is not None:
        raise CommandError("give either --mil HEAD.json or --head CHECKPOINT, not both")
    if args.head_arch is None:
        raise CommandError("--head needs --head-arch (the architecture it was trained as)")
    if args.features is None:
        raise CommandError("--head explains TRIDENT/CLAM features: add --features FILE_OR_FOLDER")
    return head_from_checkpoint(args.head, args.head_arch, args.head_classes)


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
        metrics = train_mil(args.cohort, args.out, head=args.head, encoder=_encoder_spec(args),
                            cache_dir=args.embeddings, seed=args.seed, **options_from_args(args, TRAIN_MIL),
                            **overrides)
    except (SlideError, FileNotFoundError, ValueError, RuntimeError) as exc:
        return _fail("train-mil", exc)
    print(json.dumps({k: metrics[k] for k in ("head", "n_train", "n_test", "train_balanced_accuracy",
                                              "test_balanced_accuracy", "embed_seconds", "train_seconds")}))
    return 0


def _explain(args) -> int:
    from lrp_captum.wsi.mil.explain import MIL_OPTIONS, explain_mil_slide
    from lrp_captum.wsi.reader import SlideError

    options = options_from_args(args, EXPLAIN_MIL, MIL_OPTIONS)
    if args.composite:
        if options["method"] != "xmil_lrp":
            return _fail("explain-mil", ValueError("--composite applies to --method xmil_lrp only"))
        options["method_options"] = {"composite": args.composite}
    caught = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            head = head_from_args(args)
            encoder = None if args.features else _encoder_spec(args, head.encoder_spec)
            if args.features and (args.encoder or args.arch):
                raise CommandError("--features are the tile embeddings already: leave out --encoder/--arch")
            manifest = explain_mil_slide(args.slide, head, args.out, options, encoder=encoder)
    except (CommandError, SlideError, FileExistsError, FileNotFoundError, ValueError, RuntimeError) as exc:
        _report_warnings("lrp-captum slide explain-mil", caught)
        return _fail("explain-mil", exc)
    _report_warnings("lrp-captum slide explain-mil", caught)
    if not args.quiet:
        print(json.dumps({"prediction": manifest["prediction"]["class_name"], "n_tiles": manifest["n_tiles"],
                          "timings": {k: round(v, 3) for k, v in manifest["timings"].items()}}))
    return 0
