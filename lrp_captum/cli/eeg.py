"""``lrp-captum eeg simulate|train|explain``: a thin layer over :mod:`lrp_captum.eeg`.

Every argument is checked before any work starts (the shared types of
:mod:`lrp_captum.cli.arguments`); a bad value ends in one line that names it and exit code 2,
and nothing is written. Accuracy is always reported with the split it was measured on
(held-out, validation, training, unknown split), and warnings -- a model at chance level last --
close the run.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from lrp_captum.cli import add_group
from lrp_captum.cli.arguments import (CommandError, add_option, bound_free_composite, existing_file, fail,
                                      fraction, int_range, non_negative_int, number_in, output_folder,
                                      positive_int)
from lrp_captum.wording import counted

COMMANDS = ("simulate", "train", "explain")


def _model_folder(text: str):
    """A folder written by ``eeg train`` (``config.json`` + ``model.pt``)."""
    from lrp_captum.eeg.model_folder import check_model_folder

    try:
        return check_model_folder(text)
    except FileNotFoundError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_model_folder.__name__ = "model folder"


def register(subparsers) -> None:
    """Add the ``eeg`` group to the top-level ``lrp-captum`` parser."""
    sub = add_group(subparsers, "eeg", "EEG epochs: simulate, train, explain",
                    "Explain EEG classifiers on MNE epochs with LRP.")

    p = sub.add_parser("simulate", help="simulate a labelled data set with known ground truth")
    p.add_argument("--task", choices=("motor_imagery", "erp"), default="motor_imagery",
                   help="motor imagery (mu-rhythm desynchronisation) or an ERP (P3)")
    p.add_argument("--n-epochs", type=int_range(2), default=160,
                   help="number of trials, balanced over the two classes")
    p.add_argument("--sfreq", type=number_in(80.0, lower_open=True, why=" (the 0.5-40 Hz band-pass needs it)"),
                   default=100.0, help="sampling rate in Hz (> 80)")
    p.add_argument("--effect-scale", type=number_in(0.0), default=1.0,
                   help="strength of the class difference (1: default, 0.1: too weak to learn, 0: none)")
    add_option(p, "--seed")
    p.add_argument("--out", required=True, type=output_folder, help="output folder")
    p.set_defaults(func=_reporting(_simulate))

    p = sub.add_parser("train", help="train a classifier with early stopping")
    p.add_argument("epochs", type=existing_file, help="-epo.fif file with labelled epochs (event names = classes)")
    p.add_argument("--arch", choices=("shallow", "eegnet"), default="shallow",
                   help="architecture: ShallowConvNet-style or EEGNet-style")
    p.add_argument("--max-epochs", type=positive_int, default=150, help="passes over the training epochs at most")
    p.add_argument("--patience", type=non_negative_int, default=20,
                   help="stop after this many epochs without a lower validation loss")
    p.add_argument("--val-fraction", type=fraction(lower_open=True, upper_open=True), default=0.2,
                   help="share of each class, of the epochs not held out, used for early stopping")
    p.add_argument("--test-fraction", type=fraction(upper_open=True), default=0.2,
                   help="share of each class held out of training and early stopping, for the held-out "
                        "accuracy (0: none; then explain another file)")
    add_option(p, "--seed")
    add_option(p, "--device")
    p.add_argument("--out", required=True, type=output_folder, help="model folder (model.pt + config.json)")
    p.set_defaults(func=_reporting(_train))

    p = sub.add_parser("explain", help="LRP relevance of every epoch, MNE files and PNG figures")
    p.add_argument("epochs", type=existing_file, help="-epo.fif file")
    p.add_argument("--model", required=True, type=_model_folder, help="model folder written by 'eeg train'")
    p.add_argument("--out", required=True, type=output_folder, help="output folder")
    p.add_argument("--explain", choices=("held-out", "training", "all"), default="held-out",
                   help="which epochs: all but those the model was trained on (held-out and unknown-split "
                        "ones), those it was trained on, or all; figures and summary say which")
    p.add_argument("--composite", type=bound_free_composite("EEG epochs in µV"), default="epsilon",
                   help="LRP composite (see 'lrp-captum composites')")
    p.add_argument("--target", default="predicted", help="'predicted', 'true', a class name or a class index")
    add_option(p, "--output-mode")
    p.add_argument("--times", type=float, nargs="*", default=None,
                   help="topomap time points (s); default: 4 evenly spaced")
    p.add_argument("--window", type=float, nargs=2, default=None, metavar=("TMIN", "TMAX"),
                   help="time window (s) for averaged topomaps; default: the ground truth window of "
                        "simulated data, else the whole epoch")
    add_option(p, "--batch-size", default=64)
    add_option(p, "--device")
    p.set_defaults(func=_reporting(_explain))


def _reporting(command):
    """Bad input ends with its message in one line and exit code 2, not a traceback; the
    warnings of the run are printed last, a model at chance level at the very end."""
    from lrp_captum.eeg.explain import user_warnings

    def run(args) -> int:
        prog = f"lrp-captum eeg {args.eeg_command}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                code = command(args)
            except (CommandError, ValueError, OSError, TypeError) as exc:
                return fail(prog, exc)
        for message in user_warnings(caught):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        return code
    return run


def _simulate(args) -> int:
    from lrp_captum.demos.eeg_simulation import save_simulated, simulate_epochs

    epochs = simulate_epochs(args.task, n_epochs=args.n_epochs, sfreq=args.sfreq, seed=args.seed,
                             effect_scale=args.effect_scale)
    fif, sidecar = save_simulated(epochs, args.out / f"sim_{args.task}-epo.fif")
    print(f"wrote {fif} ({counted(len(epochs), 'epoch')}, {counted(len(epochs.ch_names), 'channel')}, "
          f"{epochs.info['sfreq']:g} Hz) and {sidecar}")
    return 0


def _train(args) -> int:
    from tqdm import tqdm

    from lrp_captum.eeg.epochs_file import read_epochs_file
    from lrp_captum.eeg.model_folder import save_model
    from lrp_captum.eeg.train import fit_epochs

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
    held_out = (f"held-out accuracy {m['held_out_accuracy']:.3f} on {counted(m['n_held_out'], 'epoch')} "
                f"never used in training (chance {m['held_out_chance']:.3f})"
                if "held_out_accuracy" in m else
                "no held-out epochs (--test-fraction 0): explain another file to measure "
                "accuracy on epochs of unknown split")
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
        raise CommandError(f"--target {target}: a class index lies in 0..{len(names) - 1} "
                           f"({', '.join(names)})")
    if isinstance(target, str) and target not in ("predicted", "true", *names):
        raise CommandError(f"--target {target!r}: use 'predicted', 'true', a class name "
                           f"({', '.join(names)}) or an index")
    tmin, tmax = config.tmin, config.tmin + (config.n_times - 1) / config.sfreq
    span = f"the model's epoch runs from {tmin:g} to {tmax:g} s"
    outside = [t for t in args.times or () if not tmin - 1e-9 <= t <= tmax + 1e-9]
    if outside:
        raise CommandError(f"--times {' '.join(f'{t:g}' for t in outside)}: {span}")
    if args.window:
        w0, w1 = args.window
        if w0 >= w1:
            raise CommandError(f"--window {w0:g} {w1:g}: TMIN must be below TMAX")
        if w0 < tmin - 1e-9 or w1 > tmax + 1e-9:
            raise CommandError(f"--window {w0:g} {w1:g}: {span}")


def _explain(args) -> int:
    from lrp_captum.eeg.model_folder import load_config

    _check_against_model(args, load_config(args.model))

    from lrp_captum.eeg.explain import explain_epochs
    from lrp_captum.eeg.result_folder import accuracy_text, describe_split, save_result_folder

    result = explain_epochs(args.model, args.epochs, composite=args.composite,
                            target=_parse_target(args.target), output_mode=args.output_mode,
                            batch_size=args.batch_size, device=args.device, progress=True,
                            which=args.explain)
    save_result_folder(result, args.out, window=tuple(args.window) if args.window else None,
                       times=args.times)
    print(f"explained {describe_split(result.split)} ({accuracy_text(result)}); wrote {args.out}")
    return 0
