"""Explain EEG classifiers on MNE epochs; relevance comes back as MNE objects.

>>> result = explain_epochs("models/mi", "sim_mi-epo.fif", composite="epsilon")
>>> result.epochs            # mne.EpochsArray: relevance per trial, channels x time
>>> result.evokeds["left_hand"].plot_topomap(times=[0.8, 1.2], scalings=1, units="relevance")

Relevance is stored in the data arrays of EEG channels so that every MNE plotting function
works, but its unit is the explained output (a logit by default), not volts: pass
``scalings=1, units="relevance"`` to MNE's plot functions, or use :mod:`lrp_captum.eeg.plots`.

Every explained epoch is marked ``held-out`` or ``training`` (``metadata["split"]``) from the
record of training epochs in the model's config (:mod:`lrp_captum.eeg.heldout`), so accuracy
and maps are reported per split; a model at chance level on held-out epochs gets a
:class:`~lrp_captum.eeg.heldout.ChanceLevelWarning`. The user's model is never changed: one in
training mode is explained in evaluation mode and every module's flag is restored
(:func:`lrp_captum.core.model_mode.evaluation_mode`), and it is not moved to another device.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import mne
import numpy as np
import pandas as pd
import torch
from torch import nn

from lrp_captum import LRP, get_composite, Composite
from lrp_captum.evaluation.metrics import relevance_mass_accuracy
from lrp_captum.core.model_mode import evaluation_mode
from lrp_captum.devices import model_device, resolve_device

from lrp_captum.eeg.amplitude import warn_outside_physiological_range
from lrp_captum.eeg.epochs_file import read_epochs_file
from lrp_captum.eeg.heldout import (HELD_OUT, TRAINING, UNKNOWN, ChanceLevelWarning, ChanceTest, chance_test,
                                    chance_warning, epoch_splits)
from lrp_captum.eeg.models import eeg_layer_map
from lrp_captum.eeg.model_folder import EEGModelConfig, load_model

# EEG in MNE is in volts; a channel whose median absolute value exceeds this is almost surely
# microvolts written as volts (real scalp EEG is below ~1 mV).
_MAX_PLAUSIBLE_VOLTS = 1e-2


class EpochsMismatchError(ValueError):
    """Epochs do not match what the model was trained on (channels, rate, length, units)."""


@dataclass
class EEGRelevance:
    """LRP relevance of a set of epochs.

    Attributes
    ----------
    epochs : mne.EpochsArray
        Relevance per trial, ``(N, C, T)`` in units of the explained output; same channels,
        times and events as the input; ``metadata`` adds ``target``, ``predicted``, ``logit``
        (of the target) and ``relevance_sum`` per trial.
    evokeds : dict of str -> mne.EvokedArray
        Relevance averaged over the trials of each class (true class when the epochs' events
        name the model's classes, otherwise the predicted class); ``nave`` = trial count.
    logits : np.ndarray, shape (N, n_classes)
    predicted : np.ndarray, shape (N,)
    labels : np.ndarray or None, shape (N,)
        True class indices, if the events name the model's classes.
    targets : np.ndarray, shape (N,)
        The explained output index per trial.
    class_names : list of str
    composite : str
    split : np.ndarray of str, shape (N,)
        ``"held-out"`` (recorded as held out of training), ``"training"`` (fitted or
        early-stopped on) or ``"unknown"`` (not recorded either way: another recording, data
        changed since training, or a model that records no split) per trial; also
        ``epochs.metadata["split"]``.
    indices : np.ndarray of int, shape (N,)
        Position of each explained trial in the epochs given to :func:`explain_epochs`.
    which : str
        Which epochs were asked for (``"all"``, ``"held-out"``, ``"training"``).
    requested_target : str, int or sequence
        The ``target`` as given to :func:`explain_epochs` (``"predicted"``, ``"true"``, ...).
    model_metrics : dict
        The model's training record (``EEGModelConfig.metrics``).
    sources : dict
        ``"epochs"`` and ``"model"``: the files they were read from, or ``None`` for objects.
    warnings : list of str
        The warnings the explanation gave (amplitude, chance level), a chance-level one last.
    """

    epochs: mne.EpochsArray
    evokeds: dict
    logits: np.ndarray
    predicted: np.ndarray
    labels: Optional[np.ndarray]
    targets: np.ndarray
    class_names: list
    composite: str
    split: np.ndarray
    indices: np.ndarray
    which: str = "all"
    requested_target: object = "predicted"
    model_metrics: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def accuracy_of(self, split: str) -> Optional[float]:
        """Share of correctly classified trials of ``split`` (``"held-out"``, ``"training"``,
        ``"unknown"``); ``None`` without labels or without trials of that split."""
        sel = self.split == split
        if self.labels is None or not sel.any():
            return None
        return float((self.predicted[sel] == self.labels[sel]).mean())

    @property
    def held_out_accuracy(self) -> Optional[float]:
        """Accuracy on the explained trials the model was not trained on."""
        return self.accuracy_of(HELD_OUT)

    @property
    def training_accuracy(self) -> Optional[float]:
        """Accuracy on the explained trials the model was trained on (optimistic)."""
        return self.accuracy_of(TRAINING)

    def chance_test(self) -> Optional[tuple[str, ChanceTest]]:
        """Is the model above chance? Tested on the held-out trials if there are any, else on
        trials of unknown split, else on training trials; ``None`` without labels.

        Returns
        -------
        (split, ChanceTest) or None
        """
        if self.labels is None:
            return None
        for split in (HELD_OUT, UNKNOWN, TRAINING):
            sel = self.split == split
            if sel.any():
                return split, chance_test(self.labels[sel], self.predicted[sel])
        return None

    def save(self, folder) -> dict:
        """Write ``relevance-epo.fif`` and ``relevance-ave.fif`` (one Evoked per class).

        These are the MNE files only; :func:`lrp_captum.eeg.result_folder.save_result_folder`
        writes them with the summary (accuracy per split, ground truth) and figures that
        ``lrp-captum eeg explain`` writes and the app's EEG page shows.

        Returns
        -------
        dict of str -> Path
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"epochs": folder / "relevance-epo.fif", "evokeds": folder / "relevance-ave.fif"}
        self.epochs.save(paths["epochs"], overwrite=True, verbose=False)
        mne.write_evokeds(paths["evokeds"], list(self.evokeds.values()), overwrite=True,
                          verbose=False)
        return paths


