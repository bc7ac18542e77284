"""EEG adapter: explain classifiers of MNE epochs with LRP.

Modules: :mod:`~lrp_captum.demos.eeg_simulation` (data with known ground truth),
:mod:`~lrp_captum.eeg.models` (ShallowConvNet/EEGNet-style networks and their LRP layer map),
:mod:`~lrp_captum.eeg.train` (training with a held-out split, saving, loading),
:mod:`~lrp_captum.eeg.heldout` (which epochs a model was trained on; chance-level test),
:mod:`~lrp_captum.eeg.amplitude` (physiological amplitude range), :mod:`~lrp_captum.eeg.epochs_file`
(reading ``-epo.fif``), :mod:`~lrp_captum.eeg.explain`
(``explain_epochs`` returning MNE objects), :mod:`~lrp_captum.eeg.plots` (figures),
:mod:`~lrp_captum.cli.eeg` (``lrp-captum eeg ...``). Needs the ``eeg`` extra (mne).

The main names are re-exported lazily, so ``import lrp_captum.eeg`` stays cheap:

>>> from lrp_captum.eeg import simulate_epochs, fit_epochs, explain_epochs
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "simulate_epochs": "lrp_captum.demos.eeg_simulation",
    "read_ground_truth": "lrp_captum.demos.eeg_simulation",
    "save_simulated": "lrp_captum.demos.eeg_simulation",
    "ShallowConvNet": "models", "EEGNet": "models", "build_model": "models",
    "eeg_layer_map": "models",
    "fit_epochs": "train", "save_model": "train", "load_model": "train",
    "EEGModelConfig": "train",
    "explain_epochs": "explain", "check_epochs": "explain", "EEGRelevance": "explain",
    "EpochsMismatchError": "explain", "load_relevance": "explain",
    "ChanceLevelWarning": "heldout", "AmplitudeWarning": "amplitude",
    "read_epochs_file": "epochs_file",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name] if "." in _EXPORTS[name] else f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
