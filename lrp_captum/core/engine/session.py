"""Planning and running one attribution call: the machinery behind ``LRP`` and ``LayerLRP``.

The engine propagates relevance *per unit of value*, ``c = R / a``, as the gradient: LRP-0 on a
ReLU network is then exactly the gradient, and every other rule is a local change of the
backward pass of one layer (:class:`lrp_captum.core.engine.compiler.CompiledRule`). Relevance is
``input × c`` at the end. This keeps LRP within a small factor of a plain gradient.

A *plan* is made once per (model, composite, canonizers, input signature): the canonized model,
the rule of every layer compiled from its declaration, and the graph with fused layers. During
a call the model runs with temporary forward hooks and frozen parameters; all of that is undone
in a ``finally`` block, so the model comes back exactly as it was, also after an error.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
from captum._utils.common import _format_additional_forward_args
from torch import Tensor, nn

from lrp_captum.core.canonizers import CanonizationError, Canonized, UntraceableModelError, canonize
from lrp_captum.core.composites import Composite, ResolvedComposite, get_composite, leaf_layers
from lrp_captum.core import layer_types as types
from lrp_captum.core.engine.compiler import CompiledRule
from lrp_captum.core.engine.fused import build_fused_graph
from lrp_captum.core.engine.output_modes import initial_relevance
from lrp_captum.core.model_mode import evaluation_mode

__all__ = ["Plan", "LRPEngine", "CompositeLike", "with_paths", "check_conservation"]

CompositeLike = Union[str, Composite, None]
_ELEMENTWISE = types.Activation + types.Identity + types.BatchNorm

#: "default": canonize where torch.fx can trace the model, else warn and use the leaf
#: modules; "auto": canonize or raise; None: never canonize
CANONIZER_CHOICES = ("default", "auto", None)


@dataclass
class Plan:
    """Everything resolved once per (model, composite, canonizers, input signature)."""
    model: nn.Module  # what runs: the user's model or its canonized GraphModule
    rules: list  # [(module, CompiledRule or None)]
    resolved: ResolvedComposite
    canonized: Optional[Canonized]
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


class LRPEngine:
    """Shared machinery of :class:`LRP` and :class:`LayerLRP`."""

    model: nn.Module

    def _init_engine(self, composite: CompositeLike, canonizers: Optional[str],
                     fused: bool = True) -> None:
        if canonizers not in CANONIZER_CHOICES + (False,):
            raise ValueError(f"canonizers must be 'default', 'auto' or None, got {canonizers!r}")
        self.composite = composite
        self.canonizers = canonizers or None
        self.fused = bool(fused)
        self._plans: dict = {}

    # -- planning ------------------------------------------------------------------------------
    def _composite(self, composite: CompositeLike) -> Composite:
        composite = self.composite if composite is None else composite
        if composite is None:
            composite = "epsilon"
        return get_composite(composite)

    def _plan(self, inputs: tuple, extra_args: tuple, composite: CompositeLike,
              canonizers) -> Plan:
        canonizers = self.canonizers if canonizers is None else (canonizers or None)
        comp = self._composite(composite)
        # the trace is specialised on the arguments that are not tensors (None, flags): so
        # is the plan
        key = (id(comp) if not isinstance(composite or self.composite, str)
               else (composite or self.composite), canonizers,
               tuple(_argument_key(a) for a in tuple(inputs) + tuple(extra_args)))
        if key in self._plans:
            return self._plans[key]
        canonized = None
        if canonizers in ("auto", "default"):
            canonized = self._canonize(comp, inputs, extra_args, strict=canonizers == "auto")
        if canonized is not None:
            layers = canonized.layers()
            run_model = canonized.module
        else:
            layers = leaf_layers(self.model)
            run_model = self.model
        resolved = comp.resolve_layers(layers, carried_rules=_carried_rules(canonized))
        modules = {name: module for name, module in layers}
        rules = [(modules[name], None if rule is None else CompiledRule(rule))
                 for name, rule in resolved.items()]
        plan = Plan(run_model, rules, resolved, canonized,
                    op_rules={f: CompiledRule(r) for f, r in comp.op_rules().items()})
        if canonized is not None and self.fused:
            fused_model, fused_modules, folded = build_fused_graph(
                canonized.module, {m: c for m, c in rules if c is not None})
            plan.fused_model, plan.fused_modules = fused_model, frozenset(fused_modules)
            plan.folded_modules = frozenset(folded)
        self._plans[key] = plan
        return plan

    def _canonize(self, comp: Composite, inputs: tuple, extra_args: tuple,
                  strict: bool) -> Optional[Canonized]:
        """The canonized model; with ``strict=False`` None (and a warning) where torch.fx
        cannot trace the model: the rules then go on the leaf modules."""
        leaf_types = tuple(sel for sel, _ in comp.rules if isinstance(sel, type)) + tuple(
            t for sel, _ in comp.rules if isinstance(sel, tuple) for t in sel
            if isinstance(t, type))
        example = tuple(t.detach() if torch.is_tensor(t) else t for t in inputs) + \
            tuple(extra_args)
        try:
            families = set(comp.op_rules())
            if {"softmax", "matmul"} <= families:
                families.add("attention")  # covered by the softmax and product rules
            return canonize(self.model, example, extra_leaf_types=leaf_types,
                            op_families=tuple(families))
        except CanonizationError as exc:
            if strict:
                raise
            if comp.op_rules():
                # rules on functions cover what canonization would rewrite, and check every
                # function call at run time (Swin's fx-wrapped window attention, for example)
                return None
            if not isinstance(exc, UntraceableModelError):
                raise
            warnings.warn(
                f"torch.fx could not trace {exc.where} ({exc.reason}): the rules are attached "
                f"to the leaf modules of {type(self.model).__name__} instead (as with "
                "canonizers=None). Not rewritten then: functional ops and in-place activations "
                "in forward() (torch.relu, F.silu, x.sigmoid(), ...), residual sums 'a + b' and "
                "products, BatchNorm after a convolution (not merged). Check the relevance "
                "sums; pass canonizers='auto' to make this an error, canonizers=None to "
                "silence it.", UserWarning, stacklevel=4)
            return None

    def rule_table(self, inputs, composite: CompositeLike = None,
                   additional_forward_args: Any = None) -> ResolvedComposite:
        """The layer → rule table that :meth:`attribute` would use for these inputs."""
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        extra = tuple(_format_additional_forward_args(additional_forward_args) or ())
        with evaluation_mode(self.model, warn=False):
            plan, fused = self._call_plan(inputs, extra, composite, None)
        return with_paths(plan, fused)

    def _call_plan(self, inputs: tuple, extra: tuple, composite, canonizers) -> tuple:
        """The plan a call runs, and whether it runs the fused graph."""
        plan = self._plan(inputs, extra, composite, canonizers)
        return plan, plan.fused_model is not None

    def reset(self) -> None:
        """Forget cached plans (call after changing the model's structure)."""
        self._plans.clear()

    # -- one call ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self, plan: Plan, probes: Sequence[tuple[nn.Module, bool]] = (),
                 fused: frozenset = frozenset()):
        """Hooks, frozen parameters and non-in-place modules for one attribution call.

        Modules in ``fused`` run through :class:`lrp_captum.core.engine.fused.FusedLayer` and get no
        hook.
        """
        handles, frozen, inplace, sinks = [], [], [], []
        stash: list = []
        captured: dict = {}
        try:
            for p in list(plan.model.parameters()) + list(self.model.parameters()):
                if p.requires_grad:
                    frozen.append(p)
                    p.requires_grad_(False)
            if plan.canonized is None:
                for m in plan.model.modules():
                    if getattr(m, "inplace", False) is True:
                        m.inplace = False
                        inplace.append(m)
            # with rules on functions, calls inside a module that has a rule are left to it
            depth = [0] if plan.op_rules else None
            for module, compiled in plan.rules:
                if compiled is None or compiled.covered_by_functions:
                    continue
                if compiled.direct:
                    compiled.sink = lambda xs, rs: stash.append((xs, rs))
                    sinks.append(compiled)
                if module not in fused:
                    if depth is not None:
                        handles.append(module.register_forward_pre_hook(_enter(depth)))
                    handles.append(module.register_forward_hook(_rule_hook(compiled, depth)))
            op_mode = None
            if depth is not None:
                op_mode, more = _op_mode(plan, depth, fused)
                handles.extend(more)
            for k, (module, to_input) in enumerate(probes):
                handles.extend(_register_probe(module, to_input, k, captured))
            yield stash, captured, op_mode
        finally:
            for h in handles:
                h.remove()
            for p in frozen:
                p.requires_grad_(True)
            for m in inplace:
                m.inplace = True
            for compiled in sinks:
                compiled.sink = None

    def _run(self, inputs: tuple, target, extra_args: tuple, plan: Plan, fused: bool,
             output_mode, probes=(), grad_wrt_inputs: bool = True):
        """One attribution call on ``plan`` (its fused graph if ``fused``)."""
        model = plan.fused_model if fused else plan.model
        with self._session(plan, probes, plan.fused_modules if fused else frozenset()) as (
                stash, captured, op_mode):
            with torch.enable_grad():
                xs = tuple(t.detach().requires_grad_() if torch.is_tensor(t)
                           and t.is_floating_point() and grad_wrt_inputs else t
                           for t in inputs)
                with op_mode if op_mode is not None else contextlib.nullcontext():
                    out = scores(model(*xs, *extra_args))
                init, total = initial_relevance(out, target, output_mode)
                wrt = [x for x in xs if torch.is_tensor(x) and x.requires_grad]
                probe_tensors = [t for k in sorted(captured) for t in captured[k]["tensors"]]
                grads = torch.autograd.grad(out, wrt + probe_tensors, grad_outputs=init,
                                            allow_unused=True)
            input_grads = dict(zip(map(id, wrt), grads[:len(wrt)]))
            probe_grads = grads[len(wrt):]
            relevances = []
            for x in xs:
                if id(x) not in input_grads:
                    relevances.append(None)
                    continue
                g = input_grads[id(x)]
                r = torch.zeros_like(x) if g is None else x.detach() * g
                for saved, rel in stash:  # input-layer rules: exact relevance where x == 0
                    for s, rr in zip(saved, rel):
                        if s.data_ptr() == x.data_ptr() and s.shape == x.shape:
                            r = torch.where(x.detach() == 0, rr, r)
                relevances.append(r.detach())
            layer_rel = []
            offset = 0
            for k in sorted(captured):
                tensors = captured[k]["tensors"]
                gs = probe_grads[offset:offset + len(tensors)]
                offset += len(tensors)
                layer_rel.append(tuple((t.detach() * (g if g is not None else 0)).detach()
                                       for t, g in zip(tensors, gs)))
        return relevances, layer_rel, total.detach(), out.detach()


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