def _as_epochs(epochs) -> mne.BaseEpochs:
    if isinstance(epochs, (str, Path)):
        epochs = read_epochs_file(epochs)
    if not isinstance(epochs, mne.BaseEpochs):
        raise TypeError(f"expected mne.Epochs, mne.EpochsArray or a path to a -epo.fif file, "
                        f"got {type(epochs).__name__}.")
    return epochs


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _placed_model(model, config: Optional[EEGModelConfig], device: str
                  ) -> tuple[nn.Module, EEGModelConfig, torch.device]:
    """The model to run, its config and device; the user's model itself is never moved.

    A saved model folder is loaded onto ``device``. A model object runs where it is with
    ``device="auto"``; given another device explicitly, a copy runs there.
    """
    if isinstance(model, (str, Path)):
        dev = resolve_device(device)
        model = load_model(model, device=str(dev))
    else:
        here = model_device(model)
        dev = here if device == "auto" else resolve_device(device)
        if not _same_device(here, dev):
            model = copy.deepcopy(model).to(dev)
    config = config or getattr(model, "eeg_config", None)
    if config is None:
        raise ValueError("The model carries no EEGModelConfig: pass config=..., or use a model "
                         "from lrp_captum.eeg.train.fit_epochs or "
                         "lrp_captum.eeg.model_folder.load_model.")
    return model, config, dev


