"""Drop-in ``LRP`` and ``LayerLRP`` for Captum users.

Same constructor and ``attribute()`` signature as ``captum.attr.LRP`` / ``LayerLRP``, plus
composites, canonizers and output modes. The machinery lives in :mod:`lrp_captum.core.engine`:
a plan per composite and input signature (:mod:`~lrp_captum.core.engine.planning`), one call
on it (:mod:`~lrp_captum.core.engine.call`), the conservation check
(:mod:`~lrp_captum.core.engine.conservation`). The model comes back exactly as it was, also
after an error.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import torch
from captum._utils.common import _format_additional_forward_args
from captum.attr import LayerLRP as _CaptumLayerLRP
from captum.attr import LRP as _CaptumLRP
from captum.log import log_usage
from torch import Tensor, nn

from lrp_captum.core.canonizers import non_finite_problem
from lrp_captum.core.composites import ResolvedComposite
from lrp_captum.core.engine.call import AttributionCall, run_call
from lrp_captum.core.engine.conservation import check_conservation
from lrp_captum.core.engine.output_modes import OUTPUT_MODES
from lrp_captum.core.engine.planning import CANONIZER_CHOICES, AttributionPlan, CompositeLike, PlanCache
from lrp_captum.core.engine.rule_table import rule_table
from lrp_captum.core.layers import MergedBatchNorm
from lrp_captum.core.model_mode import evaluation_mode

__all__ = ["LRP", "LayerLRP", "OUTPUT_MODES", "LRPEngine"]


def _format_inputs(inputs) -> tuple[tuple, bool]:
    is_tuple = isinstance(inputs, tuple)
    return (inputs if is_tuple else (inputs,)), is_tuple


class LRPEngine:
    """Shared machinery of :class:`LRP` and :class:`LayerLRP`: their plans, and one call."""

    model: nn.Module

    def _init_engine(self, composite: CompositeLike, canonizers: Optional[str],
                     fused: bool = True) -> None:
        if canonizers not in CANONIZER_CHOICES + (False,):
            raise ValueError(f"canonizers must be 'default', 'auto' or None, got {canonizers!r}")
        self.composite = composite
        self.canonizers = canonizers or None
        self.fused = bool(fused)
        self._plans = PlanCache()

    def _plan(self, inputs: tuple, extra_args: tuple, composite: CompositeLike,
              canonizers) -> AttributionPlan:
        canonizers = self.canonizers if canonizers is None else (canonizers or None)
        return self._plans.plan(self.model, self.composite if composite is None else composite,
                                canonizers, self.fused, tuple(inputs) + tuple(extra_args))

    def _call_plan(self, inputs: tuple, extra: tuple, composite, canonizers) -> tuple:
        """The plan a call runs, and whether it runs the fused graph."""
        plan = self._plan(inputs, extra, composite, canonizers)
        return plan, plan.fused_model is not None

    def rule_table(self, inputs, composite: CompositeLike = None,
                   additional_forward_args: Any = None) -> ResolvedComposite:
        """The layer → rule table that :meth:`attribute` would use for these inputs."""
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        extra = tuple(_format_additional_forward_args(additional_forward_args) or ())
        with evaluation_mode(self.model, warn=False):
            plan, fused = self._call_plan(inputs, extra, composite, None)
        return rule_table(plan, fused)

    def reset(self) -> None:
        """Forget cached plans (call after changing the model's structure)."""
        self._plans.clear()


class LRP(LRPEngine, _CaptumLRP):
    """Layer-wise Relevance Propagation with composites and canonizers.

    A drop-in replacement of ``captum.attr.LRP``: same ``attribute()`` signature and return
    types, plus rule selection by composite, model canonization, and output-relevance modes.

    Parameters
    ----------
    model : nn.Module
        The model, in evaluation mode. It is never modified.
    composite : str or Composite, optional
        Rules per layer, e.g. ``"epsilon_gamma_box"`` (see
        :func:`lrp_captum.core.composites.list_composites`). Default: ``"epsilon"``. A rule set as
        ``module.rule`` (Captum's way) takes precedence for that module.
    canonizers : "default", "auto" or None
        ``"auto"`` rewrites BatchNorm, residual sums, gates, functional and in-place
        activations with torch.fx (see :mod:`lrp_captum.core.canonizers`) and raises if the model
        cannot be traced; ``"default"`` does the same where the model can be traced and
        otherwise warns and attaches the rules to the leaf modules; None attaches rules to
        the leaf modules as they are.
    fused : bool
        With canonizers, run every layer whose rule has a fused form as one autograd function
        (with the following ReLU folded in; :mod:`lrp_captum.core.engine.fused`). Default True;
        False runs every rule through hooks on the layers (the same relevances, slower).

    Notes
    -----
    A model in training mode is explained in evaluation mode and every module's flag is
    restored afterwards (:func:`lrp_captum.core.model_mode.evaluation_mode`). After each call the
    sum of the relevances is compared with the explained output; a warning (once per input
    signature) says when they differ by orders of magnitude or are not finite.

    Examples
    --------
    >>> lrp = LRP(model, composite="epsilon_plus_flat")
    >>> attribution = lrp.attribute(images, target=labels)  # (N, 3, H, W)
    """

    def __init__(self, model: nn.Module, composite: CompositeLike = None,
                 canonizers: Optional[str] = "default", fused: bool = True) -> None:
        _CaptumLRP.__init__(self, model)
        self._init_engine(composite, canonizers, fused)

    @log_usage()
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
        problem = non_finite_problem(None, inputs_t)
        if problem:
            raise ValueError(problem)
        with evaluation_mode(self.model):
            plan, fused = self._call_plan(inputs_t, extra, composite, canonizers)
            if verbose:
                print(rule_table(plan, fused))
            done = run_call(plan, AttributionCall(inputs_t, target, extra, output_mode), fused)
        relevances, total = done.relevances, done.total
        summed = _per_output_row(sum(r.flatten(1).sum(1) for r in relevances if r is not None), total)
        check_conservation(plan, summed, total, done.out)
        result = tuple(relevances) if is_tuple else relevances[0]
        if return_convergence_delta:
            return result, (total - summed).detach()
        return result


def _per_output_row(summed: Tensor, total: Tensor) -> Tensor:
    """Relevance sums per explained output row. A model that maps all its input rows to one
    output row (a MIL head on a bag ``(N, D)``, a set model) is one example: its relevance sums
    over every input row."""
    if total.dim() == 1 and total.shape[0] == 1 and summed.shape[0] != 1:
        return summed.sum(0, keepdim=True)
    return summed


class LayerLRP(LRPEngine, _CaptumLayerLRP):
    """Relevance at the output (or input) of a layer, with composites and canonizers.

    A drop-in replacement of ``captum.attr.LayerLRP``. ``layer`` may be any module of the
    model, leaf or not, or a list of modules; inputs may be integer token ids when the layer
    is (or follows) an embedding. Parameters as :class:`LRP`; the fused layers are used
    unless a requested layer is one of them (its own output is then needed).
    """

    def __init__(self, model: nn.Module, layer: Union[nn.Module, list], composite:
                 CompositeLike = None, canonizers: Optional[str] = "default",
                 fused: bool = True) -> None:
        _CaptumLayerLRP.__init__(self, model, layer)
        self._init_engine(composite, canonizers, fused)

    @log_usage()
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
            plan, fused = self._call_plan(inputs_t, extra, composite, canonizers)
            if verbose:
                print(rule_table(plan, fused))
            probes = [(self._exec_module(plan, layer), attribute_to_layer_input)
                      for layer in layers]
            done = run_call(plan, AttributionCall(inputs_t, target, extra, output_mode, probes,
                                                  grad_wrt_inputs=False), fused)
        layer_rel, total = done.layer_relevances, done.total
        sums = [_per_output_row(sum(t.flatten(1).sum(1) for t in r), total) for r in layer_rel]
        for summed in sums:
            check_conservation(plan, summed, total, done.out)
        results = [r[0] if len(r) == 1 else r for r in layer_rel]
        result = results if isinstance(self.layer, list) else results[0]
        if return_convergence_delta:
            deltas = [total - summed for summed in sums]
            return result, (deltas if isinstance(self.layer, list) else deltas[0])
        return result

    def _call_plan(self, inputs: tuple, extra: tuple, composite, canonizers) -> tuple:
        layers = self.layer if isinstance(self.layer, list) else [self.layer]
        plan = self._plan(inputs, extra, composite, canonizers)
        plan = self._plan_with_layers(plan, layers, inputs, extra, composite)
        probed = [self._exec_module(plan, layer) for layer in layers]
        fused = plan.fused_model is not None and not any(
            m in plan.fused_modules or m in plan.folded_modules for m in probed)
        return plan, fused

    def _plan_with_layers(self, plan: AttributionPlan, layers, inputs_t, extra,
                          composite) -> AttributionPlan:
        """Fall back to the uncanonized model if a requested layer does not run in the plan."""
        if plan.canonized is None:
            return plan
        if all(self._exec_module(plan, layer, strict=False) is not None for layer in layers):
            return plan
        return self._plan(inputs_t, extra, composite, False)

    @staticmethod
    def _exec_module(plan: AttributionPlan, layer: nn.Module, strict: bool = True):
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
