"""The two numerical operations every LRP rule needs, defined once."""
from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

__all__ = ["stabilize", "safe_divide"]


def stabilize(d: Tensor, s: Union[float, Tensor], inplace: bool = False) -> Tensor:
    """``d + s·sign(d)`` with ``sign(0) = +1``: moves a denominator away from zero.

    ``inplace=True`` writes into ``d`` (the fused layers' hot path, which must not allocate a
    second activation-sized tensor).
    """
    if not inplace:
        return d + s * (d >= 0).to(d.dtype).mul_(2).sub_(1)
    if torch.is_tensor(s) or s:
        d.add_(torch.where(d >= 0, s, -s) if torch.is_tensor(s) else
               torch.where(d >= 0, float(s), -float(s)))
    return d


def safe_divide(num: Tensor, den: Tensor, inplace: bool = False,
                check: bool = True) -> Tensor:
    """``num / den`` with 0 where ``den == 0``.

    ``inplace=True`` writes the quotient into ``den``. ``check=False`` skips the test for
    zeros: a denominator stabilised with ``s > 0`` is never 0.
    """
    if not inplace:
        if not check:
            return num / den
        # (for values only: where den == 0 the quotient's gradient would not be finite)
        return (num / den).masked_fill_(den == 0, 0.0)
    if not check:
        return torch.div(num, den, out=den)
    zero = den == 0
    den.masked_fill_(zero, 1.0)
    torch.div(num, den, out=den)
    return den.masked_fill_(zero, 0.0)
