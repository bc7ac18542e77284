"""Drop-in ``LRP`` and ``LayerLRP`` for Captum users.

The engine propagates relevance *per unit of value*, ``c = R / a``, as the gradient: LRP-0 on a
ReLU network is then exactly the gradient, and every other rule is a local change of the
backward pass of one layer (:meth:`lrp_captum.rules.LRPRule.engine_output`). Relevance is
``input × c`` at the end. This keeps LRP within a small factor of a plain gradient.

During a call the model runs with temporary forward hooks and frozen parameters; all of that is
undone in a ``finally`` block, so the model comes back exactly as it was, also after an error.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import torch
from captum._utils.common import _format_additional_forward_args, _select_targets
from captum.attr import LayerLRP as _CaptumLayerLRP
from captum.attr import LRP as _CaptumLRP
from torch import Tensor, nn

from .canonizers import Canonized, canonize
from .composites import Composite, ResolvedComposite, get_composite, leaf_layers
from .fast import build_fast_graph
from .layers import MergedBatchNorm
from .model_mode import evaluation_mode
from .rules import LRPRule, stabilize

__all__ = ["LRP", "LayerLRP", "OUTPUT_MODES"]

OUTPUT_MODES = ("logit", "probability", "contrastive")
CompositeLike = Union[str, Composite, None]


@dataclass
class _Plan:
    """Everything resolved once per (model, composite, canonizers, input signature)."""
    model: nn.Module  # what runs: the user's model or its canonized GraphModule
    rules: list  # [(module, rule or None)]
    resolved: ResolvedComposite
    canonized: Optional[Canonized]
    #: the canonized model with layers running their rules' fused paths (lrp_captum.fast)
    fast_model: Optional[nn.Module] = None
    #: modules that run fused
    fast_modules: frozenset = frozenset()
    #: ReLU modules of which a call was folded into a fused layer
    folded_modules: frozenset = frozenset()


class _LRPEngine:
    """Shared machinery of :class:`LRP` and :class:`LayerLRP`."""

    model: nn.Module

    def _init_engine(self, composite: CompositeLike, canonizers: Optional[str],
                     fused: bool = True) -> None:
        if canonizers not in ("auto", None, False):
            raise ValueError(f"canonizers must be 'auto' or None, got {canonizers!r}")
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
              canonizers) -> _Plan:
        canonizers = self.canonizers if canonizers is None else (canonizers or None)
        comp = self._composite(composite)
        key = (id(comp) if not isinstance(composite or self.composite, str)
               else (composite or self.composite), canonizers,
               tuple((tuple(t.shape[1:]), t.dtype) for t in inputs if torch.is_tensor(t)))
        if key in self._plans:
            return self._plans[key]
        canonized = None
        if canonizers == "auto":
            leaf_types = tuple(sel for sel, _ in comp.rules if isinstance(sel, type)) + tuple(
                t for sel, _ in comp.rules if isinstance(sel, tuple) for t in sel
                if isinstance(t, type))
            example = tuple(t.detach() for t in inputs) + tuple(extra_args)
            canonized = canonize(self.model, example, extra_leaf_types=leaf_types)
            layers = canonized.layers()
            run_model = canonized.module
        else:
            layers = leaf_layers(self.model)
            run_model = self.model
        resolved = comp.resolve_layers(layers)
        modules = {name: module for name, module in layers}
        rules = [(modules[name], rule) for name, rule in resolved.items()]
        plan = _Plan(run_model, rules, resolved, canonized)
        if canonized is not None and self.fused:
            fast_model, fast_modules, folded = build_fast_graph(
                canonized.module, {m: r for m, r in rules if r is not None})
            plan.fast_model, plan.fast_modules = fast_model, frozenset(fast_modules)
            plan.folded_modules = frozenset(folded)
        self._plans[key] = plan
        return plan

    def rule_table(self, inputs, composite: CompositeLike = None,
                   additional_forward_args: Any = None) -> ResolvedComposite:
        """The layer → rule table that :meth:`attribute` would use for these inputs."""
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        extra = _format_additional_forward_args(additional_forward_args) or ()
        with evaluation_mode(self.model, warn=False):
            return self._plan(inputs, tuple(extra), composite, None).resolved

    def reset(self) -> None:
        """Forget cached plans (call after changing the model's structure)."""
        self._plans.clear()

    # -- one call ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _session(self, plan: _Plan, probes: Sequence[tuple[nn.Module, bool]] = (),
                 fused: frozenset = frozenset()):
        """Hooks, frozen parameters and non-in-place modules for one attribution call.

        Modules in ``fused`` run through :class:`lrp_captum.fast.FastLayer` and get no hook.
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
            for module, rule in plan.rules:
                if rule is None:
                    continue
                if rule.direct:
                    rule._direct_sink = lambda xs, rs: stash.append((xs, rs))
                    sinks.append(rule)
                if module not in fused:
                    handles.append(module.register_forward_hook(_rule_hook(rule)))
            for k, (module, to_input) in enumerate(probes):
                handles.extend(_register_probe(module, to_input, k, captured))
            yield stash, captured
        finally:
            for h in handles:
                h.remove()
            for p in frozen:
                p.requires_grad_(True)
            for m in inplace:
                m.inplace = True
            for rule in sinks:
                rule._direct_sink = None

    def _run(self, inputs: tuple, target, extra_args: tuple, plan: _Plan, output_mode,
             probes=(), grad_wrt_inputs: bool = True):
        # probes need the outputs of their modules: fused layers (and folded ReLUs) lack them
        fast = plan.fast_model is not None and not any(
            m in plan.fast_modules or m in plan.folded_modules for m, _ in probes)
        model = plan.fast_model if fast else plan.model
        with self._session(plan, probes, plan.fast_modules if fast else frozenset()) as (
                stash, captured):
            with torch.enable_grad():
                xs = tuple(t.detach().requires_grad_() if torch.is_tensor(t)
                           and t.is_floating_point() and grad_wrt_inputs else t
                           for t in inputs)
                out = model(*xs, *extra_args)
                if not torch.is_tensor(out):
                    raise TypeError(f"the model returned {type(out).__name__}; LRP needs a "
                                    "tensor of scores (N, classes)")
                init, total = _initial_relevance(out, target, output_mode)
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


def _rule_hook(rule: LRPRule) -> Callable:
    def hook(module, inputs, output):
        if not torch.is_grad_enabled() or not torch.is_tensor(output) or \
                not output.requires_grad:
            return None
        return rule.engine_output(module, tuple(inputs), output)
    return hook


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


def _initial_relevance(out: Tensor, target, mode) -> tuple[Tensor, Tensor]:
    """Gradient to start from (relevance per unit of output) and the total output relevance."""
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
    _check_target(target, z)
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


def _check_target(target, z: Tensor) -> None:
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


def _format_inputs(inputs) -> tuple[tuple, bool]:
    is_tuple = isinstance(inputs, tuple)
    return (inputs if is_tuple else (inputs,)), is_tuple


class LRP(_LRPEngine, _CaptumLRP):
    """Layer-wise Relevance Propagation with composites and canonizers.

    A drop-in replacement of ``captum.attr.LRP``: same ``attribute()`` signature and return
    types, plus rule selection by composite, model canonization, and output-relevance modes.

    Parameters
    ----------
    model : nn.Module
        The model, in evaluation mode. It is never modified.
    composite : str or Composite, optional
        Rules per layer, e.g. ``"epsilon_gamma_box"`` (see
        :func:`lrp_captum.composites.list_composites`). Default: ``"epsilon"``. A rule set as
        ``module.rule`` (Captum's way) takes precedence for that module.
    canonizers : "auto" or None
        ``"auto"`` (default) rewrites BatchNorm, residual sums, gates, functional and in-place
        activations (see :mod:`lrp_captum.canonizers`); None attaches rules to the leaf
        modules as they are.
    fused : bool
        With canonizers, run every layer whose rule has a fused form as one autograd function
        (with the following ReLU folded in; :mod:`lrp_captum.fast`). Default True; False runs
        every rule through hooks on the layers (the same relevances, slower; for debugging).

    Examples
    --------
    >>> lrp = LRP(model, composite="epsilon_plus_flat")
    >>> attribution = lrp.attribute(images, target=labels)  # (N, 3, H, W)
    """

    def __init__(self, model: nn.Module, composite: CompositeLike = None,
                 canonizers: Optional[str] = "auto", fused: bool = True) -> None:
        _CaptumLRP.__init__(self, model)
        self._init_engine(composite, canonizers, fused)

    def attribute(self, inputs, target=None, additional_forward_args: Any = None,
                  return_convergence_delta: bool = False, verbose: bool = False, *,
                  composite: CompositeLike = None, canonizers=None,
                  output_mode: Union[str, Tensor] = "logit"):
        r"""Relevance of every input element for the target output.

        Parameters
        ----------
        inputs : Tensor or tuple of Tensor
            ``(N, ...)`` each; floating point.
        target : int, tuple, list or Tensor, optional
            Output index per example, as in Captum (one int for all, or one per example).
        additional_forward_args : Any, optional
            Extra arguments passed to ``model(*inputs, *additional_forward_args)``.
        return_convergence_delta : bool
            Also return ``Σ output relevance − Σ input relevance`` per example, ``(N,)``.
        verbose : bool
            Print the layer → rule table.
        composite, canonizers
            Override the constructor's choices for this call.
        output_mode : {"logit", "probability", "contrastive"} or Tensor
            The relevance to start from: the target logit (Captum's choice); its softmax
            probability; the contrastive log-odds-like score of seed 000 (slides 31-33),
            ``Σ_{c'≠c} (z_c − z_{c'}) · softmin_{c'}(z_c − z_{c'})``, propagated through the
            last layer with the difference weights; or a tensor ``(N, C)`` of initial relevance.

        Returns
        -------
        Tensor or tuple of Tensor
            Relevances shaped like ``inputs`` (detached). With ``return_convergence_delta``,
            ``(relevances, delta)``.
        """
        inputs_t, is_tuple = _format_inputs(inputs)
        extra = tuple(_format_additional_forward_args(additional_forward_args) or ())
        for t in inputs_t:
            if torch.is_tensor(t) and not t.is_floating_point():
                raise TypeError(f"LRP attributes to floating-point inputs, got {t.dtype}; for "
                                "token ids use LayerLRP(model, layer=model.<embedding>)")
        with evaluation_mode(self.model):
            plan = self._plan(inputs_t, extra, composite, canonizers)
            if verbose:
                print(plan.resolved)
            relevances, _, total, _ = self._run(inputs_t, target, extra, plan, output_mode)
        result = tuple(relevances) if is_tuple else relevances[0]
        if return_convergence_delta:
            summed = sum(r.flatten(1).sum(1) for r in relevances if r is not None)
            return result, (total - summed).detach()
        return result


class LayerLRP(_LRPEngine, _CaptumLayerLRP):
    """Relevance at the output (or input) of a layer, with composites and canonizers.

    A drop-in replacement of ``captum.attr.LayerLRP``. ``layer`` may be any module of the
    model, leaf or not, or a list of modules; inputs may be integer token ids when the layer
    is (or follows) an embedding. Parameters as :class:`LRP`; the fused layers are used
    unless a requested layer is one of them (its own output is then needed).
    """

    def __init__(self, model: nn.Module, layer: Union[nn.Module, list], composite:
                 CompositeLike = None, canonizers: Optional[str] = "auto",
                 fused: bool = True) -> None:
        _CaptumLayerLRP.__init__(self, model, layer)
        self._init_engine(composite, canonizers, fused)

    def attribute(self, inputs, target=None, additional_forward_args: Any = None,
                  return_convergence_delta: bool = False, attribute_to_layer_input: bool = False,
                  verbose: bool = False, *, composite: CompositeLike = None, canonizers=None,
                  output_mode: Union[str, Tensor] = "logit"):
        """Relevance of the layer's output (or input) for the target output.

        Same parameters as :meth:`LRP.attribute`, plus ``attribute_to_layer_input``.

        Returns
        -------
        Tensor, tuple of Tensor, or list of those (one per layer when ``layer`` is a list).
        With ``return_convergence_delta``, ``(relevances, delta)``.
        """
        inputs_t, _ = _format_inputs(inputs)
        extra = tuple(_format_additional_forward_args(additional_forward_args) or ())
        layers = self.layer if isinstance(self.layer, list) else [self.layer]
        with evaluation_mode(self.model):
            plan = self._plan(inputs_t, extra, composite, canonizers)
            plan = self._plan_with_layers(plan, layers, inputs_t, extra, composite)
            if verbose:
                print(plan.resolved)
            probes = [(self._exec_module(plan, layer), attribute_to_layer_input)
                      for layer in layers]
            _, layer_rel, total, _ = self._run(inputs_t, target, extra, plan, output_mode,
                                               probes, grad_wrt_inputs=False)
        results = [r[0] if len(r) == 1 else r for r in layer_rel]
        result = results if isinstance(self.layer, list) else results[0]
        if return_convergence_delta:
            deltas = [total - sum(t.flatten(1).sum(1) for t in r) for r in layer_rel]
            return result, (deltas if isinstance(self.layer, list) else deltas[0])
        return result

    def _plan_with_layers(self, plan: _Plan, layers, inputs_t, extra, composite) -> _Plan:
        """Fall back to the uncanonized model if a requested layer does not run in the plan."""
        if plan.canonized is None:
            return plan
        if all(self._exec_module(plan, layer, strict=False) is not None for layer in layers):
            return plan
        return self._plan(inputs_t, extra, composite, False)

    @staticmethod
    def _exec_module(plan: _Plan, layer: nn.Module, strict: bool = True):
        if plan.canonized is None:
            return layer
        called = {id(m) for _, m in plan.canonized.layers()}
        candidate = plan.canonized.replaced.get(layer, layer)
        if isinstance(candidate, MergedBatchNorm) and candidate.linear is layer:
            candidate = None  # the conv's own output no longer exists once BatchNorm is merged
        if candidate is not None and id(candidate) in called:
            return candidate
        if strict:
            raise ValueError(f"layer {type(layer).__name__} does not run in the canonized model")
        return None
