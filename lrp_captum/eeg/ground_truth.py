"""Where the class-discriminative signal of a data set is known to be: channels and a time window.

Simulated data (``lrp-captum eeg simulate``) carry it; so may any data set whose effect is known
from the experiment. It travels with the epochs -- as JSON in ``epochs.info["description"]`` and
in a ``<stem>.truth.json`` sidecar next to the ``-epo.fif`` -- so that an EEG result folder
(:mod:`lrp_captum.eeg.result_folder`) can score how much relevance falls on it and the app can
outline it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mne

#: the key of the ground truth in ``epochs.info["description"]`` (JSON)
TRUTH_KEY = "lrp_captum_ground_truth"


@dataclass
class GroundTruth:
    """Where the class-discriminative signal of a data set lives.

    Attributes
    ----------
    task : str
        What the data are (``"motor_imagery"``, ``"erp"``, or the user's name for them).
    channels : list of str
        Channels that carry the discriminative signal (for simulated data: whose
        discriminative-source amplitude is >= ``threshold`` x its peak).
    tmin, tmax : float
        Time window (s, epoch time axis) in which the classes differ.
    class_names : list of str
        Class names; the label of class ``class_names[k]`` is ``k`` and its event code ``k + 1``.
    threshold : float
        The relative amplitude used to pick ``channels``.
    sources : dict
        Name -> electrode below which a dipole was placed (for the record).
    """

    task: str
    channels: list
    tmin: float
    tmax: float
    class_names: list
    threshold: float = 0.5
    sources: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "GroundTruth":
        return cls(**json.loads(text))


def attach_ground_truth(epochs: mne.BaseEpochs, truth: GroundTruth) -> mne.BaseEpochs:
    """Store ``truth`` in ``epochs.info["description"]`` (saved with the epochs); returns them."""
    epochs.info["description"] = json.dumps({TRUTH_KEY: json.loads(truth.to_json())})
    return epochs


def sidecar_path(fif_path) -> Path:
    """``<stem>.truth.json`` next to ``<stem>-epo.fif``."""
    fif_path = Path(fif_path)
    name = fif_path.name
    stem = name[: -len("-epo.fif")] if name.endswith("-epo.fif") else fif_path.stem
    return fif_path.with_name(stem + ".truth.json")


def read_ground_truth(epochs_or_path) -> GroundTruth:
    """Ground truth from ``Epochs`` (relevance epochs of them included), a ``-epo.fif`` or its
    sidecar.

    Raises
    ------
    ValueError
        If the epochs carry none.
    """
    if isinstance(epochs_or_path, (str, Path)):
        path = Path(epochs_or_path)
        sidecar = sidecar_path(path)
        if sidecar.exists():
            return GroundTruth.from_json(sidecar.read_text())
        epochs_or_path = mne.read_epochs(path, preload=False, verbose=False)
    description = epochs_or_path.info.get("description") or ""
    try:
        payload = json.loads(description)[TRUTH_KEY]
    except (ValueError, KeyError, TypeError):
        raise ValueError("These epochs carry no lrp_captum ground truth; only data made by "
                         "lrp_captum.demos.eeg_simulation.simulate_epochs (or given one with "
                         "attach_ground_truth) do.") from None
    return GroundTruth(**payload)
