"""Which epochs a model was trained on, and whether it beats chance on the others.

An accuracy measured on the epochs a model was fitted to says little: a network of a few
thousand weights reaches 100 % on 80 trials of pure noise. :func:`lrp_captum.eeg.train.fit_epochs`
therefore holds out a stratified test split and records, in the model's config, which epochs
it used for training (fitting and early stopping) and which it held out, each by the index in
the training file and by a fingerprint of its data. :func:`epoch_splits` recognises those
epochs later in any file -- the training file itself, a subset, a reordered copy -- so that
accuracy and relevance maps can be reported per split. An epoch it does not recognise is of
unknown split, never held-out: changed training data (rescaled by 1 + 1e-6 is enough) look new
to a fingerprint but not to the model. :func:`chance_test` says whether an
accuracy is significantly above chance.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy import stats

from lrp_captum.wording import counted

#: split names, as written into ``epochs.metadata["split"]`` and ``summary.json``
HELD_OUT, TRAINING, UNKNOWN = "held-out", "training", "unknown"

#: a held-out accuracy counts as above chance when a one-sided binomial test against the
#: majority-class rate gives p below this
CHANCE_ALPHA = 0.05


class ChanceLevelWarning(UserWarning):
    """The model does not classify significantly better than chance: do not interpret its maps."""


def stratified_holdout(y: np.ndarray, fraction: float, rng: np.random.Generator,
                       name: str = "fraction") -> np.ndarray:
    """Boolean mask ``(N,)`` selecting ``fraction`` of each class (at least one per class).

    Raises
    ------
    ValueError
        If a class would keep no epoch outside the mask (the message calls ``fraction`` by
        ``name``, the caller's argument).
    """
    mask = np.zeros(len(y), bool)
    if fraction <= 0:
        return mask
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n = max(1, int(round(fraction * len(idx))))
        if n >= len(idx):
            raise ValueError(f"{name}={fraction:g} would hold out {n} of the {len(idx)} "
                             f"epoch(s) of class {label}, leaving none to train on: use more "
                             f"epochs or a smaller {name}.")
        mask[idx[:n]] = True
    return mask


def epoch_fingerprints(volts: np.ndarray) -> list[str]:
    """One fingerprint per epoch of ``volts`` ``(N, C, T)``: SHA-256 of its float32 values.

    float32 because MNE writes epochs as float32: an epoch held in memory as float64 and the
    same epoch read back from its ``-epo.fif`` get the same fingerprint. Any change of the data
    (filtering, re-referencing, cropping) gives another fingerprint.
    """
    data = np.ascontiguousarray(np.asarray(volts, dtype=np.float32))
    return [hashlib.sha256(epoch.tobytes()).hexdigest()[:20] for epoch in data]


def split_record(volts: np.ndarray, held_out: np.ndarray) -> dict:
    """What a model config stores about its training data.

    Parameters
    ----------
    volts : np.ndarray, shape (N, C, T)
        The training file's epochs (V), channels in the model's order.
    held_out : np.ndarray of bool, shape (N,)
        The epochs kept out of training and early stopping.

    Returns
    -------
    dict
        ``n_epochs``, ``held_out_epochs`` (indices in the training file) and the fingerprints
        ``training`` and ``held_out``.
    """
    prints = epoch_fingerprints(volts)
    return {"n_epochs": len(prints),
            "held_out_epochs": [int(i) for i in np.flatnonzero(held_out)],
            "training": [p for p, h in zip(prints, held_out) if not h],
            "held_out": [p for p, h in zip(prints, held_out) if h]}


def epoch_splits(volts: np.ndarray, record: dict) -> np.ndarray:
    """Split of each epoch of ``volts`` ``(N, C, T)`` relative to a model's training record.

    Returns
    -------
    np.ndarray of str, shape (N,)
        ``"training"`` for an epoch the model was fitted or early-stopped on, ``"held-out"``
        for one it recorded as held out of training, and ``"unknown"`` for any other: another
        recording, or training data changed since (filtered, re-referenced, rescaled -- the model
        may well have been trained on them), and every epoch when the model records no training
        data (a config written before the split was recorded, or made by hand). An epoch is
        never held-out because its fingerprint is new.
    """
    if not record:
        return np.full(len(volts), UNKNOWN, dtype=object)
    training, held_out = set(record.get("training", ())), set(record.get("held_out", ()))
    return np.array([TRAINING if p in training else HELD_OUT if p in held_out else UNKNOWN
                     for p in epoch_fingerprints(volts)], dtype=object)


@dataclass(frozen=True)
class ChanceTest:
    """Accuracy on ``n`` epochs against the chance level of always answering the majority class.

    Attributes
    ----------
    accuracy : float
    n : int
        Number of epochs scored.
    chance : float
        Share of the most frequent true class among them.
    p_value : float
        One-sided binomial test of ``accuracy * n`` correct against rate ``chance``.
    """

    accuracy: float
    n: int
    chance: float
    p_value: float

    @property
    def above_chance(self) -> bool:
        return self.p_value < CHANCE_ALPHA


def chance_test(labels: np.ndarray, predicted: np.ndarray) -> ChanceTest:
    """Is the accuracy of ``predicted`` on ``labels`` (both ``(N,)``, N > 0) above chance?"""
    labels, predicted = np.asarray(labels), np.asarray(predicted)
    n = len(labels)
    correct = int((labels == predicted).sum())
    chance = float(np.bincount(labels).max() / n)
    p_value = float(stats.binomtest(correct, n, chance, alternative="greater").pvalue)
    return ChanceTest(accuracy=correct / n, n=n, chance=chance, p_value=p_value)


_SPLIT_PHRASE = {HELD_OUT: ("held-out epoch", "{}"),
                 TRAINING: ("epoch", "{} it was trained on"),
                 UNKNOWN: ("epoch", "{} of unknown split (not recorded as held out of its training)")}


def chance_warning(test: ChanceTest, split: str) -> str:
    """The text of a :class:`ChanceLevelWarning` for ``test`` on epochs of ``split``."""
    noun, phrase = _SPLIT_PHRASE[split]
    epochs = phrase.format(counted(test.n, noun))
    return (f"the model is at chance level on the {epochs}: accuracy "
            f"{test.accuracy:.3f} against a chance level of {test.chance:.3f} (binomial test "
            f"p = {test.p_value:.2g}, needs p < {CHANCE_ALPHA}). Its relevance maps do not show "
            "what distinguishes the classes; do not interpret them. Check the labels, train on "
            "more epochs, or use a data set with a stronger effect.")
