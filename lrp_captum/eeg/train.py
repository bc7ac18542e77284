"""Training EEG classifiers on the user's epochs, with early stopping and a held-out split.

:func:`fit_epochs` returns the model with its :class:`~lrp_captum.eeg.model_folder.EEGModelConfig`
(the data contract and which epochs it was trained on); saving and loading the model folder is
:mod:`lrp_captum.eeg.model_folder`'s.
"""
from __future__ import annotations

import copy
import warnings

import mne
import numpy as np
import torch
from torch import nn

from lrp_captum.devices import resolve_device
from lrp_captum.eeg.amplitude import warn_outside_physiological_range
from lrp_captum.eeg.heldout import (ChanceLevelWarning, chance_test, chance_warning, split_record,
                                    stratified_holdout)
from lrp_captum.eeg.model_folder import UNIT_SCALE, EEGModelConfig
from lrp_captum.eeg.models import build_model


def epochs_to_arrays(epochs: mne.BaseEpochs, class_names=None, units: str = "uV"):
    """EEG data and labels of ``epochs`` as arrays.

    Labels come from event codes, numbered in the order of ``class_names`` (default: the
    ``epochs.event_id`` keys ordered by code). Channels whose amplitude lies outside the
    physiological range of EEG get an :class:`~lrp_captum.eeg.amplitude.AmplitudeWarning`.

    Returns
    -------
    X : np.ndarray, float32, shape (N, C, T)
        Data in ``units``.
    y : np.ndarray, int64, shape (N,)
    class_names : list of str
    """
    if len(epochs.events) == 0:
        raise ValueError("there are no epochs to train on (0 epochs; if they were dropped, "
                         "epochs.drop_log says why).")
    if class_names is None:
        class_names = sorted(epochs.event_id, key=epochs.event_id.get)
    code_to_label = {epochs.event_id[name]: k for k, name in enumerate(class_names)
                     if name in epochs.event_id}
    unknown = set(epochs.events[:, 2]) - set(code_to_label)
    if unknown:
        raise ValueError(f"Event codes {sorted(unknown)} do not belong to any class of "
                         f"{class_names} (epochs.event_id={epochs.event_id}).")
    y = np.array([code_to_label[c] for c in epochs.events[:, 2]], dtype=np.int64)
    volts = epochs.get_data(picks="eeg")
    warn_outside_physiological_range(volts, [epochs.ch_names[i] for i in
                                             mne.pick_types(epochs.info, eeg=True)])
    X = (volts * UNIT_SCALE[units]).astype(np.float32)
    return X, y, list(class_names)


def _predict(model, X, device, batch_size=256) -> np.ndarray:
    """Predicted class ``(N,)`` of the model (in eval mode) for ``X`` ``(N, C, T)``."""
    model.eval()
    with torch.no_grad():
        return np.concatenate([
            model(torch.as_tensor(X[i:i + batch_size], device=device)).argmax(1).cpu().numpy()
            for i in range(0, len(X), batch_size)] or [np.zeros(0, int)])


def _accuracy(model, X, y, device, batch_size=256) -> float:
    return float((_predict(model, X, device, batch_size) == y).mean()) if len(X) else 0.0


