"""Running one attribution call on a plan.

The engine propagates relevance *per unit of value*, ``c = R / a``, as the gradient: LRP-0 on a
ReLU network is then exactly the gradient, and every other rule is a local change of the
backward pass of one layer (:class:`lrp_captum.core.engine.compiler.CompiledRule`). A call runs
the plan's model (or its fused graph) in a session (:mod:`lrp_captum.core.engine.session`),
takes the gradient of the explained output, and returns ``input × c``. This keeps LRP within a
small factor of a plain gradient.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from lrp_captum.core.engine.output_modes import initial_relevance
from lrp_captum.core.engine.planning import AttributionPlan
from lrp_captum.core.engine.scores import scores
from lrp_captum.core.engine.session import call_session

__all__ = ["AttributionCall", "CallResult", "run_call"]


@dataclass(frozen=True)
class AttributionCall:
    """The arguments of one call.

    Attributes
    ----------
    inputs : tuple
        The model's inputs, ``(N, ...)`` each.
    target : int, tuple, list, Tensor or None
        The explained output per example, as in Captum.
    extra_args : tuple
        Further arguments of ``model(*inputs, *extra_args)``.
    output_mode : str or Tensor
        The relevance to start from (:mod:`lrp_captum.core.engine.output_modes`).
    probes : sequence of (module, bool)
        Layers whose output (True: input) relevance is returned (``LayerLRP``).
    grad_wrt_inputs : bool
        Return the relevance of the inputs (False where only the probes are wanted, and the
        inputs may be token ids).
    """
    inputs: tuple
    target: Any = None
    extra_args: tuple = ()
    output_mode: Union[str, Tensor] = "logit"
    probes: Sequence[tuple[nn.Module, bool]] = ()
    grad_wrt_inputs: bool = True


@dataclass
class CallResult:
    """What one call gives back (all detached).

    Attributes
    ----------
    relevances : list
        Per input: its relevance, shaped like it, or None for an input without gradient.
    layer_relevances : list
        Per probe: a tuple of the relevances of the tensors at the probed layer.
    total : Tensor
        ``(N,)``: the explained output (the sum of the initial relevance).
    out : Tensor
        The model's scores.
    """
    relevances: list
    layer_relevances: list
    total: Tensor
    out: Tensor


def run_call(plan: AttributionPlan, call: AttributionCall, fused: bool) -> CallResult:
    """One attribution call on ``plan`` (its fused graph if ``fused``)."""
    model = plan.fused_model if fused else plan.model
    with call_session(plan, call.probes,
                      plan.fused_modules if fused else frozenset()) as session:
        with torch.enable_grad():
            xs = tuple(t.detach().requires_grad_() if torch.is_tensor(t)
                       and t.is_floating_point() and call.grad_wrt_inputs else t
                       for t in call.inputs)
            with session.op_mode if session.op_mode is not None else contextlib.nullcontext():
                out = scores(model(*xs, *call.extra_args))
            init, total = initial_relevance(out, call.target, call.output_mode)
            wrt = [x for x in xs if torch.is_tensor(x) and x.requires_grad]
            captured = session.captured
            probe_tensors = [t for k in sorted(captured) for t in captured[k]["tensors"]]
            grads = torch.autograd.grad(out, wrt + probe_tensors, grad_outputs=init,
                                        allow_unused=True)
        input_grads = dict(zip(map(id, wrt), grads[:len(wrt)]))
        relevances = [_input_relevance(x, input_grads, session.stash) for x in xs]
        layer_relevances = _probe_relevances(captured, grads[len(wrt):])
    return CallResult(relevances, layer_relevances, total.detach(), out.detach())


def _input_relevance(x, input_grads: dict, stash: list) -> Optional[Tensor]:
    """``x × c``; where ``x == 0`` the relevance the input-layer rules gave exactly."""
    if id(x) not in input_grads:
        return None
    g = input_grads[id(x)]
    r = torch.zeros_like(x) if g is None else x.detach() * g
    for saved, rel in stash:
        for s, rr in zip(saved, rel):
            if s.data_ptr() == x.data_ptr() and s.shape == x.shape:
                r = torch.where(x.detach() == 0, rr, r)
    return r.detach()


def _probe_relevances(captured: dict, probe_grads: Sequence) -> list:
    """Per probe, ``tensor × gradient`` of each tensor it captured."""
    layer_rel = []
    offset = 0
    for k in sorted(captured):
        tensors = captured[k]["tensors"]
        gs = probe_grads[offset:offset + len(tensors)]
        offset += len(tensors)
        layer_rel.append(tuple((t.detach() * (g if g is not None else 0)).detach()
                               for t, g in zip(tensors, gs)))
    return layer_rel