def check_epochs(epochs, config: EEGModelConfig) -> np.ndarray:
    """Validate ``epochs`` against a model's config and return the network input.

    Channels are matched by name (order may differ; they are reordered to the model's order).

    Returns
    -------
    np.ndarray, float32, shape (N, C, T)
        EEG data in the model's units (e.g. µV), channels in ``config.ch_names`` order.

    Raises
    ------
    EpochsMismatchError
        Naming what differs: no epochs, missing/extra/bad channels (with a hint when names
        differ only in case), sampling rate, number of samples or start time, units, or
        NaN/inf values (with the first offending epoch and channel).

    Warns
    -----
    lrp_captum.eeg.amplitude.AmplitudeWarning
        Channels whose amplitude lies outside the physiological range of EEG (e.g.
        millivolts written as volts).
    """
    return (_checked_volts(_as_epochs(epochs), config) * config.scale).astype(np.float32)


def _case_hint(missing: list, extra: list) -> Optional[str]:
    """Hint for given channel names that match missing ones except for case."""
    by_lower = {c.lower(): c for c in missing}
    renames = {c: by_lower[c.lower()] for c in extra if c.lower() in by_lower}
    if not renames:
        return None
    pairs = ", ".join(f"{a!r} -> {b!r}" for a, b in renames.items())
    return (f"{len(renames)} channel name(s) differ from the model's only in case ({pairs}): "
            f"rename them with epochs.rename_channels({renames!r})")


def _no_epochs_error() -> EpochsMismatchError:
    return EpochsMismatchError("there are no epochs to explain (0 epochs; if they were "
                               "dropped, epochs.drop_log says why).")


def _checked_volts(epochs: mne.BaseEpochs, config: EEGModelConfig) -> np.ndarray:
    """:func:`check_epochs` before scaling: the data ``(N, C, T)`` in volts, float64."""
    if len(epochs.events) == 0:
        raise _no_epochs_error()
    eeg_names = [epochs.ch_names[i] for i in mne.pick_types(epochs.info, eeg=True,
                                                              exclude=[])]
    missing = [c for c in config.ch_names if c not in eeg_names]
    extra = [c for c in eeg_names if c not in config.ch_names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"not known to the model {extra}"
                         f" (drop them with epochs.drop_channels({extra!r}))")
        hint = _case_hint(missing, extra)
        if hint:
            parts.append(hint)
        raise EpochsMismatchError(
            f"EEG channels differ from the model's {len(config.ch_names)} channels "
            f"({len(eeg_names)} given): " + "; ".join(parts) + ".")
    bads = [c for c in config.ch_names if c in epochs.info["bads"]]
    if bads:
        raise EpochsMismatchError(f"channels {bads} are marked bad; the model needs them: "
                                  "repair them with epochs.interpolate_bads() first.")
    sfreq = float(epochs.info["sfreq"])
    if abs(sfreq - config.sfreq) > 1e-6 * config.sfreq:
        raise EpochsMismatchError(f"sampling rate is {sfreq:g} Hz but the model was trained at "
                                  f"{config.sfreq:g} Hz: use epochs.resample({config.sfreq:g}).")
    n_times = len(epochs.times)
    if n_times != config.n_times:
        need = f"{config.n_times} samples ({config.tmin:g} to " \
               f"{config.tmin + (config.n_times - 1) / config.sfreq:g} s)"
        have = f"{n_times} samples ({epochs.tmin:g} to {epochs.tmax:g} s)"
        hint = "too short" if n_times < config.n_times else "too long: crop them with " \
            f"epochs.crop({config.tmin:g}, {config.tmin + (config.n_times - 1) / config.sfreq:g})"
        raise EpochsMismatchError(f"epochs have {have}, the model needs {need}: {hint}.")
    if abs(epochs.tmin - config.tmin) > 0.5 / config.sfreq:
        raise EpochsMismatchError(f"epochs start at {epochs.tmin:g} s relative to the event, the "
                                  f"model expects {config.tmin:g} s: re-epoch with "
                                  f"tmin={config.tmin:g}.")
    not_volts = [ch["ch_name"] for ch in epochs.info["chs"]
                 if ch["ch_name"] in config.ch_names
                 and (ch["unit"] != mne.io.constants.FIFF.FIFF_UNIT_V or ch["unit_mul"] != 0)]
    if not_volts:
        raise EpochsMismatchError(f"channels {not_volts} are not stored in volts; MNE EEG data "
                                  "must be in V.")
    data = epochs.get_data(picks=config.ch_names)
    if len(data) == 0:  # epochs read lazily can lose all to rejection only now
        raise _no_epochs_error()
    bad_values = ~np.isfinite(data)
    if bad_values.any():
        e, c, _ = np.argwhere(bad_values)[0]
        n_bad = int(bad_values.any(axis=(1, 2)).sum())
        raise EpochsMismatchError(
            f"{n_bad} epoch(s) contain NaN or inf, first in epoch {e} channel "
            f"{config.ch_names[c]!r}: drop them (epochs.drop([...])) or repair the data.")
    level = np.median(np.abs(data), axis=(0, 2))
    if np.any(level > _MAX_PLAUSIBLE_VOLTS):
        c = int(np.argmax(level))
        raise EpochsMismatchError(
            f"channel {config.ch_names[c]!r} has a median |value| of {level[c]:.3g} V: the data "
            "look like microvolts written as volts. MNE expects volts; multiply by 1e-6.")
    warn_outside_physiological_range(data, config.ch_names, "eeg")
    return data


