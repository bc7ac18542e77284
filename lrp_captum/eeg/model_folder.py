"""A saved EEG model folder and the data contract it carries.

A saved model is a folder with ``model.pt`` (a ``state_dict``, loadable with
``torch.load(..., weights_only=True)``) and ``config.json`` (an :class:`EEGModelConfig`): the
architecture and its arguments, and what the model expects of its input -- channel names and
order, sampling rate, epoch start and length, units -- so that :func:`lrp_captum.eeg.explain`
can refuse epochs that do not match -- and which epochs it was trained on, so that accuracy
and relevance maps can be reported on held-out epochs (:mod:`lrp_captum.eeg.heldout`).

Training (:mod:`lrp_captum.eeg.train`) writes such folders; explaining reads them. Neither needs
the other: a model trained elsewhere becomes a folder with :func:`save_model` and an
:class:`EEGModelConfig` filled in by hand.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from lrp_captum.devices import resolve_device
from lrp_captum.eeg.models import build_model
from lrp_captum.model_files import load_weights

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


def save_model(model: nn.Module, config: EEGModelConfig, folder) -> Path:
    """Write ``model.pt`` (state_dict) and ``config.json`` into ``folder``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, folder / WEIGHTS_NAME)
    (folder / CONFIG_NAME).write_text(json.dumps(asdict(config), indent=2))
    return folder


def check_model_folder(folder) -> Path:
    """``folder`` as a Path if it holds both files of a saved model.

    Raises
    ------
    FileNotFoundError
        The folder, its ``config.json`` or its ``model.pt`` is missing (the message says what a
        model folder holds and what writes one).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such model folder: {folder}")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} has no {name}: give a folder written by "
                                    f"'lrp-captum eeg train' or save_model ({CONFIG_NAME} + "
                                    f"{WEIGHTS_NAME})")
    return folder


def load_config(folder) -> EEGModelConfig:
    """Read ``config.json`` of a saved model folder.

    Raises
    ------
    FileNotFoundError
        There is no ``config.json``.
    ValueError
        It is not the JSON of an :class:`EEGModelConfig` (the message names the file).
    """
    path = Path(folder) / CONFIG_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: a saved EEG model folder holds "
                                f"{CONFIG_NAME} and {WEIGHTS_NAME} (see save_model).")
    try:
        return EEGModelConfig(**json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not an EEG model config written by save_model: "
                         f"{exc}") from None


def load_model(folder, device: str = "cpu") -> nn.Module:
    """Rebuild a saved model; its :class:`EEGModelConfig` is attached as ``model.eeg_config``."""
    config = load_config(folder)
    model = build_model(config.architecture, len(config.ch_names), config.n_times,
                        len(config.class_names), **config.model_kwargs)
    load_weights(model, Path(folder) / WEIGHTS_NAME, what="EEG model weights", architecture=config.architecture)
    model.eeg_config = config
    return model.to(resolve_device(device)).eval()
