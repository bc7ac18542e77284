"""The conservation diagnosis: does the relevance add up to the explained output?

LRP redistributes the explained output over the inputs; biases and stabilisers absorb a little.
When the sum is off by orders of magnitude (or not finite), something in the model or the
composite loses or multiplies relevance, and the user is told what is likely: read from the
table of kinds (:mod:`lrp_captum.core.engine.declaration_kinds`), never from rule classes.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor

from lrp_captum.core import layer_types as types
from lrp_captum.core.engine.planning import AttributionPlan

__all__ = ["CONSERVATION_FACTOR", "check_conservation", "likely_causes"]

#: relevance sums further than this factor from the explained output are reported
CONSERVATION_FACTOR = 100.0

_ELEMENTWISE = types.Activation + types.Identity + types.BatchNorm


def _elementwise(module) -> bool:
    """A layer of an elementwise type, or an activation module written in a library, known by
    its class name as the composites know it (Hugging Face's ``GELUActivation``)."""
    return isinstance(module, _ELEMENTWISE) or type(module).__name__.endswith("Activation")


def check_conservation(plan: AttributionPlan, summed: Tensor, total: Tensor, out: Tensor) -> None:
    """Warn (once per plan) when ``Σ relevance`` and the explained output ``total`` (both
    ``(N,)``) differ by orders of magnitude or are not finite, naming the likely causes.

    An output near 0 is measured against 1 % of the example's largest output ``out`` (a
    logit of 0.001 among logits of size 1 may well have relevances summing to 0.05). Relevance
    that is not finite is reported for any example; relevance far from the output only when
    most examples show it. A single example can be far off for good reasons: an output that is
    its bias (a blank tile, a flat epoch) rightly gives its input almost no relevance, and
    under γ or αβ an output near 0 from evidence that cancels has relevance far above it. A rule
    or an op that loses or multiplies relevance does so on most examples.
    """
    if plan.warned or not torch.is_tensor(summed):
        return
    summed, total = summed.detach().double(), total.detach().double()
    scale = out.detach().double().flatten(1).abs().amax(1) if out.dim() > 1 else \
        out.detach().double().abs()
    reference = torch.maximum(total.abs(), 0.01 * scale)
    far = (summed.abs() > CONSERVATION_FACTOR * reference) | \
        (total.abs() > CONSERVATION_FACTOR * summed.abs()) & (total.abs() >= 0.01 * scale)
    off = ~torch.isfinite(summed)
    if 2 * int(far.sum()) > far.numel():
        off |= far
    if not bool(off.any()):
        return
    plan.warned = True
    i = int(torch.nonzero(off)[0, 0])
    warnings.warn(
        f"relevance does not add up to the explained output: example {i} has Σ relevance "
        f"{float(summed[i]):.4g} for an output of {float(total[i]):.4g}. Likely causes: "
        + "; ".join(likely_causes(plan)) + ". See the layer → rule table (rule_table(inputs)).",
        UserWarning, stacklevel=4)


def likely_causes(plan: AttributionPlan) -> list[str]:
    """What in ``plan`` can make relevance not add up, most specific first."""
    rows = list(zip(plan.resolved.rows, plan.rules))
    suspects = {
        "layers that are not elementwise but pass relevance unchanged": [
            name for (name, module, *_), (_, compiled) in rows if compiled is not None
            and compiled.kind.passes_unchanged and not _elementwise(module)],
        "layers whose rule is user code": [
            name for (name, *_), (_, compiled) in rows
            if compiled is not None and compiled.declaration is None],
        "layers whose rule does not conserve relevance by design": [
            name for (name, *_), (_, compiled) in rows
            if compiled is not None and compiled.kind.nonconservative]}
    causes = [f"{what}: " + ", ".join(f"'{n}'" for n in names[:6])
              + (f" and {len(names) - 6} more" if len(names) > 6 else "")
              for what, names in suspects.items() if names]
    if plan.canonized is None:
        causes.append("ops in forward() that no rule sees (without canonizers, functional "
                      "calls such as torch.softmax, matmul, layer_norm or '+' between "
                      "branches get the plain gradient)")
    for family, compiled in plan.op_rules.items():
        if compiled.kind.nonconservative:
            causes.append(f"the rule of the {family} functions, {compiled.rule!r}: "
                          f"{compiled.kind.nonconservative}")
    causes.append("biases and stabilisers, which absorb relevance")
    return causes
