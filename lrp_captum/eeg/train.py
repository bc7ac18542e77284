"""Training EEG classifiers with early stopping, and saving/loading them with their data contract.

A saved model is a folder with ``model.pt`` (a ``state_dict``, loadable with
``torch.load(..., weights_only=True)``) and ``config.json`` (an :class:`EEGModelConfig`): the
architecture and its arguments, and what the model expects of its input -- channel names and
order, sampling rate, epoch start and length, units -- so that :func:`lrp_captum.eeg.explain`
can refuse epochs that do not match -- and which epochs it was trained on, so that accuracy
and relevance maps can be reported on held-out epochs (:mod:`lrp_captum.eeg.heldout`).
"""
from __future__ import annotations

import copy
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mne
import numpy as np
import torch
from torch import nn

from lrp_captum.model_files import load_weights
from lrp_captum.eeg.amplitude import warn_outside_physiological_range
from lrp_captum.eeg.heldout import (ChanceLevelWarning, chance_test, chance_warning, split_record,
                                    stratified_holdout)
from lrp_captum.eeg.models import build_model

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.pt"

# MNE stores EEG in volts; the networks are trained on microvolts (values of order 1-100).
UNIT_SCALE = {"V": 1.0, "mV": 1e3, "uV": 1e6}


@dataclass
class EEGModelConfig:
    """What a trained EEG model is and what input it expects.

    Attributes
    ----------
    architecture : str
        ``"shallow"`` or ``"eegnet"`` (see :func:`lrp_captum.eeg.models.build_model`).
    model_kwargs : dict
        Extra keyword arguments of the architecture.
    ch_names : list of str
        Channel names in input order.
    sfreq : float
        Sampling rate (Hz).
    n_times : int
        Samples per epoch.
    tmin : float
        Epoch start (s) relative to the event.
    units : str
        Units the network input is expressed in (``"uV"``: MNE's volts x 1e6).
    class_names : list of str
        Output index ``k`` is class ``class_names[k]``; matched to ``epochs.event_id``.
    metrics : dict
        Training record: epochs trained, best epoch, ``training_accuracy`` (epochs fitted on),
        ``validation_accuracy`` (early-stopping epochs) and, with a test split,
        ``held_out_accuracy``, ``n_held_out``, ``held_out_chance`` and ``held_out_p_value``.
    split : dict
        Which epochs of the training file were used for training and which were held out
        (:func:`lrp_captum.eeg.heldout.split_record`); empty in configs written before it
        was recorded.
    """

    architecture: str
    ch_names: list
    sfreq: float
    n_times: int
    tmin: float
    class_names: list
    units: str = "uV"
    model_kwargs: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    split: dict = field(default_factory=dict)

    @property
    def scale(self) -> float:
        """Factor from MNE's volts to the network's input units."""
        return UNIT_SCALE[self.units]


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


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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


def save_model(model: nn.Module, config: EEGModelConfig, folder) -> Path:
    """Write ``model.pt`` (state_dict) and ``config.json`` into ``folder``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, folder / WEIGHTS_NAME)
    (folder / CONFIG_NAME).write_text(json.dumps(asdict(config), indent=2))
    return folder


def load_config(folder) -> EEGModelConfig:
    """Read ``config.json`` of a saved model folder."""
    path = Path(folder) / CONFIG_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: a saved EEG model folder holds "
                                f"{CONFIG_NAME} and {WEIGHTS_NAME} (see save_model).")
    return EEGModelConfig(**json.loads(path.read_text()))


def load_model(folder, device: str = "cpu") -> nn.Module:
    """Rebuild a saved model; its :class:`EEGModelConfig` is attached as ``model.eeg_config``."""
    config = load_config(folder)
    model = build_model(config.architecture, len(config.ch_names), config.n_times,
                        len(config.class_names), **config.model_kwargs)
    load_weights(model, Path(folder) / WEIGHTS_NAME, what="EEG model weights", architecture=config.architecture)
    model.eeg_config = config
    return model.to(resolve_device(device)).eval()
