"""The tensor of scores in a model's output (the values LRP explains)."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["scores"]


def scores(out) -> Tensor:
    """The tensor of scores in a model's output: the output itself, the ``logits`` of a
    Hugging Face ``ModelOutput``, or the first element of a tuple."""
    if torch.is_tensor(out):
        return out
    logits = getattr(out, "logits", None)
    if torch.is_tensor(logits):
        return logits
    if isinstance(out, (tuple, list)) and out and torch.is_tensor(out[0]):
        return out[0]
    raise TypeError(f"the model returned {type(out).__name__}; LRP needs a tensor of scores "
                    "(N, classes), an output with .logits, or a tuple starting with one")
