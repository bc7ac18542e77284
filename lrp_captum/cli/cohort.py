"""``lrp-captum slide cohort``: explain every slide of a folder or CSV as Ray tasks (:mod:`lrp_captum.cohort`).

Registered into the ``slide`` group by :func:`register_cohort`. It takes the model and explain
options of ``slide explain`` (generated from the same declaration by
:func:`~lrp_captum.cli.slide_options.add_explain_options`) plus where to run (``--address``) and
what each slide asks for (``--cpus-per-slide``, ``--gpus-per-slide``).
"""
from __future__ import annotations

import sys

from lrp_captum.cli.arguments import (CommandError, int_range, non_negative_float, non_negative_int, number_in,
                                      output_folder)
from lrp_captum.cli.slide_options import add_explain_options, model_from_args, options_from_args
from lrp_captum.wsi.slide_options import COHORT, MAX_THREADS


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


def _cohort(args) -> int:
    import importlib.util

    from lrp_captum.cohort import CohortInputError, CohortLockedError, CohortRayError, read_slides, run_cohort

    prog = "lrp-captum slide cohort"
    if importlib.util.find_spec("ray") is None:  # found, not imported: connect_ray sets Ray up first
        print(f"{prog}: error: needs Ray; install the extra: pip install 'lrp-captum[cohort]'", file=sys.stderr)
        return 2
    try:
        specs = read_slides(args.slides)
        params = explain_params(args)
        result = run_cohort(specs, args.out, params=params, address=args.address, num_cpus=args.num_cpus,
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
    print(f"{prog}: {counts['done']} done, {counts['failed']} failed of {len(result.table)} slides; "
          f"table {result.out_dir / 'cohort.csv'}", file=sys.stderr)
    return 1 if counts["failed"] or counts["pending"] else 0