#: relevance sums further than this factor from the explained output are reported
CONSERVATION_FACTOR = 100.0


def check_conservation(plan: Plan, summed: Tensor, total: Tensor, out: Tensor) -> None:
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
    suspects = {
        "layers that are not elementwise but pass relevance unchanged": [
            name for name, module, rule, _ in plan.resolved.rows if type(rule).__name__ ==
            "PassRule" and not isinstance(module, _ELEMENTWISE)],
        "layers whose rule is user code": [
            name for (name, *_), (_, compiled) in zip(plan.resolved.rows, plan.rules)
            if compiled is not None and compiled.declaration is None]}
    causes = [f"{what}: " + ", ".join(f"'{n}'" for n in names[:6])
              + (f" and {len(names) - 6} more" if len(names) > 6 else "")
              for what, names in suspects.items() if names]
    if plan.canonized is None:
        causes.append("ops in forward() that no rule sees (without canonizers, functional "
                      "calls such as torch.softmax, matmul, layer_norm or '+' between "
                      "branches get the plain gradient)")
    if type(getattr(plan.op_rules.get("softmax"), "declaration", None)).__name__ == "Gradient":
        causes.append("the softmax's Taylor rule (AttnLRP), which does not conserve relevance "
                      "by design (CP-LRP does)")
    causes.append("biases and stabilisers, which absorb relevance")
    warnings.warn(
        f"relevance does not add up to the explained output: example {i} has Σ relevance "
        f"{float(summed[i]):.4g} for an output of {float(total[i]):.4g}. Likely causes: "
        + "; ".join(causes) + ". See the layer → rule table (rule_table(inputs)).",
        UserWarning, stacklevel=4)


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


def _argument_key(arg) -> tuple:
    if torch.is_tensor(arg):
        return ("tensor", tuple(arg.shape[1:]), arg.dtype)
    try:
        hash(arg)
        return ("value", type(arg).__name__, arg)
    except TypeError:
        return ("value", type(arg).__name__, id(arg))


def with_paths(plan: Plan, fused: bool) -> ResolvedComposite:
    """The plan's layer → rule table with how each layer runs."""
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


def _op_mode(plan: Plan, depth: list, fused: frozenset) -> tuple:
    """The mode applying the plan's rules on functions, and the hooks it needs: fused layers
    count as modules with a rule; containers say where a function was called from."""
    from lrp_captum.core.engine.functional import OpRules
    handles, stack = [], []

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

    return OpRules(plan.op_rules, depth, where), handles


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