def _labels(epochs: mne.BaseEpochs, class_names: list) -> Optional[np.ndarray]:
    """True class indices if every event code names one of the model's classes."""
    code_to_name = {code: name for name, code in epochs.event_id.items()}
    names = [code_to_name.get(code) for code in epochs.events[:, 2]]
    if all(n in class_names for n in names):
        return np.array([class_names.index(n) for n in names])
    return None


def _targets(target, n: int, labels, predicted, class_names) -> np.ndarray:
    if isinstance(target, str) and target == "predicted":
        return predicted.copy()
    if isinstance(target, str) and target == "true":
        if labels is None:
            raise ValueError("target='true' needs events named like the model's classes "
                             f"{class_names}.")
        return labels.copy()
    if isinstance(target, str):
        if target not in class_names:
            raise ValueError(f"target {target!r} is not 'predicted', 'true' or a class name "
                             f"of {class_names}.")
        return np.full(n, class_names.index(target))
    targets = np.broadcast_to(np.asarray(target, dtype=int), (n,)).copy()
    if targets.min() < 0 or targets.max() >= len(class_names):
        raise ValueError(f"target indices must lie in [0, {len(class_names) - 1}].")
    return targets


#: which epochs :func:`explain_epochs` explains
WHICH = ("all", HELD_OUT, TRAINING)


