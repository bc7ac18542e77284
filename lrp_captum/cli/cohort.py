"""``lrp-captum slide cohort``: explain every slide of a folder or CSV as Ray tasks (:mod:`lrp_captum.cohort`).

Registered into the ``slide`` group by :func:`register_cohort`. It takes the model and explain
options of ``slide explain`` (copied from that command's parser, so the two never drift apart)
plus where to run (``--address``) and what each slide asks for (``--cpus-per-slide``,
``--gpus-per-slide``).
"""
from __future__ import annotations

import argparse
import copy
import sys

# ``slide explain`` options that do not apply per cohort: the positional slide, the output
# folder and the progress switch are the cohort's own; --workers gets a cohort default (0)
_NOT_COPIED = {"help", "slide", "out", "quiet", "workers", "device"}
_COHORT_HELP = {"threads": "torch CPU threads per slide (default: --cpus-per-slide, at least 1)",
                "overwrite": "discard a run with other parameters already in a slide's folder"}


def _copy_explain_options(explain: argparse.ArgumentParser, cohort: argparse.ArgumentParser) -> None:
    group = cohort.add_argument_group("model and explain options (as for `slide explain`)")
    for action in explain._actions:  # argparse's own ``parents=`` copies actions the same way
        if action.dest not in _NOT_COPIED:
            action = copy.copy(action)
            action.help = _COHORT_HELP.get(action.dest, action.help)
            group._add_action(action)


def register_cohort(sub) -> None:
    """Add ``cohort`` to the ``slide`` group's sub-parsers ``sub`` (after ``explain``)."""
    c = sub.add_parser("cohort", help="explain every slide of a folder or CSV on Ray (local or a cluster)",
                       description="Explain every slide of a cohort, one Ray task per slide. Outputs go to "
                                   "OUT/<slide_id>/ as for `slide explain`, plus OUT/cohort.csv, "
                                   "OUT/cohort.parquet and OUT/cohort.json. Rerun the same command to "
                                   "finish an interrupted cohort: finished slides are skipped.")
    c.add_argument("slides", help="folder of slide files, or CSV with a 'path' column and optional "
                                  "'slide_id', 'label', 'mpp' columns")
    c.add_argument("--out", required=True, help="cohort output folder (shared storage on a cluster)")
    run = c.add_argument_group("where it runs")
    run.add_argument("--address", default=None,
                     help="join a running Ray cluster: 'auto' (the one started on this machine) or HOST:PORT; "
                          "default: start a local Ray for this run")
    run.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    run.add_argument("--cpus-per-slide", type=float, default=1.0,
                     help="CPUs each slide's task reserves; also its torch threads (default 1)")
    run.add_argument("--gpus-per-slide", type=float, default=0.0,
                     help="GPUs each slide's task reserves, e.g. 1 or 0.5; > 0 runs slides on CUDA (default 0)")
    run.add_argument("--max-retries", type=int, default=3,
                     help="reruns of a slide whose worker process died (default 3)")
    run.add_argument("--workers", type=int, default=0,
                     help="DataLoader reader processes inside each slide's task (default 0)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    explain = sub.choices.get("explain")
    if explain is not None:
        _copy_explain_options(explain, c)
    c.set_defaults(func=_cohort)


def _model(args):
    """Model config (path or dict) from ``--model`` / ``--arch``, as ``slide explain`` reads them."""
    if args.arch:
        if not (args.weights and args.classes):
            raise ValueError("--arch needs --weights FILE and --classes a,b,...")
        classes = [c.strip() for c in args.classes.split(",")]
        return dict(architecture=args.arch, weights=args.weights, classes=classes,
                    kwargs=dict(num_classes=len(classes)), tile_size=args.model_tile_size, mpp=args.model_mpp)
    if args.model == "demo":
        from ..wsi.train import demo_model_config

        return str(demo_model_config(quiet=args.quiet))
    return args.model


def explain_params(args) -> dict:
    """Keyword arguments of the cohort's explain task from the command line.

    The model is loaded and the composite built once here, so a wrong model or option fails at
    once with exit code 2 instead of once per slide.
    """
    from ..wsi.explain import DEFAULT_COMPOSITE, TileExplainer
    from ..wsi.model import load_model

    model = _model(args)
    bundle = load_model(model, "cpu")
    target = int(args.target) if args.target.lstrip("-").isdigit() else args.target
    if target != "predicted":
        bundle.class_index(target)
    composite = args.composite or DEFAULT_COMPOSITE
    TileExplainer(bundle, composite, args.output_mode)
    params = dict(model=model, target=target, composite=composite, output_mode=args.output_mode, mpp=args.mpp,
                  tile_size=args.tile_size, overlap=args.overlap, output_downsample=args.output_downsample,
                  min_tissue=args.min_tissue, slide_mpp_override=args.slide_mpp, batch_size=args.batch_size,
                  num_workers=args.workers, overwrite=args.overwrite, keep_work=args.keep_work)
    if args.tissue_threshold is not None:
        params["tissue_options"] = {"threshold": args.tissue_threshold}
    if args.threads is not None:
        params["threads"] = args.threads
    return params


def _cohort(args) -> int:
    import importlib.util

    from ..cohort import CohortInputError, CohortLockedError, CohortRayError, read_slides, run_cohort

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
    except (CohortInputError, CohortLockedError, CohortRayError, FileNotFoundError, ValueError,
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
