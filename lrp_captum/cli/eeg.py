"""``lrp-captum eeg simulate|train|explain``: a thin layer over :mod:`lrp_captum.eeg`.

Every argument is checked before any work starts; a bad value ends in one line that names it
and exit code 2, and nothing is written. Accuracy is always reported with the split it was
measured on (held-out, validation, training), and warnings -- a model at chance level last --
close the run.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from lrp_captum.cli import add_group

COMMANDS = ("simulate", "train", "explain")


# --- argument checks ----------------------------------------------------------------------
# Local until the shared validators of lrp_captum/cli/arguments.py arrive: each is an argparse
# ``type=`` callable that raises ArgumentTypeError, so swapping them is a change of imports.

def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}")
        return value
    return parse


def _float_in(low: float, high: float = float("inf"), low_inclusive: bool = True,
              why: str = ""):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        above = value >= low if low_inclusive else value > low
        if not (above and value < high):
            bounds = f"{'>=' if low_inclusive else '>'} {low:g}" + \
                (f" and < {high:g}" if high != float("inf") else "")
            raise argparse.ArgumentTypeError(f"must be a number {bounds}{why}, got {text!r}")
        return value
    return parse


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {path}")
    return path


def _output_folder(text: str) -> Path:
    """A folder to write into: it may exist; no part of the path may be a file."""
    path = Path(text)
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            raise argparse.ArgumentTypeError(f"{part} is a file, not a folder")
    return path


def _model_folder(text: str) -> Path:
    from lrp_captum.eeg.train import CONFIG_NAME, WEIGHTS_NAME

    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such model folder: {path}")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (path / name).is_file():
            raise argparse.ArgumentTypeError(
                f"{path} has no {name}: give a folder written by 'lrp-captum eeg train' "
                f"({CONFIG_NAME} + {WEIGHTS_NAME})")
    return path


def _device(text: str) -> str:
    import torch

    kind, _, index = text.partition(":")
    if text in ("auto", "cpu"):
        return text
    if kind != "cuda" or (index and not index.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device: use auto, cpu, cuda or "
                                         "cuda:N")
    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: CUDA is not available on this machine; "
                                         "use auto or cpu")
    if index and int(index) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has "
                                         f"{torch.cuda.device_count()} CUDA device(s)")
    return text


def _eeg_composite(text: str) -> str:
    from lrp_captum.core.composites import (UnknownCompositeError, composite_needs_bounds,
                                            list_composites)

    try:
        needs_bounds = composite_needs_bounds(text)
    except UnknownCompositeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if needs_bounds:
        usable = [n for n in list_composites() if not composite_needs_bounds(n)]
        raise argparse.ArgumentTypeError(
            f"composite {text!r} needs input bounds (z^B rule), which EEG epochs in µV do not "
            f"have; choose from {', '.join(usable)}")
    return text


def _one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make argparse report a bad argument in one line (no usage block), exit code 2."""
    def error(message: str):
        parser.exit(2, f"{parser.prog}: error: {message} (see {parser.prog} --help)\n")
    parser.error = error
    return parser


class UsageError(ValueError):
    """An argument that is valid alone but not with the others, the model or the data."""


# --- the commands ---------------------------------------------------------------------------

