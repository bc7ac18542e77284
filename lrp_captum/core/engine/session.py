"""The session of one attribution call: what is set up on the model for the call, and undone.

During a call the model runs with temporary forward hooks (the rules of layers that do not run
fused), with its parameters frozen, with in-place activations switched off where the rules go
on the leaf modules, with probes on the layers ``LayerLRP`` attributes to, and, where the
composite has rules on functions, with the mode that applies them
(:class:`~lrp_captum.core.engine.functional.OpRules`). All of it is undone in a ``finally``
block, so the model comes back exactly as it was, also after an error.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from lrp_captum.core.engine.compiler import CompiledRule
from lrp_captum.core.engine.functional import OpRules
from lrp_captum.core.engine.planning import AttributionPlan

__all__ = ["Session", "call_session"]


@dataclass
class Session:
    """What a call collects while it runs.

    Attributes
    ----------
    stash : list
        ``(inputs, relevances)`` of the rules whose relevance does not scale with the input
        (``CompiledRule.direct``), as their backward passes produce them.
    captured : dict
        ``{probe index: {"tensors": [...]}}``: the tensors at the probed layers.
    op_mode : OpRules or None
        The mode applying the rules on functions, to enter around the forward pass.
    """
    stash: list = field(default_factory=list)
    captured: dict = field(default_factory=dict)
    op_mode: Optional[OpRules] = None


@contextlib.contextmanager
def call_session(plan: AttributionPlan, probes: Sequence[tuple[nn.Module, bool]] = (),
                 fused: frozenset = frozenset()):
    """Hooks, frozen parameters and non-in-place modules for one attribution call.

    Parameters
    ----------
    plan : AttributionPlan
    probes : sequence of (module, bool)
        Layers whose output (or, with True, input) relevance the call returns.
    fused : frozenset
        Modules that run through :class:`lrp_captum.core.engine.fused.FusedLayer`: they get
        no hook.

    Yields
    ------
    Session
    """
    session = Session()
    with contextlib.ExitStack() as undo:  # undoes everything below, also after an error
        _freeze_parameters(plan, undo)
        if plan.canonized is None:
            _switch_off_inplace(plan.model, undo)
        handles: list = []
        undo.callback(_remove_hooks, handles)
        # with rules on functions, calls inside a module that has a rule are left to it
        depth = [0] if plan.op_rules else None
        for module, compiled in plan.rules:
            if compiled is None or compiled.covered_by_functions:
                continue
            if compiled.direct:
                compiled.sink = lambda xs, rs: session.stash.append((xs, rs))
                undo.callback(setattr, compiled, "sink", None)
            if module not in fused:
                if depth is not None:
                    handles.append(module.register_forward_pre_hook(_enter(depth)))
                handles.append(module.register_forward_hook(_rule_hook(compiled, depth)))
        if depth is not None:
            session.op_mode = _op_mode(plan, depth, fused, handles)
        for k, (module, to_input) in enumerate(probes):
            handles.extend(_register_probe(module, to_input, k, session.captured))
        yield session


def _freeze_parameters(plan: AttributionPlan, undo: contextlib.ExitStack) -> None:
    """The parameters of the model that runs and of the user's model stop requiring grad."""
    frozen: list = []
    undo.callback(_set_each, frozen, "requires_grad", True)
    source = [] if plan.source is None else list(plan.source.parameters())
    for p in list(plan.model.parameters()) + source:
        if p.requires_grad:
            p.requires_grad_(False)
            frozen.append(p)


def _switch_off_inplace(model: nn.Module, undo: contextlib.ExitStack) -> None:
    """In-place activations would overwrite the outputs the rules' hooks replace."""
    switched: list = []
    undo.callback(_set_each, switched, "inplace", True)
    for m in model.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False
            switched.append(m)


def _set_each(objects: list, attribute: str, value) -> None:
    for obj in objects:
        setattr(obj, attribute, value)


def _remove_hooks(handles: list) -> None:
    for h in handles:
        h.remove()


def _rule_hook(compiled: CompiledRule, depth: Optional[list] = None) -> Callable:
    def hook(module, inputs, output):
        try:
            if not torch.is_grad_enabled() or not torch.is_tensor(output) or \
                    not output.requires_grad:
                return None
            return compiled.hook_output(module, tuple(inputs), output)
        finally:
            if depth is not None:
                depth[0] -= 1
    return hook


def _enter(depth: list) -> Callable:
    def pre_hook(module, args):
        depth[0] += 1
    return pre_hook


def _op_mode(plan: AttributionPlan, depth: list, fused: frozenset, handles: list) -> OpRules:
    """The mode applying the plan's rules on functions; the hooks it needs go to ``handles``:
    fused layers count as modules with a rule, containers say where a function was called
    from."""
    stack: list = []

    def leave(module, args, output) -> None:  # (a forward hook's return would replace output)
        depth[0] -= 1

    def pop(module, args, output) -> None:
        if stack:
            stack.pop()

    if fused and plan.fused_model is not None:
        for m in plan.fused_model.modules():
            if hasattr(m, "compiled") and hasattr(m, "relu"):
                handles.append(m.register_forward_pre_hook(_enter(depth)))
                handles.append(m.register_forward_hook(leave))
    for name, module in plan.model.named_modules():
        if next(module.children(), None) is not None:
            handles.append(module.register_forward_pre_hook(
                lambda m, a, _n=name: stack.append(_n)))
            handles.append(module.register_forward_hook(pop))

    def where() -> str:
        label = stack[-1] if stack else ""
        return f"module '{label}'" if label else f"the forward of {type(plan.model).__name__}"

    return OpRules(plan.op_rules, depth, where)


class _Probe(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        return g


def _register_probe(module: nn.Module, to_input: bool, key: int, captured: dict) -> list:
    captured[key] = {"tensors": []}

    def wrap(t):
        if not (torch.is_tensor(t) and t.is_floating_point()):
            return t
        t = t if t.requires_grad else t.detach().requires_grad_()
        p = _Probe.apply(t)
        captured[key]["tensors"].append(p)
        return p

    if to_input:
        def pre_hook(mod, args):
            return tuple(wrap(a) for a in args)
        return [module.register_forward_pre_hook(pre_hook)]

    def hook(mod, args, output):
        if isinstance(output, tuple):
            return tuple(wrap(o) for o in output)
        return wrap(output)
    # runs after the rule hook (registered earlier), so it sees the rule's output
    return [module.register_forward_hook(hook)]
