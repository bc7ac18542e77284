"""Is the signal of each channel in the physiological range of its channel type?

Data written in the wrong unit (millivolts stored as volts, a µV-to-V conversion applied twice)
pass every structural check and give confident-looking relevance maps of nonsense. The check
here compares each channel's *typical amplitude* with the range its channel type can have on
the scalp and warns (it does not refuse: a threshold cannot know every recording).

Typical amplitude of a channel: the median over epochs of its within-epoch standard deviation.
The standard deviation ignores DC offsets (DC-coupled amplifiers record offsets of many mV on
otherwise normal channels); the median over epochs keeps a few artefact epochs (blinks,
movement) from deciding.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

#: (low, high) typical amplitude in volts per MNE channel type; see docs/eeg.md for the choice.
#: EEG: background activity on the scalp has a standard deviation of a few to a few tens of µV.
#: 500 µV is ten times the largest of those and above the within-epoch standard deviation of
#: blink-contaminated frontal epochs (blinks peak at 100-300 µV); millivolts written as volts
#: give several thousand µV. 0.1 µV is below the noise floor of EEG amplifiers (about
#: 0.5-1 µV rms in 0.5-40 Hz): only a flat channel (disconnected, or the reference itself)
#: or data scaled twice lie below it.
PHYSIOLOGICAL_RANGE_V = {"eeg": (0.1e-6, 500e-6)}


class AmplitudeWarning(UserWarning):
    """A channel's amplitude lies outside the physiological range of its type."""


def typical_amplitude(volts: np.ndarray) -> np.ndarray:
    """Median over epochs of the within-epoch standard deviation, ``(C,)`` in V.

    Parameters
    ----------
    volts : np.ndarray, shape (N, C, T)
        Epochs in volts, N > 0.
    """
    return np.median(np.asarray(volts).std(axis=2), axis=0)


def _named(ch_names, level, rows, largest_first: bool, shown: int = 3) -> str:
    """The most extreme of ``rows`` by name and amplitude, and how many more there are."""
    order = sorted(rows, key=lambda i: -level[i] if largest_first else level[i])
    text = ", ".join(f"'{ch_names[i]}' ({level[i] * 1e6:.3g} µV)" for i in order[:shown])
    return text + (f" and {len(rows) - shown} more" if len(rows) > shown else "")


def warn_outside_physiological_range(volts: np.ndarray, ch_names: Sequence[str],
                                     ch_type: str = "eeg") -> None:
    """Warn (:class:`AmplitudeWarning`) about channels whose typical amplitude is implausible.

    Parameters
    ----------
    volts : np.ndarray, shape (N, C, T)
        Epochs in volts (MNE's unit), N > 0.
    ch_names : sequence of str, length C
    ch_type : str
        MNE channel type of all C channels (a key of :data:`PHYSIOLOGICAL_RANGE_V`).
    """
    low, high = PHYSIOLOGICAL_RANGE_V[ch_type]
    level = typical_amplitude(volts)
    bounds = (f"the physiological range of {ch_type.upper()} ({low * 1e6:g} to "
              f"{high * 1e6:g} µV; median over epochs of each epoch's standard deviation)")
    above = list(np.flatnonzero(level > high))
    if above:
        warnings.warn(
            f"channel(s) {_named(ch_names, level, above, True)} have a typical amplitude above "
            f"{bounds}. Data 1000x too large are millivolts written as volts: MNE expects volts "
            "(scale with epochs.apply_function(lambda x: x * 1e-3)).", AmplitudeWarning,
            stacklevel=3)
    below = list(np.flatnonzero(level < low))
    if below:
        warnings.warn(
            f"channel(s) {_named(ch_names, level, below, False)} have a typical amplitude below "
            f"{bounds}: a flat channel (disconnected electrode, or the reference itself) or "
            "data scaled twice. MNE expects volts.", AmplitudeWarning, stacklevel=3)
