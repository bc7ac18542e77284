"""An EEG result folder: what ``lrp-captum eeg explain`` writes and the app's EEG page shows.

>>> result = explain_epochs("models/erp", "sim_erp-epo.fif", which="held-out")
>>> summary = save_result_folder(result, "results/erp")

The folder holds the relevance as MNE files (``relevance-epo.fif``, ``relevance-ave.fif``, from
:meth:`~lrp_captum.eeg.explain.EEGRelevance.save`), ``summary.json`` and, unless
``figures=False``, ``class_averages.png`` and one ``topomaps_<class>.png`` per class.
``summary.json`` reports accuracy only with the split it was measured on (held-out, training,
unknown split), the chance-level test, the ground truth's concentration when the epochs carry
one (:mod:`lrp_captum.eeg.ground_truth`), and the warnings of the explanation. Written here, in
the library, so that a folder made from Python shows in the app exactly as one made by the CLI.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from lrp_captum.eeg.explain import EEGRelevance, relevance_concentration
from lrp_captum.eeg.ground_truth import GroundTruth, read_ground_truth
from lrp_captum.eeg.heldout import HELD_OUT, TRAINING, UNKNOWN
from lrp_captum.wording import counted

SUMMARY_NAME = "summary.json"

#: (split, its key in summary.json, its name in text)
_SPLITS = ((HELD_OUT, "held_out", "held-out"), (TRAINING, "training", "training"),
           (UNKNOWN, "unknown_split", "unknown-split"))


def describe_split(split: np.ndarray) -> str:
    """The epochs of ``split`` in words: ``"20 held-out epochs"``, ``"20 held-out and 80 training
    epochs"``."""
    counts = [(int((split == s).sum()), name) for s, _, name in _SPLITS if (split == s).any()]
    if len(counts) == 1:
        return counted(counts[0][0], f"{counts[0][1]} epoch")
    return " and ".join(f"{n} {name}" for n, name in counts) + " epochs"


def accuracy_summary(result: EEGRelevance) -> dict:
    """``summary.json``'s accuracy entries: ``n_<split>`` and ``<split>_accuracy`` per split
    (``unknown_split`` only when there are such epochs; an accuracy is ``None`` without labels),
    ``at_chance`` and the chance test (``chance``: split, n, accuracy, chance level, p)."""
    entries = {}
    for split, key, _ in _SPLITS:
        n = int((result.split == split).sum())
        if split == UNKNOWN and n == 0:
            continue
        entries[f"n_{key}"] = n
        entries[f"{key}_accuracy"] = result.accuracy_of(split)
    tested = result.chance_test()
    entries["at_chance"] = None if tested is None else not tested[1].above_chance
    entries["chance"] = None if tested is None else {
        "split": tested[0], "n": tested[1].n, "accuracy": tested[1].accuracy,
        "chance_level": tested[1].chance, "p_value": tested[1].p_value}
    return entries


def accuracy_text(result: EEGRelevance) -> str:
    """``"held-out accuracy 0.950 on 20 epochs; ..."``: every accuracy named by its split."""
    printed = [f"{name} accuracy {result.accuracy_of(split):.3f} on "
               f"{counted(int((result.split == split).sum()), 'epoch')}"
               for split, _, name in _SPLITS if result.accuracy_of(split) is not None]
    return "; ".join(printed) or "events do not name the model's classes: not scored"


def _ground_truth(result: EEGRelevance) -> Optional[GroundTruth]:
    """The ground truth of the explained epochs: their file's sidecar, else their own info."""
    for source in (result.sources.get("epochs"), result.epochs):
        if source is None:
            continue
        try:
            return read_ground_truth(source)
        except (ValueError, OSError):
            continue
    return None


def save_result_folder(result: EEGRelevance, folder, *, ground_truth: Optional[GroundTruth] = None,
                       window: Optional[tuple[float, float]] = None,
                       times: Optional[Sequence[float]] = None, figures: bool = True) -> dict:
    """Write an EEG result folder (module docstring) and return its summary.

    Parameters
    ----------
    result : EEGRelevance
        From :func:`lrp_captum.eeg.explain.explain_epochs`.
    folder : path
        Created if missing; files of an earlier result are replaced.
    ground_truth : GroundTruth, optional
        Default: the one the explained epochs carry (their file's ``.truth.json`` sidecar or
        their info), if any.
    window : (tmin, tmax), optional
        Time window (s) of the averaged topomaps; default the ground truth's, else the epoch.
    times : sequence of float, optional
        Topomap time points (s); default 4 evenly spaced inside the epoch.
    figures : bool
        Write the PNG figures (titles say which epochs they average, and a model at chance).

    Returns
    -------
    dict
        The content of ``summary.json``.
    """
    folder = Path(folder)
    paths = result.save(folder)
    truth = ground_truth if ground_truth is not None else _ground_truth(result)
    described = describe_split(result.split)
    accuracy = accuracy_summary(result)
    if figures:
        paths.update(_write_figures(result, folder, described, accuracy["at_chance"], truth, window, times))
    target = result.requested_target
    summary = {"epochs": result.sources.get("epochs"), "model": result.sources.get("model"),
               "composite": result.composite,
               "target": target if isinstance(target, (str, int)) else "per epoch",
               "explained": result.which, "n_explained": len(result.epochs),
               "held_out_epochs": [int(i) for i in result.indices[result.split == HELD_OUT]],
               "training_epochs": [int(i) for i in result.indices[result.split == TRAINING]],
               **accuracy,
               "model_training_record": result.model_metrics,
               "figures_of": described,
               "files": {k: str(v) for k, v in paths.items()}}
    if truth is not None:
        c = relevance_concentration(result.epochs, truth.channels, truth.tmin, truth.tmax)
        summary["ground_truth"] = {"channels": truth.channels, "tmin": truth.tmin,
                                   "tmax": truth.tmax, "mass": float(c["mass"].mean()),
                                   "share": c["share"], "ratio": c["ratio"], "of": described}
    summary["warnings"] = list(result.warnings)
    (folder / SUMMARY_NAME).write_text(json.dumps(summary, indent=2))
    return summary


def _write_figures(result: EEGRelevance, folder: Path, described: str, at_chance, truth, window,
                   times) -> dict:
    """``class_averages.png`` and ``topomaps_<class>.png``; each title counts the epochs it
    averages (a class's topomaps: that class's, the evoked's ``nave``)."""
    from lrp_captum.eeg.plots import plot_class_averages, plot_topomaps, save_figure

    caution = "; model at chance level: do not interpret" if at_chance else ""
    epoch_times = result.epochs.times
    if window is None:
        window = (truth.tmin, truth.tmax) if truth else (float(epoch_times[0]), float(epoch_times[-1]))
    if times is None:
        times = list(np.linspace(epoch_times[0], epoch_times[-1], 6)[1:-1].round(2))
    highlight = truth.channels if truth else ()
    paths = {"class_averages": save_figure(
        plot_class_averages(result.evokeds, tuple(window), highlight,
                            title=f"class averages of {described}{caution}"),
        folder / "class_averages.png")}
    for name, evoked in result.evokeds.items():
        title = f"{name}: average of {evoked.nave} of the {described}{caution}"
        paths[f"topomaps_{name}"] = save_figure(
            plot_topomaps(evoked, list(times), [tuple(window)], highlight, title=title),
            folder / f"topomaps_{name}.png")
    return paths