def train_model(model: nn.Module, X: np.ndarray, y: np.ndarray, val_fraction: float = 0.2,
                max_epochs: int = 150, patience: int = 20, lr: float = 1e-2,
                weight_decay: float = 1e-3, batch_size: int = 32, seed: int = 0,
                device: str = "auto", progress=None) -> dict:
    """Train ``model`` in place with Adam, keeping the weights of the best validation epoch.

    Parameters
    ----------
    model : nn.Module
        Maps ``(N, C, T)`` to logits ``(N, n_classes)``.
    X : np.ndarray, shape (N, C, T)
        Training data (network units, e.g. µV).
    y : np.ndarray, shape (N,)
        Integer labels.
    val_fraction : float
        Fraction of ``X`` held out (stratified) for early stopping.
    max_epochs, patience : int
        Stop after ``patience`` epochs without a lower validation loss, or at ``max_epochs``.
    progress : callable, optional
        Called as ``progress(epoch, train_loss, val_loss, val_accuracy)`` after each epoch.

    Returns
    -------
    history : dict
        ``best_epoch``, ``epochs_trained``, ``val_accuracy``, ``train_accuracy`` (on the epochs
        fitted on: a training figure), per-epoch ``val_loss``.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must lie between 0 and 1 (exclusive), got {val_fraction}.")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    dev = resolve_device(device)
    val_mask = stratified_holdout(y, val_fraction, rng, "val_fraction")
    X_tr, y_tr, X_va, y_va = X[~val_mask], y[~val_mask], X[val_mask], y[val_mask]

    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    Xt, yt = torch.as_tensor(X_tr, device=dev), torch.as_tensor(y_tr, device=dev)
    Xv, yv = torch.as_tensor(X_va, device=dev), torch.as_tensor(y_va, device=dev)
    best = (np.inf, None, 0)
    val_losses = []
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(max_epochs):
        model.train()
        order = torch.randperm(len(Xt), generator=gen).to(dev)
        total = 0.0
        for i in range(0, len(Xt), batch_size):
            b = order[i:i + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(Xt[b]), yt[b])
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        model.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(model(Xv), yv))
        val_losses.append(val_loss)
        if progress is not None:
            progress(epoch, total / len(Xt), val_loss, _accuracy(model, X_va, y_va, dev))
        if val_loss < best[0] - 1e-4:
            best = (val_loss, copy.deepcopy(model.state_dict()), epoch)
        elif epoch - best[2] >= patience:
            break
    model.load_state_dict(best[1])
    model.eval()
    return {"best_epoch": best[2], "epochs_trained": len(val_losses),
            "val_accuracy": _accuracy(model, X_va, y_va, dev),
            "train_accuracy": _accuracy(model, X_tr, y_tr, dev), "val_loss": val_losses}


def fit_epochs(epochs: mne.BaseEpochs, architecture: str = "shallow", model_kwargs=None,
               units: str = "uV", test_fraction: float = 0.0, **train_kwargs):
    """Build a model for ``epochs``, train it, and return it with its config.

    Parameters
    ----------
    epochs : mne.Epochs
        Labelled epochs (event names are the classes).
    architecture : str
        ``"shallow"`` or ``"eegnet"``.
    model_kwargs : dict, optional
        Extra arguments of the architecture.
    units : str
        Units of the network input (``"uV"``).
    test_fraction : float
        Share of each class held out of training *and* early stopping, to measure held-out
        accuracy (``config.metrics["held_out_accuracy"]``); ``0`` when the test epochs are in
        another file. Either way ``config.split`` records which epochs were trained on.
    **train_kwargs
        Passed to :func:`train_model` (``val_fraction``, ``max_epochs``, ``seed``, ...).

    Returns
    -------
    model : nn.Module
        Trained, in eval mode, with the config attached as ``model.eeg_config``.
    config : EEGModelConfig

    Warns
    -----
    ChanceLevelWarning
        The held-out accuracy is not significantly above chance.
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction}.")
    model_kwargs = dict(model_kwargs or {})
    X, y, class_names = epochs_to_arrays(epochs, units=units)
    seed = train_kwargs.get("seed", 0)
    held_out = stratified_holdout(y, test_fraction, np.random.default_rng((seed, 1)),
                                  "test_fraction")
    torch.manual_seed(seed)  # weight initialisation is part of the seed
    model = build_model(architecture, X.shape[1], X.shape[2], len(class_names), **model_kwargs)
    history = train_model(model, X[~held_out], y[~held_out], **train_kwargs)
    metrics = {"best_epoch": history["best_epoch"], "epochs_trained": history["epochs_trained"],
               "training_accuracy": history["train_accuracy"],
               "validation_accuracy": history["val_accuracy"]}
    if held_out.any():
        predicted = _predict(model, X[held_out], resolve_device(train_kwargs.get("device", "auto")))
        test = chance_test(y[held_out], predicted)
        metrics.update(held_out_accuracy=test.accuracy, n_held_out=test.n,
                       held_out_chance=test.chance, held_out_p_value=test.p_value)
        if not test.above_chance:
            warnings.warn(chance_warning(test, "held-out"), ChanceLevelWarning, stacklevel=2)
    ch_names = [epochs.ch_names[i] for i in mne.pick_types(epochs.info, eeg=True)]
    config = EEGModelConfig(
        architecture=architecture, model_kwargs=model_kwargs, ch_names=ch_names,
        sfreq=float(epochs.info["sfreq"]), n_times=int(X.shape[2]), tmin=float(epochs.tmin),
        class_names=class_names, units=units, metrics=metrics,
        split=split_record(epochs.get_data(picks=ch_names), held_out))
    model.eeg_config = config
    return model, config


def __getattr__(name: str):
    # saving and loading moved to lrp_captum.eeg.model_folder
    from lrp_captum.deprecated_paths import moved_name

    return moved_name(__name__, name)
