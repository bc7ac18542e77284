"""Where to compute: a device name as the user gives it (``"auto"``, ``"cpu"``, ``"cuda:1"``), and
the device a model's weights are on.

One home for what the EEG and text adapters (and their trainers) did each in their own way, so
that ``"auto"`` and a missing GPU mean the same everywhere.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["resolve_device", "model_device"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` for a device name.

    Parameters
    ----------
    device : str, torch.device or None
        ``"auto"`` (or ``None``): CUDA when available, else the CPU. Otherwise any name
        ``torch.device`` accepts (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).

    Raises
    ------
    RuntimeError
        A CUDA device was asked for on a machine without one, or its index is out of range
        (the message says which devices there are).
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r}: no CUDA GPU is available on this machine; "
                               "use 'auto' or 'cpu'")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"device {str(device)!r}: this machine has "
                               f"{torch.cuda.device_count()} CUDA device(s)")
    return device


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without parameters)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