def register(subparsers) -> None:
    """Add the ``eeg`` group to the top-level ``lrp-captum`` parser."""
    sub = add_group(subparsers, "eeg", "EEG epochs: simulate, train, explain",
                    "Explain EEG classifiers on MNE epochs with LRP.")
    seed = dict(type=_int_at_least(0), default=0, help="random seed (>= 0)")
    device = dict(type=_device, default="auto", help="auto, cpu, cuda or cuda:N")

    p = _one_line_errors(sub.add_parser(
        "simulate", help="simulate a labelled data set with known ground truth"))
    p.add_argument("--task", choices=("motor_imagery", "erp"), default="motor_imagery")
    p.add_argument("--n-epochs", type=_int_at_least(2), default=160,
                   help="number of trials, balanced over the two classes (>= 2)")
    p.add_argument("--sfreq", type=_float_in(80.0, low_inclusive=False,
                                             why=" (the 0.5-40 Hz band-pass needs it)"),
                   default=100.0, help="sampling rate in Hz (> 80)")
    p.add_argument("--effect-scale", type=_float_in(0.0), default=1.0,
                   help="strength of the class difference (1: default, 0.1: too weak to "
                        "learn, 0: none)")
    p.add_argument("--seed", **seed)
    p.add_argument("--out", required=True, type=_output_folder, help="output folder")
    p.set_defaults(func=_reporting_errors(_simulate))

    p = _one_line_errors(sub.add_parser("train", help="train a classifier with early stopping"))
    p.add_argument("epochs", type=_existing_file,
                   help="-epo.fif file with labelled epochs (event names = classes)")
    p.add_argument("--arch", choices=("shallow", "eegnet"), default="shallow")
    p.add_argument("--max-epochs", type=_int_at_least(1), default=150)
    p.add_argument("--patience", type=_int_at_least(0), default=20,
                   help="stop after this many epochs without a lower validation loss")
    p.add_argument("--val-fraction", type=_float_in(0.0, 1.0, low_inclusive=False),
                   default=0.2, help="share of each class, of the epochs not held out, used "
                                     "for early stopping (0-1)")
    p.add_argument("--test-fraction", type=_float_in(0.0, 1.0), default=0.2,
                   help="share of each class held out of training and early stopping, for the "
                        "held-out accuracy (0: none; then explain another file)")
    p.add_argument("--seed", **seed)
    p.add_argument("--device", **device)
    p.add_argument("--out", required=True, type=_output_folder,
                   help="model folder (model.pt + config.json)")
    p.set_defaults(func=_reporting_errors(_train))

    p = _one_line_errors(sub.add_parser(
        "explain", help="LRP relevance of every epoch, MNE files and PNG figures"))
    p.add_argument("epochs", type=_existing_file, help="-epo.fif file")
    p.add_argument("--model", required=True, type=_model_folder,
                   help="model folder written by 'eeg train'")
    p.add_argument("--out", required=True, type=_output_folder, help="output folder")
    p.add_argument("--explain", choices=("held-out", "training", "all"), default="held-out",
                   help="which epochs: those the model was not trained on (default), those it "
                        "was trained on, or all; figures and summary say which")
    p.add_argument("--composite", type=_eeg_composite, default="epsilon",
                   help="composite name (see 'lrp-captum composites'); default epsilon")
    p.add_argument("--target", default="predicted",
                   help="'predicted', 'true', a class name or a class index")
    p.add_argument("--output-mode", default="logit", choices=("logit", "probability",
                                                              "contrastive"))
    p.add_argument("--times", type=float, nargs="*", default=None,
                   help="topomap time points (s); default: 4 evenly spaced")
    p.add_argument("--window", type=float, nargs=2, default=None, metavar=("TMIN", "TMAX"),
                   help="time window (s) for averaged topomaps; default: the ground truth "
                        "window of simulated data, else the whole epoch")
    p.add_argument("--batch-size", type=_int_at_least(1), default=64)
    p.add_argument("--device", **device)
    p.set_defaults(func=_reporting_errors(_explain))


def _reporting_errors(command):
    """Bad input ends with its message in one line and exit code 2, not a traceback; the
    warnings of the run are printed last, a model at chance level at the very end."""
    def run(args) -> int:
        prog = f"lrp-captum eeg {args.eeg_command}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                code = command(args, caught)
            except (ValueError, OSError, TypeError) as exc:
                print(f"{prog}: error: {' '.join(str(exc).split())}", file=sys.stderr)
                return 2
        for message in _warning_messages(caught):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        return code
    return run


