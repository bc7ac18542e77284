"""What a cohort does to each slide: :class:`SlideTask`, and the explain task built on ``explain_slide``.

A slide task's ``run`` is a plain, importable function

    run(spec, out_dir, report, **params) -> dict

- ``spec`` : the :class:`~lrp_captum.cohort.slides.SlideSpec` of one slide;
- ``out_dir`` : that slide's output folder, ``<cohort out>/<slide_id>``;
- ``report(done_tiles, total_tiles)`` : call it as work progresses (drives the progress bar);
- ``params`` : the cohort-wide keyword arguments (JSON-able, hashed to decide what is finished).

It writes its outputs under ``out_dir``, raises with a clear message when the slide is unusable,
and returns flat summary fields (numbers and strings) for the cohort table. It must be resumable:
when a worker dies, Ray calls it again with the same arguments, and it should continue from what
it had committed. Another per-slide step (e.g. tile embeddings for MIL) plugs in as another
``SlideTask`` passed to :func:`lrp_captum.cohort.runner.run_cohort`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from lrp_captum.wsi.slide_options import SLIDE_OPTIONS


@dataclass(frozen=True)
class SlideTask:
    """A per-slide step of a cohort.

    Attributes
    ----------
    name : short name, recorded in the cohort manifest and in what decides a slide is finished.
    run : the per-slide function (see the module docstring); must be importable by Ray workers.
    complete : ``complete(out_dir) -> bool``, whether a slide's folder holds finished outputs.
    run_only : names of ``run``'s parameters that do not change its outputs (e.g. ``overwrite``);
        changing them does not make a finished slide run again.
    for_resources : ``for_resources(cpus_per_slide, gpus_per_slide) -> dict``, default parameters
        that follow from what each slide's task reserves (device, threads); given ones win.
    """

    name: str
    run: Callable
    complete: Callable[[Path], bool]
    run_only: tuple = ()
    for_resources: Callable[[float, float], dict] | None = None


@lru_cache(maxsize=2)
def _load_model_cached(model_json: str, device: str):
    """A worker process runs many slides: load each model once per process, not once per slide."""
    from lrp_captum.wsi.model import load_model

    return load_model(json.loads(model_json), device)


def model_json(model) -> str:
    """Canonical JSON of a model config path or dict (the cache and hash key of the model)."""
    return json.dumps(str(Path(model).resolve()) if isinstance(model, (str, Path)) else model, sort_keys=True)


def explain_summary(out_dir: Path, manifest: dict) -> dict:
    """Cohort-table fields of one explained slide, from its ``manifest.json`` and ``tiles.csv``.

    Returns
    -------
    dict with ``n_tiles``, ``prediction`` (the class most tiles are predicted as), ``frac_<class>``
    (fraction of tissue tiles predicted as each class), ``relevance_sum`` / ``relevance_pos`` /
    ``relevance_neg`` (summed over all tiles; units of the explained output, see docs/wsi.md),
    ``relevance_per_tile`` (mean ``relevance_sum`` per tile) and ``device`` (``cpu`` or ``cuda``).
    """
    from lrp_captum.csv_cells import read_csv_frame

    tiles = read_csv_frame(out_dir / "tiles.csv", usecols=["prediction", "relevance_sum", "relevance_pos",
                                                         "relevance_neg"])
    classes = list(manifest["model"]["classes"])
    n = len(tiles)
    counts = tiles["prediction"].value_counts()
    fractions = {f"frac_{c}": float(counts.get(c, 0)) / n for c in classes}
    return dict(n_tiles=n, prediction=max(classes, key=lambda c: counts.get(c, 0)), **fractions,
                relevance_sum=float(tiles["relevance_sum"].sum()),
                relevance_pos=float(tiles["relevance_pos"].sum()),
                relevance_neg=float(tiles["relevance_neg"].sum()),
                relevance_per_tile=float(tiles["relevance_sum"].mean()),
                device=manifest["parameters"]["device"])


def explain_task(spec, out_dir: Path, report, *, model, device: str = "cpu", slide_mpp_override=None,
                 **explain_kwargs) -> dict:
    """Explain one slide with :func:`lrp_captum.wsi.pipeline.explain_slide` into ``out_dir``.

    Parameters
    ----------
    spec, out_dir, report : see the module docstring.
    model : model config path or dict (as for ``explain_slide``).
    device : ``cpu`` or ``cuda`` (resolved by the runner from the slide's Ray resources).
    slide_mpp_override : cohort-wide µm/px for slides recording none; a slide's own ``spec.mpp``
        takes precedence.
    explain_kwargs : the other options of ``explain_slide`` (``threads``, ``batch_size``,
        ``composite``, ...: :data:`~lrp_captum.wsi.slide_options.SLIDE_OPTIONS`); ``quiet`` is
        forced, the cohort draws its own progress bar. The slide's folder is not locked on its
        own: the cohort holds the cohort's folder, and a retry on another node must be able to
        take up a folder whose worker died.

    Returns
    -------
    The fields of :func:`explain_summary`.
    """
    bundle = _load_model_cached(model_json(model), device)
    from lrp_captum.wsi.pipeline import explain_slide

    options = dict(explain_kwargs, device=device, quiet=True,
                   slide_mpp_override=spec.mpp if spec.mpp is not None else slide_mpp_override)
    manifest = explain_slide(spec.path, bundle, out_dir, options, progress_callback=report, lock=False)
    return explain_summary(Path(out_dir), manifest)


def explained(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a finished ``explain_slide`` run (its manifest is written last)."""
    return (Path(out_dir) / "manifest.json").is_file()


def explain_resources(cpus_per_slide: float, gpus_per_slide: float) -> dict:
    """``device`` from the GPUs a slide reserves, one torch thread per reserved core, no reader processes.

    The thread count is also part of what makes a resumed slide byte-identical to an
    uninterrupted one; readers are off since the parallelism comes from running slides side by side.
    """
    return dict(device="cuda" if gpus_per_slide > 0 else "cpu", threads=max(1, int(cpus_per_slide)),
                num_workers=0)


#: the options that do not change a slide's outputs (``overwrite``, ``keep_work``, ``num_workers``, ``quiet``)
EXPLAIN = SlideTask("explain", explain_task, explained,
                    run_only=tuple(o.name for o in SLIDE_OPTIONS if not o.hashed), for_resources=explain_resources)


# --- MIL heads on TRIDENT/CLAM features --------------------------------------------------------
@lru_cache(maxsize=2)
def _load_head_cached(head: str, head_arch: str, head_classes: tuple | None):
    """A worker process runs many slides: load the head once per process."""
    from lrp_captum.wsi.mil.head_files import head_from_checkpoint

    return head_from_checkpoint(head, head_arch, list(head_classes) if head_classes else None)


def explain_mil_summary(manifest: dict) -> dict:
    """Cohort-table fields of one slide explained by a MIL head, from its ``manifest.json``.

    Returns
    -------
    dict with ``n_tiles``, ``prediction`` (the head's slide class), ``p_<class>`` (its
    probabilities), ``target`` and ``target_logit``, ``evidence_sum`` (= the target logit for
    xMIL-LRP on attention heads), ``evidence_per_tile`` and ``device``.
    """
    classes = manifest["head"]["classes"]
    probs = {f"p_{c}": float(p) for c, p in zip(classes, manifest["prediction"]["probabilities"])}
    return dict(n_tiles=manifest["n_tiles"], prediction=manifest["prediction"]["class_name"], **probs,
                target=manifest["target"]["class_name"], target_logit=manifest["target"]["logit"],
                evidence_sum=manifest["evidence_sum"], evidence_per_tile=manifest["evidence_sum"] / manifest["n_tiles"],
                device="cpu")


def explain_mil_task(spec, out_dir: Path, report, *, head: str, head_arch: str, features: str,
                     head_classes=None, slide_mpp_override=None, threads: int | None = None, **options) -> dict:
    """Explain one slide from its TRIDENT/CLAM features with a MIL head trained elsewhere.

    Parameters
    ----------
    spec, out_dir, report : see the module docstring.
    head, head_arch, head_classes : the head's checkpoint, architecture and class names
        (:func:`~lrp_captum.wsi.mil.head_files.head_from_checkpoint`).
    features : the folder holding ``<slide>.h5`` / ``.pt`` for every slide (a TRIDENT job
        folder, CLAM's ``h5_files/``), or one slide's file.
    slide_mpp_override : as for :func:`explain_task`.
    threads : torch CPU threads of this task.
    options : the other options of :func:`~lrp_captum.wsi.mil.explain.explain_mil_slide`
        (``target``, ``patches``, ``patch_size_level0``, ``output_downsample``, ``overwrite``, ...).

    Returns
    -------
    The fields of :func:`explain_mil_summary`.
    """
    import torch

    from lrp_captum.wsi.mil.explain import explain_mil_slide

    if threads:
        torch.set_num_threads(int(threads))
    loaded = _load_head_cached(str(head), head_arch, tuple(head_classes) if head_classes else None)
    report(0, 1)
    manifest = explain_mil_slide(spec.path, loaded, out_dir, dict(
        options, features=features, quiet=True,
        slide_mpp_override=spec.mpp if spec.mpp is not None else slide_mpp_override))
    report(1, 1)
    return explain_mil_summary(manifest)


def explain_mil_resources(cpus_per_slide: float, gpus_per_slide: float) -> dict:
    """One torch thread per reserved core (the heads run on the CPU)."""
    return dict(threads=max(1, int(cpus_per_slide)))


#: a MIL head on each slide's TRIDENT/CLAM features (no tile embedded)
EXPLAIN_MIL_FEATURES = SlideTask("explain-mil-features", explain_mil_task, explained,
                                 run_only=("overwrite", "quiet", "threads"), for_resources=explain_mil_resources)
