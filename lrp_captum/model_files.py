"""Reading the user's model files: weights, ``package.module:factory`` names and class names.

One place for what every adapter and CLI does with them, so that each refuses bad input the same
way: weights only through ``torch.load(..., weights_only=True)`` (a pickled object is refused,
not run), a weights file that does not fit the architecture named with both, a factory that does
not import, fails or returns something else than a module named as given.
"""
from __future__ import annotations

import importlib
import pickle
import re
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["read_state_dict", "read_checkpoint", "load_weights", "import_factory", "build_from_factory",
           "class_index", "class_names"]


def read_state_dict(path, *, what: str = "weights", of: str = "", map_location="cpu") -> dict:
    """The state_dict in ``path`` (also one saved as ``{"state_dict": ...}``, or a
    ``.safetensors`` file).

    Raises ``FileNotFoundError`` when ``path`` is missing and ``ValueError`` naming ``what`` and
    the file when it is not a plain weights file (pickled objects are refused by
    ``weights_only=True``) or holds no dict of tensors. ``of`` follows the file name in messages
    (e.g. ``"of MIL head h.json"``).
    """
    path = Path(path)
    named = f"{what} {path}" + (f" {of}" if of else "")
    if not path.is_file():
        raise FileNotFoundError(f"{named} do not exist")
    if path.suffix == ".safetensors":
        return _read_safetensors(path, named, map_location)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{named} are not a plain state_dict (read with torch.load(weights_only=True), "
                         f"which refuses pickled objects): {first}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{named} hold a {type(state).__name__}, not a state_dict (a dict of tensors)")
    return state


def _read_safetensors(path: Path, named: str, map_location) -> dict:
    """The tensors of a ``.safetensors`` file (a format that holds tensors only: nothing in it
    can run); ``ValueError`` naming the file when it is not one."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ValueError(f"{named}: reading .safetensors needs the safetensors package "
                         f"(pip install safetensors)") from None
    device = map_location if isinstance(map_location, str) else "cpu"
    try:
        return load_file(str(path), device=device)
    except Exception as exc:  # noqa: BLE001 -- safetensors raises its own error types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{named} are not a readable .safetensors file: {first}") from None


def _numpy_scalar_globals() -> list:
    """What unpickling numpy scalars needs (``numpy.float64(0.93)``, as training scripts store
    a validation AUC next to the state_dict), and nothing else: no arrays, no objects. The name
    of numpy 1.x (``numpy.core``) maps onto numpy 2's module so old files load too."""
    import numpy as np

    try:
        scalar = np._core.multiarray.scalar
    except AttributeError:  # numpy < 2
        scalar = np.core.multiarray.scalar
    kinds = (np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_)
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype,
            *{type(np.dtype(k)) for k in kinds}]


def read_checkpoint(path, *, what: str = "checkpoint", map_location="cpu"):
    """The object in a training checkpoint such as ``{"model_state_dict": ..., "epoch": 3,
    "auc_val": numpy.float64(0.93)}``, read with ``torch.load(weights_only=True)`` and numpy
    *scalars* allowed (:func:`_numpy_scalar_globals`); never with ``weights_only=False``.

    Raises ``FileNotFoundError`` when ``path`` is missing and ``ValueError`` naming the file and
    the refused global (e.g. a pickled module, or a Lightning ``.ckpt`` whose hyper-parameters
    are objects) with what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        refused = re.search(r"GLOBAL ([\w.]+)", str(exc))
        first = f"it pickles {refused.group(1)}" if refused else (str(exc).strip().splitlines() or [repr(exc)])[0]
        hint = (" (a Lightning checkpoint whose hyper_parameters hold objects)" if path.suffix == ".ckpt" else "")
        raise ValueError(f"{what} {path} holds more than tensors, numbers and numpy scalars{hint}, so "
                         f"torch.load(weights_only=True) refuses it ({first}). Re-save only the state_dict "
                         f"(torch.save(model.state_dict(), ...)) where the file is trusted") from None


def load_weights(model: nn.Module, path, *, what: str = "weights", of: str = "", architecture: str = "",
                 strict: bool = True, map_location="cpu") -> tuple[list, list]:
    """Load the state_dict in ``path`` into ``model``; returns ``(missing, unexpected)`` keys
    (both empty when ``strict``).

    Raises as :func:`read_state_dict`, and ``ValueError`` naming the file and ``architecture``
    (default: the model's class) when the weights do not fit.
    """
    state = read_state_dict(path, what=what, of=of, map_location=map_location)
    try:
        result = model.load_state_dict(state, strict=strict)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ValueError(f"{what} {path} do not fit {architecture or type(model).__name__!r}: {exc}") from None
    return list(result.missing_keys), list(result.unexpected_keys)


def import_factory(spec: str, what: str = "model factory") -> Callable:
    """The callable named by ``'package.module:factory'``; ``ValueError`` naming ``spec`` if it
    cannot be imported."""
    module_name, sep, attr = spec.partition(":")
    if not (module_name and sep and attr):
        raise ValueError(f"{what} {spec!r} is not of the form 'package.module:factory'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {what} {spec!r} ('package.module:factory', importable from "
                         f"the current environment): {exc}") from None


def build_from_factory(spec: str, what: str = "model factory", **kwargs) -> nn.Module:
    """The module that the factory ``'package.module:factory'`` returns when called with ``kwargs``.

    Raises ``ValueError`` naming ``spec``: it cannot be imported (:func:`import_factory`), calling it
    raises (with that error's type and first line), or it returns something other than a
    ``torch.nn.Module``.
    """
    factory = import_factory(spec, what)
    try:
        model = factory(**kwargs)
    except Exception as exc:  # noqa: BLE001 -- the user's code: any error is reported, named
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ValueError(f"calling {what} {spec!r} failed ({type(exc).__name__}: {first}); it is called "
                         f"with {', '.join(kwargs) or 'no arguments'} and must return a torch.nn.Module") from None
    if not isinstance(model, nn.Module):
        raise ValueError(f"{what} {spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def class_index(classes: Sequence[str], name_or_index, owner: str = "model") -> int:
    """Index of a class given by name or index (``"2"`` counts as an index); ``ValueError`` naming
    the ``owner``'s classes when there is no such class."""
    classes = list(classes)
    if isinstance(name_or_index, str) and not name_or_index.lstrip("-").isdigit():
        if name_or_index not in classes:
            raise ValueError(f"unknown class {name_or_index!r}; the {owner}'s classes are {classes}")
        return classes.index(name_or_index)
    i = int(name_or_index)
    if not 0 <= i < len(classes):
        raise ValueError(f"class index {i} out of range for {len(classes)} classes {classes}")
    return i


def class_names(value, owner: str) -> list[str]:
    """``value`` as a list of class names: at least one, each a non-empty string, all distinct
    (two classes of one name would share one ``p_<name>`` column and one target name).

    ``ValueError`` starting with ``owner`` (``"model config m.json"``, ``"--classes"``) otherwise.
    """
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{owner}: classes must be a list of class names, got {value!r}")
    if not value:
        raise ValueError(f"{owner}: classes must name at least one class")
    bad = [c for c in value if not (isinstance(c, str) and c.strip())]
    if bad:
        raise ValueError(f"{owner}: class names must be non-empty strings, got {bad[0]!r}")
    twice = sorted({c for c in value if value.count(c) > 1})
    if twice:
        raise ValueError(f"{owner}: class names must be distinct; {', '.join(map(repr, twice))} appears twice "
                         f"in {list(value)}")
    return list(value)
