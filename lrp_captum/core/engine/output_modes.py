"""The relevance an explanation starts from: the target logit, its probability, a contrastive
score, or a tensor given by the user."""
from __future__ import annotations

import torch
from captum._utils.common import _select_targets
from torch import Tensor

from lrp_captum.core.engine.numerics import stabilize

__all__ = ["OUTPUT_MODES", "initial_relevance", "check_target"]

OUTPUT_MODES = ("logit", "probability", "contrastive")


def check_target(target, z: Tensor) -> None:
    """A clear error for class indices outside the model's output (Captum raises IndexError)."""
    if target is None or z.dim() < 2:
        return
    flat = target.flatten().tolist() if torch.is_tensor(target) else (
        [target] if isinstance(target, int) else [t for t in target if isinstance(t, int)])
    n = z.shape[1]
    bad = [t for t in flat if isinstance(t, int) and not -n <= t < n]
    if bad:
        raise ValueError(f"target {bad[0]} is out of range: the model has {n} outputs per "
                         f"example (output shape {tuple(z.shape)})")


def initial_relevance(out: Tensor, target, mode) -> tuple[Tensor, Tensor]:
    """Gradient to start from (relevance per unit of output) and the total output relevance.

    Parameters
    ----------
    out : Tensor
        Model output, ``(N, C)`` (or ``(N, ...)``).
    target : int, tuple, list or Tensor, optional
        As in Captum.
    mode : {"logit", "probability", "contrastive"} or Tensor
        See :meth:`lrp_captum.LRP.attribute`.

    Returns
    -------
    (Tensor, Tensor)
        ``c`` shaped like ``out`` and the relevance that enters the model, ``(N,)``.
    """
    if torch.is_tensor(mode):
        if mode.shape != out.shape:
            raise ValueError(f"initial relevance has shape {tuple(mode.shape)}, the model "
                             f"output {tuple(out.shape)}")
        rel = mode.to(out)
        z = out.detach()
        return rel / stabilize(z, 1e-12), rel.flatten(1).sum(1)
    if mode not in OUTPUT_MODES:
        raise ValueError(f"output_mode must be one of {OUTPUT_MODES} or a tensor, got {mode!r}")
    z = out.detach()
    if target is None and z.dim() > 1 and z.shape[1] > 1:
        raise ValueError("target is required for a model with several outputs per example")
    check_target(target, z)
    selector = torch.zeros_like(z, requires_grad=True)
    with torch.enable_grad():
        picked = _select_targets(selector + z, target)
        (onehot,) = torch.autograd.grad(picked.sum(), selector)
    z_t = (z * onehot).flatten(1).sum(1)
    if mode == "logit":
        return onehot, z_t
    if z.dim() != 2:
        raise ValueError(f"output_mode={mode!r} needs scores of shape (N, classes)")
    if mode == "probability":
        p_t = (torch.softmax(z, dim=1) * onehot).sum(1)
        c = onehot * (p_t / stabilize(z_t, 1e-12)).unsqueeze(1)
        return c, p_t
    # contrastive (seed 000, slides 31-33): R_{c,c'} = z_{c,c'} · softmin_{c'≠c}(z_{c,c'})
    margins = z_t.unsqueeze(1) - z  # z_c - z_c'
    others = onehot == 0
    weights = torch.softmax(torch.where(others, -margins, torch.full_like(z, -torch.inf)), 1)
    c = onehot - weights  # ∂/∂z of Σ_c' β_c' (z_c - z_c') with β held fixed
    total = (weights * margins).sum(1)
    return c, total