def explain_epochs(model: Union[nn.Module, str, Path], epochs, composite: Union[str, Composite]
                   = "epsilon", target="predicted", config: Optional[EEGModelConfig] = None,
                   output_mode: str = "logit", batch_size: int = 64, device: str = "auto",
                   progress: bool = False, which: str = "all") -> EEGRelevance:
    """LRP relevance of every epoch, as MNE objects.

    Parameters
    ----------
    model : nn.Module or path
        A trained model with ``model.eeg_config`` (from ``fit_epochs``/``load_model``) or a
        saved model folder. The model is not changed: one in training mode is explained in
        evaluation mode with every module's flag restored afterwards (one warning when its
        output depends on the mode), and it is not moved (see ``device``).
    epochs : mne.Epochs, mne.EpochsArray or path to ``-epo.fif``
        Checked against the model's config (see :func:`check_epochs`).
    composite : str or Composite
        A registered composite name (``lrp_captum.list_composites()``) or a composite; the EEG
        layer rules of :func:`lrp_captum.eeg.models.eeg_layer_map` are added. The default,
        LRP-ε, gives signed relevance and localised the simulated ground truth best and most
        stably over training seeds (``docs/eeg.md``); ``epsilon_plus`` (z⁺ on convolutions)
        is positive but less stable on the ERP task.
    target : "predicted", "true", class name, int or sequence of int
        The output explained per trial (a sequence: one per explained trial).
    output_mode : str
        ``"logit"``, ``"probability"`` or ``"contrastive"`` (see :class:`lrp_captum.LRP`).
    batch_size : int
        Epochs per forward/backward pass.
    device : "auto", "cpu" or "cuda"
        Where to compute. ``"auto"``: where a given model is (a model folder: CUDA when
        available). Another device than the model's runs a copy of the model there.
    progress : bool
        Show a tqdm progress bar over batches.
    which : {"all", "held-out", "training"}
        Explain all epochs, only those the model was not trained on (with a model that records
        no training epochs: all), or only those it was trained on (``config.split``).

    Returns
    -------
    EEGRelevance

    Warns
    -----
    ChanceLevelWarning
        The labelled trials (held-out ones when there are any) are not classified
        significantly better than chance: the maps do not show what separates the classes.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    sources = {"epochs": str(epochs) if isinstance(epochs, (str, Path)) else None,
               "model": str(model) if isinstance(model, (str, Path)) else None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _explain(model, epochs, composite, target, config, output_mode, batch_size,
                          device, progress, which)
    result.sources = sources
    result.warnings = user_warnings(caught)
    for w in caught:  # given again, now that they are recorded, to the caller's filters
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result


def user_warnings(caught) -> list[str]:
    """The distinct messages of recorded warnings meant for the user (``UserWarning``,
    ``RuntimeWarning``), whitespace collapsed, a :class:`ChanceLevelWarning` last."""
    shown = [w for w in caught if issubclass(w.category, (UserWarning, RuntimeWarning))]
    shown.sort(key=lambda w: issubclass(w.category, ChanceLevelWarning))
    return list(dict.fromkeys(" ".join(str(w.message).split()) for w in shown))


def _explain(model, epochs, composite, target, config, output_mode, batch_size, device, progress,
             which) -> EEGRelevance:
    epochs = _as_epochs(epochs)
    model, config, dev = _placed_model(model, config, device)
    volts = _checked_volts(epochs, config)
    split = epoch_splits(volts, config.split)
    indices = np.flatnonzero(split != TRAINING if which == HELD_OUT else
                             split == TRAINING if which == TRAINING else np.ones(len(split), bool))
    if len(indices) == 0:
        raise ValueError(f"none of the {len(split)} epochs is {which} for this model "
                         f"({np.count_nonzero(split == TRAINING)} were used to train it): "
                         f"explain another file, or all epochs (which='all'; on the command "
                         f"line --explain all), labelled by split.")
    if len(indices) < len(split):
        epochs, volts, split = epochs[indices], volts[indices], split[indices]
    X = (volts * config.scale).astype(np.float32)
    class_names = list(config.class_names)
    comp_name = composite if isinstance(composite, str) else getattr(composite, "name", "custom")
    comp = get_composite(composite, layer_map=eeg_layer_map())

    with evaluation_mode(model):
        lrp = LRP(model, composite=comp, canonizers="auto")
        with torch.no_grad():
            logits = np.concatenate([
                model(torch.as_tensor(X[i:i + batch_size], device=dev)).cpu().numpy()
                for i in range(0, len(X), batch_size)])
        predicted = logits.argmax(1)
        labels = _labels(epochs, class_names)
        targets = _targets(target, len(X), labels, predicted, class_names)

        batches = range(0, len(X), batch_size)
        if progress:
            from tqdm import tqdm
            batches = tqdm(batches, desc="LRP", unit="batch")
        relevance = np.empty(X.shape, dtype=np.float64)
        for i in batches:
            xb = torch.as_tensor(X[i:i + batch_size], device=dev)
            tb = torch.as_tensor(targets[i:i + batch_size], device=dev)
            attr = lrp.attribute(xb, target=tb, output_mode=output_mode)
            relevance[i:i + batch_size] = attr.detach().cpu().double().numpy()

    info = epochs.copy().pick(config.ch_names).info
    metadata = epochs.metadata.copy().reset_index(drop=True) if epochs.metadata is not None \
        else None
    extra = {"target": targets, "predicted": predicted,
             "logit": logits[np.arange(len(X)), targets], "relevance_sum": relevance.sum((1, 2)),
             "split": split}
    extra = pd.DataFrame(extra)
    if metadata is not None:  # columns of an earlier explanation are replaced, not duplicated
        metadata = pd.concat([metadata.drop(columns=[c for c in extra if c in metadata]),
                              extra], axis=1)
    else:
        metadata = extra
    rel_epochs = mne.EpochsArray(relevance, info, events=epochs.events.copy(),
                                 tmin=epochs.tmin, event_id=dict(epochs.event_id),
                                 metadata=metadata, verbose=False)
    groups = labels if labels is not None else predicted
    evokeds = {}
    for k, name in enumerate(class_names):
        sel = groups == k
        if sel.any():
            evokeds[name] = mne.EvokedArray(relevance[sel].mean(0), info, tmin=epochs.tmin,
                                            comment=name, nave=int(sel.sum()), verbose=False)
    result = EEGRelevance(epochs=rel_epochs, evokeds=evokeds, logits=logits,
                          predicted=predicted, labels=labels, targets=targets,
                          class_names=class_names, composite=comp_name, split=split,
                          indices=indices, which=which, requested_target=target,
                          model_metrics=dict(config.metrics))
    tested = result.chance_test()
    if tested is not None and not tested[1].above_chance:
        warnings.warn(chance_warning(tested[1], tested[0]), ChanceLevelWarning, stacklevel=3)
    return result


def ground_truth_mask(relevance: mne.BaseEpochs, channels, tmin: float, tmax: float) -> np.ndarray:
    """Boolean ``(C, T)`` mask of ``channels`` x ``[tmin, tmax]`` on the relevance grid."""
    unknown = [c for c in channels if c not in relevance.ch_names]
    if unknown:
        raise ValueError(f"ground-truth channels {unknown} are not in the relevance epochs.")
    mask = np.zeros((len(relevance.ch_names), len(relevance.times)), bool)
    rows = [relevance.ch_names.index(c) for c in channels]
    cols = (relevance.times >= tmin - 1e-9) & (relevance.times <= tmax + 1e-9)
    mask[np.ix_(rows, np.flatnonzero(cols))] = True
    return mask


def relevance_concentration(relevance: mne.BaseEpochs, channels, tmin: float,
                            tmax: float) -> dict:
    """How much positive relevance falls in a channels x time window, per trial.

    Returns
    -------
    dict
        ``mass`` (np.ndarray (N,): share of positive relevance inside, the relevance mass
        accuracy of :func:`lrp_captum.evaluation.metrics.relevance_mass_accuracy`), ``share`` (the window's
        share of the channel x time grid) and ``ratio`` (mean mass / share; 1 = no concentration).
    """
    mask = ground_truth_mask(relevance, channels, tmin, tmax)
    data = torch.as_tensor(relevance.get_data(picks="all"))
    masks = torch.as_tensor(mask).expand_as(data)
    mass = relevance_mass_accuracy(data, masks).numpy()
    share = float(mask.mean())
    return {"mass": mass, "share": share, "ratio": float(mass.mean() / share)}


def find_relevance_folders(results_dir) -> list[Path]:
    """Folders under ``results_dir`` (itself included) written by ``EEGRelevance.save``."""
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such results folder.")
    return sorted(p.parent for p in root.rglob("relevance-ave.fif")
                  if (p.parent / "relevance-epo.fif").exists())


def load_relevance(folder) -> tuple[mne.BaseEpochs, dict, dict]:
    """Read a folder written by ``EEGRelevance.save`` (and ``lrp-captum eeg explain``).

    Returns
    -------
    epochs : mne.Epochs
        Relevance per trial, with the metadata of :func:`explain_epochs`.
    evokeds : dict of str -> mne.Evoked
        Class averages by class name.
    summary : dict
        ``summary.json`` of the CLI, or ``{}``.
    """
    import json

    folder = Path(folder)
    for name in ("relevance-epo.fif", "relevance-ave.fif"):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder / name} not found: run "
                                    "'lrp-captum eeg explain ... --out DIR' first.")
    epochs = mne.read_epochs(folder / "relevance-epo.fif", preload=True, verbose=False)
    evokeds = {e.comment: e for e in mne.read_evokeds(folder / "relevance-ave.fif",
                                                       verbose=False)}
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return epochs, evokeds, summary
