"""The layer → rule table of a plan, with how each layer runs (``LRP.rule_table``,
``attribute(..., verbose=True)``)."""
from __future__ import annotations

from lrp_captum.core.composites import ResolvedComposite
from lrp_captum.core.engine.planning import AttributionPlan

__all__ = ["rule_table"]


def rule_table(plan: AttributionPlan, fused: bool) -> ResolvedComposite:
    """The plan's layer → rule table with the path each layer runs on (in a call on the fused
    graph if ``fused``): ``"fused"``, ``"fused, ReLU folded in"``, ``"folded into the layer
    before"`` or ``"hooks"``."""
    relu = {}
    if fused:
        for m in plan.fused_model.modules():
            if hasattr(m, "compiled") and hasattr(m, "relu"):
                relu[id(m.layer)] = relu.get(id(m.layer), False) or m.relu
    modules = {id(module): compiled for module, compiled in plan.rules}
    names = {name: module for name, module, _, _ in plan.resolved.rows}
    paths = {}
    for name, module in names.items():
        if modules.get(id(module)) is None:
            continue
        if fused and module in plan.fused_modules:
            paths[name] = "fused, ReLU folded in" if relu.get(id(module)) else "fused"
        elif fused and module in plan.folded_modules:
            paths[name] = "folded into the layer before"
        else:
            paths[name] = "hooks"
    return ResolvedComposite(plan.resolved.rows, paths)
