"""Planning an attribution: what is resolved once per (model, composite, canonizers, input
signature).

An :class:`AttributionPlan` holds the model that runs (the user's model or its canonized
``GraphModule``), the rule of every layer compiled from its declaration, the rules on functions
and the graph with fused layers. :class:`PlanCache` keeps the plans of one ``LRP`` object, so
that the calls after the first skip tracing and compiling.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Optional, Union

import torch
from torch import nn

from lrp_captum.core.canonizers import CanonizationError, Canonized, UntraceableModelError, canonize
from lrp_captum.core.composites import Composite, ResolvedComposite, get_composite, leaf_layers
from lrp_captum.core.engine.compiler import CompiledRule
from lrp_captum.core.engine.fused import build_fused_graph

__all__ = ["AttributionPlan", "PlanCache", "CompositeLike", "CANONIZER_CHOICES",
           "DEFAULT_COMPOSITE", "make_plan"]

CompositeLike = Union[str, Composite, None]

#: "default": canonize where torch.fx can trace the model, else warn and use the leaf
#: modules; "auto": canonize or raise; None: never canonize
CANONIZER_CHOICES = ("default", "auto", None)

#: the composite of an ``LRP`` object given none
DEFAULT_COMPOSITE = "epsilon"


@dataclass
class AttributionPlan:
    """Everything resolved once per (model, composite, canonizers, input signature)."""
    model: nn.Module  # what runs: the user's model or its canonized GraphModule
    rules: list  # [(module, CompiledRule or None)]
    resolved: ResolvedComposite
    canonized: Optional[Canonized]
    #: the user's model (whose parameters a call freezes with those of ``model``)
    source: Optional[nn.Module] = None
    #: the canonized model with layers running as fused autograd functions
    fused_model: Optional[nn.Module] = None
    #: modules that run fused
    fused_modules: frozenset = frozenset()
    #: ReLU modules of which a call was folded into a fused layer
    folded_modules: frozenset = frozenset()
    #: the conservation warning was given for this plan
    warned: bool = False
    #: ``{family: CompiledRule}``: rules on the functions called in forward (transformers)
    op_rules: dict = field(default_factory=dict)


class PlanCache:
    """The plans of one ``LRP`` / ``LayerLRP`` object.

    A plan is keyed by the composite (its registered name, or the :class:`Composite` object
    itself), the canonizers and the signature of the arguments (shapes without the batch
    dimension, dtypes, and the values that are not tensors: the trace is specialised on them).
    """

    def __init__(self) -> None:
        self._plans: dict = {}

    def plan(self, model: nn.Module, composite: CompositeLike, canonizers: Optional[str],
             fused: bool, arguments: tuple) -> AttributionPlan:
        """The plan for ``model(*arguments)`` (inputs, then additional forward arguments)."""
        composite = DEFAULT_COMPOSITE if composite is None else composite
        key = (composite, canonizers, fused, tuple(_argument_key(a) for a in arguments))
        if key not in self._plans:
            self._plans[key] = make_plan(model, get_composite(composite), canonizers, fused,
                                         arguments)
        return self._plans[key]

    def clear(self) -> None:
        self._plans.clear()


def make_plan(model: nn.Module, composite: Composite, canonizers: Optional[str], fused: bool,
              arguments: tuple) -> AttributionPlan:
    """Canonize ``model`` (per ``canonizers``), resolve and compile the composite's rules, and
    build the fused graph (if ``fused``) for calls ``model(*arguments)``."""
    canonized = None
    if canonizers in ("auto", "default"):
        canonized = _canonize(model, composite, arguments, strict=canonizers == "auto")
    if canonized is not None:
        layers = canonized.layers()
        run_model = canonized.module
    else:
        layers = leaf_layers(model)
        run_model = model
    resolved = composite.resolve_layers(layers, carried_rules=_carried_rules(canonized))
    modules = {name: module for name, module in layers}
    rules = [(modules[name], None if rule is None else CompiledRule(rule))
             for name, rule in resolved.items()]
    plan = AttributionPlan(run_model, rules, resolved, canonized, source=model,
                           op_rules={f: CompiledRule(r) for f, r in composite.op_rules().items()})
    if canonized is not None and fused:
        fused_model, fused_modules, folded = build_fused_graph(
            canonized.module, {m: c for m, c in rules if c is not None})
        plan.fused_model, plan.fused_modules = fused_model, frozenset(fused_modules)
        plan.folded_modules = frozenset(folded)
    return plan


def _canonize(model: nn.Module, composite: Composite, arguments: tuple,
              strict: bool) -> Optional[Canonized]:
    """The canonized model; with ``strict=False`` None (and a warning) where torch.fx
    cannot trace the model: the rules then go on the leaf modules."""
    leaf_types = tuple(sel for sel, _ in composite.rules if isinstance(sel, type)) + tuple(
        t for sel, _ in composite.rules if isinstance(sel, tuple) for t in sel
        if isinstance(t, type))
    example = tuple(t.detach() if torch.is_tensor(t) else t for t in arguments)
    try:
        families = set(composite.op_rules())
        if {"softmax", "matmul"} <= families:
            families.add("attention")  # covered by the softmax and product rules
        return canonize(model, example, extra_leaf_types=leaf_types,
                        op_families=tuple(families))
    except CanonizationError as exc:
        if strict:
            raise
        if composite.op_rules():
            # rules on functions cover what canonization would rewrite, and check every
            # function call at run time (Swin's fx-wrapped window attention, for example)
            return None
        if not isinstance(exc, UntraceableModelError):
            raise
        warnings.warn(
            f"torch.fx could not trace {exc.where} ({exc.reason}): the rules are attached "
            f"to the leaf modules of {type(model).__name__} instead (as with "
            "canonizers=None). Not rewritten then: functional ops and in-place activations "
            "in forward() (torch.relu, F.silu, x.sigmoid(), ...), residual sums 'a + b' and "
            "products, BatchNorm after a convolution (not merged). Check the relevance "
            "sums; pass canonizers='auto' to make this an error, canonizers=None to "
            "silence it.", UserWarning, stacklevel=6)
        return None


def _carried_rules(canonized: Optional[Canonized]) -> dict:
    """``{substitute: (rule, note)}``: a ``module.rule`` the user set on a module that
    canonization replaced (a conv merged with its BatchNorm, an in-place activation's copy)
    goes with it. The linear layer's rule wins over its BatchNorm's."""
    if canonized is None:
        return {}
    carried: dict = {}
    for original, substitute in canonized.replaced.items():
        rule = getattr(original, "rule", None)
        if rule is None or substitute is original:
            continue
        name = canonized.layer_names.get(original, type(original).__name__)
        is_linear = getattr(substitute, "linear", None) is original
        if substitute not in carried or is_linear:
            carried[substitute] = (rule, f"module.rule of '{name}'")
    return carried


def _argument_key(arg) -> tuple:
    if torch.is_tensor(arg):
        return ("tensor", tuple(arg.shape[1:]), arg.dtype)
    try:
        hash(arg)
        return ("value", type(arg).__name__, arg)
    except TypeError:
        return ("value", type(arg).__name__, id(arg))
