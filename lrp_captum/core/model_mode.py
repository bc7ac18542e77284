"""Explain a model in evaluation mode without changing the user's model.

Captum's ``LRP`` runs a model whatever its mode, and most tutorial code never calls ``eval()``.
An explanation is of a fixed function, so :func:`evaluation_mode` switches every module that is
in training mode to evaluation mode for the duration of one call and restores each module's own
``training`` flag afterwards, also after an exception. A model whose output depends on the mode
(dropout, batch statistics, a forward that reads ``self.training``) gets one warning per model
saying so; one whose output does not depend on it just runs.
"""
from __future__ import annotations

import contextlib
import inspect
import warnings
import weakref
from typing import Iterator

from torch import nn

__all__ = ["evaluation_mode", "mode_dependent_modules"]

#: module types whose output differs between training and evaluation mode
MODE_DEPENDENT = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm,
                  nn.modules.instancenorm._InstanceNorm, nn.RNNBase, nn.MultiheadAttention)

_warned: "weakref.WeakSet[nn.Module]" = weakref.WeakSet()


def _reads_training_flag(module: nn.Module) -> bool:
    """True for a user-defined module whose ``forward`` reads ``self.training``."""
    cls = type(module)
    if cls.__module__.startswith("torch."):
        return False
    try:
        source = inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return False
    return "self.training" in source


def mode_dependent_modules(model: nn.Module) -> list[str]:
    """Names of the modules in training mode whose output depends on the mode.

    Known layer types (dropout, BatchNorm, InstanceNorm with running statistics, RNN dropout,
    MultiheadAttention dropout) and user modules whose ``forward`` reads ``self.training``.
    """
    names = []
    for name, module in model.named_modules():
        if not module.training:
            continue
        if isinstance(module, nn.modules.instancenorm._InstanceNorm) and \
                not module.track_running_stats:
            continue
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p == 0:
            continue
        if isinstance(module, MODE_DEPENDENT) or _reads_training_flag(module):
            names.append(name or type(model).__name__)
    return names


@contextlib.contextmanager
def evaluation_mode(model: nn.Module, warn: bool = True) -> Iterator[nn.Module]:
    """Run ``model`` in evaluation mode inside the block; restore every module's flag after.

    Parameters
    ----------
    model : nn.Module
        The user's model. Only ``training`` flags are touched, and each is set back to its own
        value (a model partly in training mode comes back partly in training mode).
    warn : bool
        Warn (once per model) when a module in training mode has mode-dependent output.

    Yields
    ------
    nn.Module
        ``model`` itself.
    """
    training = [m for m in model.modules() if m.training]
    if not training:
        yield model
        return
    if warn and model not in _warned:
        dependent = mode_dependent_modules(model)
        if dependent:
            _warned.add(model)
            shown = ", ".join(f"'{n}'" for n in dependent[:5])
            more = f" and {len(dependent) - 5} more" if len(dependent) > 5 else ""
            warnings.warn(
                f"{type(model).__name__} is in training mode and its output depends on it "
                f"({shown}{more}): it is explained in evaluation mode (dropout off, BatchNorm "
                "running statistics) and every module's training flag is restored afterwards. "
                "Call model.eval() to silence this warning.", UserWarning, stacklevel=3)
    try:
        for m in training:
            m.training = False
        yield model
    finally:
        for m in training:
            m.training = True
