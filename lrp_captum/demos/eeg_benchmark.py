"""Ground-truth benchmark on the simulated tasks, and the figures of ``docs/eeg.md``.

``python -m lrp_captum.demos.eeg_benchmark [--figures DIR]`` trains one model per (task,
architecture) on simulated data, evaluates it on held-out trials of the same simulated subject,
and prints, per composite, how strongly relevance concentrates in the ground-truth channels x
time window (mass of |relevance| inside / share of the grid; 1 = no concentration).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import mne
import numpy as np
import torch

from lrp_captum.eeg.explain import explain_epochs, ground_truth_mask
from lrp_captum.eeg.heldout import UNKNOWN
from lrp_captum.demos.eeg_simulation import read_ground_truth, simulate_epochs
from lrp_captum.eeg.train import fit_epochs
from lrp_captum.wording import counted

COMPOSITES = ("epsilon_plus", "epsilon", "zero", "epsilon_alpha2_beta1", "epsilon_plus_flat")
SETTINGS = (("motor_imagery", "shallow"), ("motor_imagery", "eegnet"),
            ("erp", "eegnet"), ("erp", "shallow"))


def concentration_ratio(relevance: mne.BaseEpochs, truth) -> float:
    """Mean share of |relevance| inside the ground-truth window, divided by the window's share."""
    mask = ground_truth_mask(relevance, truth.channels, truth.tmin, truth.tmax)
    r = np.abs(relevance.get_data(picks="all"))
    return float(((r * mask).sum((1, 2)) / r.sum((1, 2))).mean() / mask.mean())


def csp_patterns(epochs: mne.BaseEpochs, tmin: float, tmax: float,
                 band=(8.0, 12.0)) -> np.ndarray:
    """CSP patterns of the two classes in a band and time window, ``(2, C)``.

    Row ``k`` is the pattern of the component with the most variance for class ``k``
    (``component_order="alternate"``).
    """
    from mne.decoding import CSP

    filtered = epochs.copy().filter(*band, verbose=False).crop(tmin, tmax)
    csp = CSP(n_components=2, component_order="alternate", log=True)
    with mne.utils.use_log_level("error"):
        csp.fit(filtered.get_data(), epochs.metadata["label"].to_numpy())
    return csp.patterns_[:2]


def run(seed: int = 0, composites=COMPOSITES, settings=SETTINGS, n_train: int = 160,
        n_test: int = 80) -> list[dict]:
    """One row per (task, architecture, composite): held-out accuracy (test trials of another
    seed, none used in training) and concentration ratio."""
    rows = []
    for task, architecture in settings:
        train = simulate_epochs(task, n_epochs=n_train, seed=seed)
        test = simulate_epochs(task, n_epochs=n_test, seed=seed + 100)
        truth = read_ground_truth(test)
        model, config = fit_epochs(train, architecture, max_epochs=80, patience=15, seed=seed,
                                   device="cpu")
        for composite in composites:
            result = explain_epochs(model, test, composite=composite, target="true",
                                    device="cpu")
            rows.append(dict(task=task, architecture=architecture, composite=composite,
                             # another seed: held out by construction; the model has no record
                             # of these epochs, so the library calls them of unknown split
                             held_out_accuracy=result.accuracy_of(UNKNOWN),
                             ratio=concentration_ratio(result.epochs, truth),
                             epochs_trained=config.metrics["epochs_trained"]))
    return rows


def make_figures(folder, seed: int = 0) -> list[Path]:
    """The figures of ``docs/eeg.md`` (PNG), from ShallowConvNet on motor imagery and EEGNet on
    the ERP task, explained with ``epsilon`` (LRP-ε)."""
    from lrp_captum.eeg.plots import plot_class_averages, plot_topomap_row, plot_topomaps, save_figure

    folder = Path(folder)
    written = []
    for task, architecture in (("motor_imagery", "shallow"), ("erp", "eegnet")):
        train = simulate_epochs(task, n_epochs=160, seed=seed)
        test = simulate_epochs(task, n_epochs=80, seed=seed + 100)
        truth = read_ground_truth(test)
        model, _ = fit_epochs(train, architecture, max_epochs=80, patience=15, seed=seed,
                              device="cpu")
        result = explain_epochs(model, test, composite="epsilon", target="true",
                                device="cpu")
        window = (truth.tmin, truth.tmax)
        held_out = counted(len(result.epochs), "held-out epoch")
        written.append(save_figure(plot_class_averages(result.evokeds, window, truth.channels,
                                                       title=f"class averages of {held_out}"),
                                   folder / f"eeg_{task}_class_averages.png"))
        names = truth.class_names
        maps = {}
        for name in names:
            ev = result.evokeds[name]
            sel = (ev.times >= window[0]) & (ev.times <= window[1])
            maps[f"LRP {name}"] = ev.data[:, sel].mean(1)
        if task == "motor_imagery":
            patterns = csp_patterns(train, *window)
            for k, name in enumerate(names):
                maps[f"CSP pattern {name}"] = patterns[k]
            title = (f"class-average LRP relevance (0.5-1.5 s, {held_out}) vs CSP patterns "
                     "(8-12 Hz, training epochs)")
        else:
            diff = train[names[1]].average().data - train[names[0]].average().data
            sel = (train.times >= window[0]) & (train.times <= window[1])
            maps["ERP target - non_target"] = diff[:, sel].mean(1)
            title = (f"class-average LRP relevance (0.2-0.4 s, {held_out}) vs ERP difference "
                     "(training epochs)")
        written.append(save_figure(plot_topomap_row(maps, result.epochs.info, truth.channels,
                                                    title=title),
                                   folder / f"eeg_{task}_relevance_vs_patterns.png"))
        target = names[1]
        times = [0.25, 0.75, 1.0, 1.25] if task == "motor_imagery" else [0.1, 0.2, 0.3, 0.4]
        written.append(save_figure(plot_topomaps(result.evokeds[target], times, [window],
                                                 truth.channels,
                                                 title=f"{target}: {held_out}"),
                                   folder / f"eeg_{task}_topomaps_{target}.png"))
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figures", default=None, help="also write the docs figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny models: thread synchronisation costs more than it gains
    rows = run(seed=args.seed)
    print("| task | architecture | composite | held-out accuracy | concentration ratio |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['architecture']} | {r['composite']} | "
              f"{r['held_out_accuracy']:.3f} | {r['ratio']:.2f} |")
    if args.figures:
        for path in make_figures(args.figures, seed=args.seed):
            print("wrote", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
