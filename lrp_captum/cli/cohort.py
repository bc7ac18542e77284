"""``lrp-captum slide cohort``: explain every slide of a folder or CSV as Ray tasks (:mod:`lrp_captum.cohort`).

Registered into the ``slide`` group by :func:`register_cohort`. It takes the model and explain
options of ``slide explain`` (generated from the same declaration by
:func:`~lrp_captum.cli.slide_options.add_explain_options`) plus where to run (``--address``) and
what each slide asks for (``--cpus-per-slide``, ``--gpus-per-slide``).
"""
from __future__ import annotations

import sys

from lrp_captum.cli.arguments import (CommandError, int_range, non_negative_float, non_negative_int, number_in,
                                      output_folder, positive_float, positive_int)
from lrp_captum.cli.slide_options import add_explain_options, add_options, model_from_args, options_from_args
from lrp_captum.wsi.slide_options import COHORT, FEATURE_OPTIONS, HEAD_OPTIONS, MAX_THREADS, SLIDE_OPTIONS
from lrp_captum.wording import counted

#: the options a cohort from features passes on to each slide's MIL explanation; the others are the tile model's
MIL_SHARED = ("target", "output_downsample", "slide_mpp_override", "overwrite", "threads")


def register_cohort(sub) -> None:
    """Add ``cohort`` to the ``slide`` group's sub-parsers ``sub`` (after ``explain``)."""
    c = sub.add_parser("cohort", help="explain every slide of a folder or CSV on Ray (local or a cluster)",
                       description="Explain every slide of a cohort, one Ray task per slide. Outputs go to "
                                   "OUT/<slide_id>/ as for `slide explain`, plus OUT/cohort.csv, "
                                   "OUT/cohort.parquet and OUT/cohort.json. Rerun the same command to "
                                   "finish an interrupted cohort: finished slides are skipped.")
    c.add_argument("slides", help="folder of slide files, or CSV with a 'path' column and optional "
                                  "'slide_id', 'label', 'mpp' columns")
    c.add_argument("--out", type=output_folder, required=True, help="cohort output folder (shared storage on a cluster)")
    run = c.add_argument_group("where it runs")
    run.add_argument("--address", default=None,
                     help="join a running Ray cluster: 'auto' (the one started on this machine) or HOST:PORT; "
                          "default: start a local Ray for this run")
    run.add_argument("--num-cpus", type=int_range(1, MAX_THREADS), default=None, help="CPUs of the local Ray (default: all)")
    run.add_argument("--cpus-per-slide", type=number_in(0, MAX_THREADS, lower_open=True), default=1.0,
                     help="CPUs each slide's task reserves; also its torch threads (default 1)")
    run.add_argument("--gpus-per-slide", type=non_negative_float, default=0.0,
                     help="GPUs each slide's task reserves, e.g. 1 or 0.5; > 0 runs slides on CUDA (default 0)")
    run.add_argument("--max-retries", type=non_negative_int, default=3,
                     help="reruns of a slide whose worker process died (default 3)")
    add_explain_options(c, COHORT)  # the options of `slide explain`, from the same declaration
    add_options(c, COHORT, FEATURE_OPTIONS, title="a MIL head on TRIDENT/CLAM features (instead of a tile model)")
    add_options(c, COHORT, HEAD_OPTIONS, title="the MIL head (with --features)")
    c.set_defaults(func=_cohort)


def explain_params(args) -> dict:
    """Keyword arguments of the cohort's explain task from the command line.

    The model is loaded and the composite built once here, so a wrong model or option fails at
    once with exit code 2 instead of once per slide.
    """
    from lrp_captum.wsi.tile_relevance import TileExplainer, default_composite
    from lrp_captum.wsi.model import load_model

    params = dict(model=model_from_args(args), **options_from_args(args, COHORT))
    params.pop("quiet")  # the cohort draws its own bars (run_cohort's quiet)
    bundle = load_model(params["model"], "cpu")
    if params["target"] != "predicted":
        bundle.class_index(params["target"])
    params["composite"] = args.composite or default_composite(bundle)  # recorded in the manifest
    TileExplainer(bundle, params["composite"], args.output_mode)
    params = {k: v for k, v in params.items() if v is not None}  # None: explain_slide's default
    return params


