"""``lrp-captum eeg simulate|train|explain``: a thin layer over :mod:`lrp_captum.eeg`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import add_group


def register(subparsers) -> None:
    """Add the ``eeg`` group to the top-level ``lrp-captum`` parser."""
    sub = add_group(subparsers, "eeg", "EEG epochs: simulate, train, explain",
                    "Explain EEG classifiers on MNE epochs with LRP.")

    p = sub.add_parser("simulate", help="simulate a labelled data set with known ground truth")
    p.add_argument("--task", choices=("motor_imagery", "erp"), default="motor_imagery")
    p.add_argument("--n-epochs", type=int, default=160)
    p.add_argument("--sfreq", type=float, default=100.0, help="sampling rate (Hz)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_reporting_errors(_simulate))

    p = sub.add_parser("train", help="train a classifier with early stopping")
    p.add_argument("epochs", help="-epo.fif file with labelled epochs (event names = classes)")
    p.add_argument("--arch", choices=("shallow", "eegnet"), default="shallow")
    p.add_argument("--max-epochs", type=int, default=150)
    p.add_argument("--patience", type=int, default=20)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", required=True, help="model folder (model.pt + config.json)")
    p.set_defaults(func=_reporting_errors(_train))

    p = sub.add_parser("explain", help="LRP relevance of every epoch, MNE files and PNG figures")
    p.add_argument("epochs", help="-epo.fif file")
    p.add_argument("--model", required=True, help="model folder written by 'eeg train'")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--composite", default="epsilon",
                   help="composite name (see 'lrp-captum composites')")
    p.add_argument("--target", default="predicted",
                   help="'predicted', 'true', a class name or a class index")
    p.add_argument("--output-mode", default="logit", choices=("logit", "probability",
                                                              "contrastive"))
    p.add_argument("--times", type=float, nargs="*", default=None,
                   help="topomap time points (s); default: 4 evenly spaced")
    p.add_argument("--window", type=float, nargs=2, default=None, metavar=("TMIN", "TMAX"),
                   help="time window (s) for averaged topomaps; default: the ground truth "
                        "window of simulated data, else the whole epoch")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_reporting_errors(_explain))


def _reporting_errors(command):
    """Bad input (wrong file, channels, rate, ...) ends with its message, not a traceback."""
    def run(args) -> int:
        try:
            return command(args)
        except (ValueError, FileNotFoundError, TypeError) as exc:
            print(f"lrp-captum eeg {args.eeg_command}: error: {exc}", file=sys.stderr)
            return 2
    return run


def _simulate(args) -> int:
    from ..eeg.simulate import save_simulated, simulate_epochs

    epochs = simulate_epochs(args.task, n_epochs=args.n_epochs, sfreq=args.sfreq, seed=args.seed)
    fif, sidecar = save_simulated(epochs, Path(args.out) / f"sim_{args.task}-epo.fif")
    print(f"wrote {fif} ({len(epochs)} epochs, {len(epochs.ch_names)} channels, "
          f"{epochs.info['sfreq']:g} Hz) and {sidecar}")
    return 0


def _train(args) -> int:
    import mne
    from tqdm import tqdm

    from ..eeg.train import fit_epochs, save_model

    epochs = mne.read_epochs(args.epochs, preload=True, verbose=False)
    bar = tqdm(total=args.max_epochs, desc="training", unit="epoch")

    def progress(epoch, train_loss, val_loss, val_acc):
        bar.update(1)
        bar.set_postfix(train_loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}",
                        val_acc=f"{val_acc:.2f}")

    model, config = fit_epochs(epochs, args.arch, max_epochs=args.max_epochs,
                               patience=args.patience, val_fraction=args.val_fraction,
                               seed=args.seed, device=args.device, progress=progress)
    bar.close()
    folder = save_model(model, config, args.out)
    print(f"wrote {folder} (validation accuracy {config.metrics['val_accuracy']:.3f}, "
          f"best epoch {config.metrics['best_epoch']})")
    return 0


def _parse_target(text: str):
    return int(text) if text.lstrip("-").isdigit() else text


def _explain(args) -> int:
    import numpy as np

    from ..eeg.explain import explain_epochs, relevance_concentration
    from ..eeg.plots import plot_class_averages, plot_topomaps, save_figure
    from ..eeg.simulate import read_ground_truth

    result = explain_epochs(args.model, args.epochs, composite=args.composite,
                            target=_parse_target(args.target), output_mode=args.output_mode,
                            batch_size=args.batch_size, device=args.device, progress=True)
    out = Path(args.out)
    paths = result.save(out)
    try:
        truth = read_ground_truth(args.epochs)
    except ValueError:
        truth = None
    times = result.epochs.times
    window = tuple(args.window) if args.window else \
        ((truth.tmin, truth.tmax) if truth else (float(times[0]), float(times[-1])))
    topo_times = args.times if args.times is not None else \
        list(np.linspace(times[0], times[-1], 6)[1:-1].round(2))
    highlight = truth.channels if truth else ()
    save_figure(plot_class_averages(result.evokeds, window, highlight), out / "class_averages.png")
    for name, evoked in result.evokeds.items():
        save_figure(plot_topomaps(evoked, topo_times, [window], highlight, title=name),
                    out / f"topomaps_{name}.png")
    summary = {"epochs": str(args.epochs), "model": str(args.model),
               "composite": result.composite, "target": args.target,
               "n_epochs": len(result.epochs), "accuracy": result.accuracy,
               "files": {k: str(v) for k, v in paths.items()}}
    if truth is not None:
        c = relevance_concentration(result.epochs, truth.channels, truth.tmin, truth.tmax)
        summary["ground_truth"] = {"channels": truth.channels, "tmin": truth.tmin,
                                   "tmax": truth.tmax, "mass": float(c["mass"].mean()),
                                   "share": c["share"], "ratio": c["ratio"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    acc = "n/a" if result.accuracy is None else f"{result.accuracy:.3f}"
    print(f"explained {len(result.epochs)} epochs (accuracy {acc}); wrote {out}")
    return 0

