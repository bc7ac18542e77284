"""EEG adapter: explain classifiers of MNE epochs with LRP.

Modules: :mod:`~lrp_captum.eeg.models` (ShallowConvNet/EEGNet-style networks and their LRP layer
map), :mod:`~lrp_captum.eeg.train` (training on the user's epochs with a held-out split),
:mod:`~lrp_captum.eeg.model_folder` (saved model folders: config with the data contract, weights),
:mod:`~lrp_captum.eeg.heldout` (which epochs a model was trained on; chance-level test),
:mod:`~lrp_captum.eeg.amplitude` (physiological amplitude range), :mod:`~lrp_captum.eeg.epochs_file`
(reading ``-epo.fif``), :mod:`~lrp_captum.eeg.explain` (``explain_epochs`` returning MNE
objects), :mod:`~lrp_captum.eeg.ground_truth` (known channels and window of an effect),
:mod:`~lrp_captum.eeg.result_folder` (the folder the app and ``lrp-captum eeg explain`` show),
:mod:`~lrp_captum.eeg.plots` (figures). Simulated data with known ground truth are
:mod:`lrp_captum.demos.eeg_simulation`'s. Needs the ``eeg`` extra (mne).

The main names are re-exported lazily, so ``import lrp_captum.eeg`` stays cheap:

>>> from lrp_captum.eeg import fit_epochs, explain_epochs, save_result_folder
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "ShallowConvNet": "models", "EEGNet": "models", "build_model": "models",
    "eeg_layer_map": "models",
    "fit_epochs": "train",
    "save_model": "model_folder", "load_model": "model_folder", "EEGModelConfig": "model_folder",
    "explain_epochs": "explain", "check_epochs": "explain", "EEGRelevance": "explain",
    "EpochsMismatchError": "explain", "load_relevance": "explain",
    "save_result_folder": "result_folder",
    "GroundTruth": "ground_truth", "read_ground_truth": "ground_truth",
    "ChanceLevelWarning": "heldout", "AmplitudeWarning": "amplitude",
    "read_epochs_file": "epochs_file",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    # simulate_epochs and save_simulated are demo data: lrp_captum.demos.eeg_simulation
    from lrp_captum.deprecated_paths import moved_name

    return moved_name(__name__, name)