def mil_params(args) -> dict:
    """Keyword arguments of the cohort's MIL task (:func:`~lrp_captum.cohort.tasks.explain_mil_task`)
    from the command line; the head is loaded once here, so a bad checkpoint fails at once.

    Raises :class:`CommandError` for a tile model's option given with ``--features``.
    """
    from lrp_captum.cli.mil import head_from_args

    if args.model != "demo" or args.arch or args.weights or args.classes:
        raise CommandError("--features are explained by a MIL head (--head, --head-arch), not by a tile model: "
                           "leave out --model/--arch/--weights/--classes")
    tile_only = [o.cli_flag for o in SLIDE_OPTIONS.for_command(COHORT)
                 if o.name not in MIL_SHARED and o.hashed and getattr(args, o.dest) != o.default]
    if tile_only:
        raise CommandError(f"{', '.join(tile_only)} appl{'y' if len(tile_only) > 1 else 'ies'} to tile models, not to "
                           f"a MIL head on --features")
    head = head_from_args(args)
    if args.target != "predicted":
        head.class_index(args.target)
    params = dict(head=str(args.head.resolve()), head_arch=args.head_arch, head_classes=head.classes,
                  **{k: (str(v.resolve()) if hasattr(v, "resolve") else v)
                     for k, v in options_from_args(args, COHORT, FEATURE_OPTIONS).items()},
                  **{k: getattr(args, SLIDE_OPTIONS[k].dest) for k in MIL_SHARED})
    return {k: v for k, v in params.items() if v is not None}


def _cohort(args) -> int:
    import importlib.util

    from lrp_captum.cohort import EXPLAIN, CohortInputError, CohortLockedError, CohortRayError, read_slides, run_cohort

    prog = "lrp-captum slide cohort"
    if importlib.util.find_spec("ray") is None:  # found, not imported: connect_ray sets Ray up first
        print(f"{prog}: error: needs Ray; install the extra: pip install 'lrp-captum[cohort]'", file=sys.stderr)
        return 2
    try:
        specs = read_slides(args.slides)
        if args.features is not None:
            from lrp_captum.cohort.tasks import EXPLAIN_MIL_FEATURES

            task, params = EXPLAIN_MIL_FEATURES, mil_params(args)
            _check_feature_files(args.features, specs)
        else:
            if args.head or args.head_arch or args.head_classes:
                raise CommandError("--head explains TRIDENT/CLAM features: add --features FOLDER")
            task, params = EXPLAIN, explain_params(args)
        result = run_cohort(specs, args.out, task=task, params=params, address=args.address, num_cpus=args.num_cpus,
                            cpus_per_slide=args.cpus_per_slide, gpus_per_slide=args.gpus_per_slide,
                            max_retries=args.max_retries, quiet=args.quiet,
                            manifest_extra=dict(command=" ".join(["lrp-captum"] + sys.argv[1:])))
    except (CohortInputError, CohortLockedError, CohortRayError, CommandError, FileNotFoundError, ValueError,
            RuntimeError) as exc:
        print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished slides are recorded in {args.out}, run the same command again "
              f"to continue", file=sys.stderr)
        return 130
    counts = result.counts
    print(f"{prog}: {counts['done']} done, {counts['failed']} failed of {counted(len(result.table), 'slide')}; "
          f"table {result.out_dir / 'cohort.csv'}", file=sys.stderr)
    for row in result.table[result.table["status"] == "failed"].itertuples():
        print(f"  {row.slide_id}: {row.error}", file=sys.stderr)  # the table's reason, one line each
    return 1 if counts["failed"] or counts["pending"] else 0


def _check_feature_files(features, specs) -> None:
    """Refuse a features folder that holds the features of none of the slides (a wrong folder);
    a slide without its file fails alone, with the message naming it."""
    from lrp_captum.wsi.mil.feature_bags import feature_files_in

    if not features.is_dir():
        raise CommandError(f"--features {features} is a file; a cohort needs the folder holding <slide>.h5 for "
                           f"every slide (a TRIDENT job folder or CLAM's h5_files/)")
    files = feature_files_in(features)
    if not any(s.path.stem in files for s in specs):
        raise CommandError(f"{features} holds the features of none of the {len(specs)} slides (it has "
                           f"{', '.join(sorted(files)[:5])}{' ...' if len(files) > 5 else ''}); the file names must be "
                           f"the slides' names")