def _warning_messages(caught) -> list:
    """Distinct messages of the warnings meant for the user, a chance-level one last."""
    from lrp_captum.eeg.heldout import ChanceLevelWarning

    shown = [w for w in caught if issubclass(w.category, (UserWarning, RuntimeWarning))]
    shown.sort(key=lambda w: issubclass(w.category, ChanceLevelWarning))
    return list(dict.fromkeys(" ".join(str(w.message).split()) for w in shown))


def _simulate(args, caught) -> int:
    from lrp_captum.demos.eeg_simulation import save_simulated, simulate_epochs

    epochs = simulate_epochs(args.task, n_epochs=args.n_epochs, sfreq=args.sfreq, seed=args.seed,
                             effect_scale=args.effect_scale)
    fif, sidecar = save_simulated(epochs, args.out / f"sim_{args.task}-epo.fif")
    print(f"wrote {fif} ({len(epochs)} epochs, {len(epochs.ch_names)} channels, "
          f"{epochs.info['sfreq']:g} Hz) and {sidecar}")
    return 0


def _train(args, caught) -> int:
    from tqdm import tqdm

    from lrp_captum.eeg.epochs_file import read_epochs_file
    from lrp_captum.eeg.train import fit_epochs, save_model

    epochs = read_epochs_file(args.epochs)
    bars = []  # opened at the first epoch: a refused split ends before any bar is drawn

    def progress(epoch, train_loss, val_loss, val_acc):
        if not bars:
            bars.append(tqdm(total=args.max_epochs, desc="training", unit="epoch"))
        bars[0].update(1)
        bars[0].set_postfix(train_loss=f"{train_loss:.3f}", val_loss=f"{val_loss:.3f}",
                            val_acc=f"{val_acc:.2f}")

    try:
        model, config = fit_epochs(epochs, args.arch, max_epochs=args.max_epochs,
                                   patience=args.patience, val_fraction=args.val_fraction,
                                   test_fraction=args.test_fraction, seed=args.seed,
                                   device=args.device, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    folder = save_model(model, config, args.out)
    m = config.metrics
    held_out = (f"held-out accuracy {m['held_out_accuracy']:.3f} on {m['n_held_out']} epochs "
                f"never used in training (chance {m['held_out_chance']:.3f})"
                if "held_out_accuracy" in m else
                "no held-out epochs (--test-fraction 0): explain another file to measure "
                "held-out accuracy")
    print(f"wrote {folder}: {held_out}; validation accuracy {m['validation_accuracy']:.3f} "
          f"(early stopping, best epoch {m['best_epoch']}); training accuracy "
          f"{m['training_accuracy']:.3f}")
    return 0


def _parse_target(text: str):
    return int(text) if text.lstrip("-").isdigit() else text


def _check_against_model(args, config) -> None:
    """--target, --times and --window against the model's classes and epoch."""
    target = _parse_target(args.target)
    names = list(config.class_names)
    if isinstance(target, int) and not 0 <= target < len(names):
        raise UsageError(f"--target {target}: a class index lies in 0..{len(names) - 1} "
                         f"({', '.join(names)})")
    if isinstance(target, str) and target not in ("predicted", "true", *names):
        raise UsageError(f"--target {target!r}: use 'predicted', 'true', a class name "
                         f"({', '.join(names)}) or an index")
    tmin, tmax = config.tmin, config.tmin + (config.n_times - 1) / config.sfreq
    span = f"the model's epoch runs from {tmin:g} to {tmax:g} s"
    outside = [t for t in args.times or () if not tmin - 1e-9 <= t <= tmax + 1e-9]
    if outside:
        raise UsageError(f"--times {' '.join(f'{t:g}' for t in outside)}: {span}")
    if args.window:
        w0, w1 = args.window
        if w0 >= w1:
            raise UsageError(f"--window {w0:g} {w1:g}: TMIN must be below TMAX")
        if w0 < tmin - 1e-9 or w1 > tmax + 1e-9:
            raise UsageError(f"--window {w0:g} {w1:g}: {span}")


def _describe(split) -> str:
    """'20 held-out epochs', '20 held-out and 80 training epochs', ..."""
    from lrp_captum.eeg.heldout import HELD_OUT, TRAINING, UNKNOWN

    names = {HELD_OUT: "held-out", TRAINING: "training", UNKNOWN: "unknown-split"}
    parts = [f"{int((split == s).sum())} {names[s]}" for s in (HELD_OUT, TRAINING, UNKNOWN)
             if (split == s).any()]
    return " and ".join(parts) + " epochs"


def _accuracy_report(result) -> tuple[dict, str]:
    """summary.json entries and the printed text of accuracy per split and the chance test."""
    from lrp_captum.eeg.heldout import HELD_OUT, TRAINING, UNKNOWN

    entries, printed = {}, []
    for split, key, label in ((HELD_OUT, "held_out", "held-out"),
                              (TRAINING, "training", "training"),
                              (UNKNOWN, "unknown_split", "unknown-split")):
        n = int((result.split == split).sum())
        if split == UNKNOWN and n == 0:
            continue
        accuracy = result.accuracy_of(split)
        entries[f"n_{key}"] = n
        entries[f"{key}_accuracy"] = accuracy
        if accuracy is not None:
            printed.append(f"{label} accuracy {accuracy:.3f} on {n} epochs")
    tested = result.chance_test()
    entries["at_chance"] = None if tested is None else not tested[1].above_chance
    entries["chance"] = None if tested is None else {
        "split": tested[0], "n": tested[1].n, "accuracy": tested[1].accuracy,
        "chance_level": tested[1].chance, "p_value": tested[1].p_value}
    return entries, "; ".join(printed) or "events do not name the model's classes: not scored"


def _explain(args, caught) -> int:
    from lrp_captum.eeg.train import load_config

    config = load_config(args.model)
    _check_against_model(args, config)

    import numpy as np

    from lrp_captum.eeg.explain import explain_epochs, relevance_concentration
    from lrp_captum.eeg.heldout import HELD_OUT, TRAINING
    from lrp_captum.eeg.plots import plot_class_averages, plot_topomaps, save_figure
    from lrp_captum.demos.eeg_simulation import read_ground_truth

    result = explain_epochs(args.model, args.epochs, composite=args.composite,
                            target=_parse_target(args.target), output_mode=args.output_mode,
                            batch_size=args.batch_size, device=args.device, progress=True,
                            which=args.explain)
    accuracy, printed = _accuracy_report(result)
    described = _describe(result.split)
    caution = "; model at chance level: do not interpret" if accuracy["at_chance"] else ""
    out = args.out
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
    save_figure(plot_class_averages(result.evokeds, window, highlight,
                                    title=f"class averages of {described}{caution}"),
                out / "class_averages.png")
    for name, evoked in result.evokeds.items():
        save_figure(plot_topomaps(evoked, topo_times, [window], highlight,
                                  title=f"{name}: {described}{caution}"),
                    out / f"topomaps_{name}.png")
    summary = {"epochs": str(args.epochs), "model": str(args.model),
               "composite": result.composite, "target": args.target,
               "explained": args.explain, "n_explained": len(result.epochs),
               "held_out_epochs": [int(i) for i in result.indices[result.split == HELD_OUT]],
               "training_epochs": [int(i) for i in result.indices[result.split == TRAINING]],
               **accuracy,
               "model_training_record": config.metrics,
               "figures_of": described,
               "files": {k: str(v) for k, v in paths.items()}}
    if truth is not None:
        c = relevance_concentration(result.epochs, truth.channels, truth.tmin, truth.tmax)
        summary["ground_truth"] = {"channels": truth.channels, "tmin": truth.tmin,
                                   "tmax": truth.tmax, "mass": float(c["mass"].mean()),
                                   "share": c["share"], "ratio": c["ratio"], "of": described}
    summary["warnings"] = _warning_messages(caught)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"explained {described} ({printed}); wrote {out}")
    return 0
