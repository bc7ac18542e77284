"""LRP propagation rules as subclasses of Captum's ``PropagationRule``.

Every rule says how the relevance ``R_k`` at a layer's output is redistributed onto its input.
For a linear layer ``z_k = Σ_j x_j w_jk + b_k`` the general form (seed 000) is

    R_j = Σ_k  x_j ρ(w_jk) / (Σ_j x_j ρ(w_jk) + ρ(b_k) ± ε)  · R_k

and each rule below is a choice of ``ρ``, of input modifications (``x⁺``, ``x⁻``, bounds, ones)
and of how partial relevances are combined. A rule works in two engines:

* inside Captum's own ``captum.attr.LRP`` / ``LayerLRP`` (set ``module.rule = EpsilonRule()``):
  :meth:`LRPRule.forward_hook` returns the layer output through an autograd function whose
  backward applies :meth:`LRPRule.relevance` (Captum propagates relevance as the gradient);
* inside :class:`lrp_captum.LRP`, which propagates the *relevance per unit of activation*
  ``c = R / a`` as the gradient, so that LRP-0 is the plain gradient and a rule is only a
  small change of it (:meth:`LRPRule.engine_output`). This is why it runs close to the speed
  of a gradient.

Rules never modify the module's parameters; modified parameters are computed on the fly.

Deliberate differences from Captum's rules of the same name:

* ``GammaRule`` applies ρ(w) = w + γw⁺ to the bias as well (textbook); Captum's leaves the bias
  unmodified. ``GammaRule(gamma, modify_bias=False)`` reproduces Captum's.
* ``EpsilonRule`` defaults to ``epsilon=1e-6`` (zennit's default) instead of Captum's 1e-9.
* Captum deletes ``module.rule`` after every ``attribute()``; :class:`lrp_captum.LRP` does not.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch
from captum.attr._utils.lrp_rules import PropagationRule
from torch import Tensor, nn

from . import fast
from .layers import Sum
from .linear_ops import (UnsupportedLayerError, evaluate_linear, is_linear_layer,
                         layer_parameters, linear_forward)

__all__ = [
    "LRPRule", "ZeroRule", "EpsilonRule", "GammaRule", "GeneralizedGammaRule", "AlphaBetaRule",
    "ZPlusRule", "ZBoxRule", "FlatRule", "WSquareRule", "PassRule", "ProportionalRule",
    "zbox_bounds", "stabilize",
]

BoundType = Union[float, Sequence[float], Tensor]


def stabilize(z: Tensor, epsilon: Union[float, Tensor]) -> Tensor:
    """``z + ε·sign(z)`` with ``sign(0) = +1``: moves the denominator away from zero."""
    return z + epsilon * (z >= 0).to(z.dtype).mul_(2).sub_(1)


def _safe_divide(a: Tensor, b: Tensor) -> Tensor:
    return torch.where(b == 0, torch.zeros_like(a), a / torch.where(b == 0, torch.ones_like(b), b))


def _identity(t: Tensor) -> Tensor:
    return t


def _positive(t: Tensor) -> Tensor:
    return t.clamp(min=0)


def _negative(t: Tensor) -> Tensor:
    return t.clamp(max=0)


def _ones(t: Tensor) -> Tensor:
    return torch.ones_like(t)


def _square(t: Tensor) -> Tensor:
    return t * t


def _gamma_mod(gamma: float, part: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    def modifier(t: Tensor) -> Tensor:
        return t + gamma * part(t)
    return modifier


# ---------------------------------------------------------------------------------------------
# autograd plumbing
# ---------------------------------------------------------------------------------------------
class _ReplaceValue(torch.autograd.Function):
    """Forward: the value of ``value``. Backward: the incoming gradient goes to ``surrogate``.

    Lets a rule return the layer's true output while its gradient follows a modified graph.
    """

    @staticmethod
    def forward(ctx, value: Tensor, surrogate: Tensor) -> Tensor:  # type: ignore[override]
        return value.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return None, grad


class _ScaleGradient(torch.autograd.Function):
    """Forward: a copy of ``x``. Backward: the gradient times ``scale`` (LRP-ε's ``z/(z±ε)``)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(scale)
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (scale,) = ctx.saved_tensors
        return grad * scale, None


class _RelevanceFunction(torch.autograd.Function):
    """Apply ``rule.relevance`` in the backward pass.

    ``mode == "relevance"``: the gradient *is* the relevance (Captum's engine).
    ``mode == "ratio"``: the gradient is relevance per unit of value, ``c = R / a`` (our engine).
    """

    @staticmethod
    def forward(ctx, rule, module, mode, output, *inputs):  # type: ignore[override]
        ctx.rule, ctx.module, ctx.mode = rule, module, mode
        ctx.save_for_backward(output, *inputs)
        return output.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        output, *inputs = ctx.saved_tensors
        rule: LRPRule = ctx.rule
        if ctx.mode == "ratio":
            relevance_out = grad * output
        else:
            relevance_out = grad
        relevance_in = rule.relevance(ctx.module, tuple(inputs), output, relevance_out)
        if ctx.mode == "ratio":
            grads = tuple(_safe_divide(r, x) for r, x in zip(relevance_in, inputs))
            if rule.direct and rule._direct_sink is not None:
                rule._direct_sink(inputs, relevance_in)
        else:
            grads = relevance_in
            _record_captum_relevance(rule, grad, relevance_in)
        return (None, None, None, None) + tuple(grads)


def _record_captum_relevance(rule: "LRPRule", relevance_out: Tensor,
                             relevance_in: Sequence[Tensor]) -> None:
    """Fill the attributes Captum's ``LayerLRP`` reads (normalised relevances per device)."""
    device = relevance_out.device
    if not isinstance(getattr(rule, "relevance_output", None), dict) or \
            rule.relevance_output is PropagationRule.relevance_output:
        rule.relevance_output = {}
    if not isinstance(getattr(rule, "relevance_input", None), dict) or \
            rule.relevance_input is PropagationRule.relevance_input:
        rule.relevance_input = {}
    rule.relevance_output[device] = relevance_out.detach()
    if len(relevance_in) == 1:
        rule.relevance_input[device] = relevance_in[0].detach()
    else:
        rule.relevance_input[device] = [r.detach() for r in relevance_in]


# ---------------------------------------------------------------------------------------------
# base class
# ---------------------------------------------------------------------------------------------
class LRPRule(PropagationRule):
    """Base class of this package's rules.

    Subclasses implement :meth:`relevance` (relevance in → relevance out, float-exact, used by
    Captum's engine and as the generic path) and may override :meth:`engine_output` with a
    faster formulation for :class:`lrp_captum.LRP`.
    """

    #: the rule computes input relevance directly (not as ``input × something``); such rules
    #: belong on the input layer, where the engine collects their relevance exactly.
    direct = False
    #: the rule needs the layer to be a linear map it can re-evaluate with other parameters.
    needs_linear_layer = True

    def __init__(self) -> None:
        self._direct_sink: Optional[Callable] = None

    # -- description --------------------------------------------------------------------------
    def _params(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def copy(self) -> "LRPRule":
        """A fresh instance with the same parameters (composites give each layer its own)."""
        new = copy.copy(self)
        new._direct_sink = None
        for attr in ("relevance_input", "relevance_output", "_handle_input_hooks",
                     "_handle_output_hook", "_has_single_input"):
            new.__dict__.pop(attr, None)
        return new

    def check_module(self, module: nn.Module) -> None:
        """Raise if this rule cannot be applied to ``module`` (called before any change)."""
        if self.needs_linear_layer and not is_linear_layer(module):
            raise UnsupportedLayerError(
                f"{self!r} needs a linear layer (Linear, Conv, ConvTranspose, BatchNorm, "
                f"AvgPool) but got {type(module).__name__}")

    # -- the rule -----------------------------------------------------------------------------
    def relevance(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor,
                  relevance_out: Tensor) -> tuple[Tensor, ...]:
        """Input relevances of ``module`` given the relevance of its output.

        Parameters
        ----------
        module : nn.Module
        inputs : tuple of Tensor
            The layer's inputs (values of the forward pass), e.g. ``(N, C_in, H, W)``.
        output : Tensor
            The layer's output (value), e.g. ``(N, C_out, H', W')``.
        relevance_out : Tensor
            Relevance of the output, same shape as ``output``.

        Returns
        -------
        tuple of Tensor
            One relevance tensor per input, each the shape of that input.
        """
        raise NotImplementedError

    def engine_output(self, module: nn.Module, inputs: tuple[Tensor, ...],
                      output: Tensor) -> Optional[Tensor]:
        """Replacement output for :class:`lrp_captum.LRP` (gradient = relevance per value).

        Returns ``None`` if the plain gradient already implements the rule for this module.
        The default routes the backward pass through :meth:`relevance`.
        """
        float_inputs = tuple(x for x in inputs if torch.is_tensor(x))
        return _RelevanceFunction.apply(self, module, "ratio", output.detach(), *float_inputs)

    def supports_fast(self, module: nn.Module) -> bool:
        """True if :meth:`fast_forward` has a fused evaluation for this module type."""
        return False

    def _same_rule_as(self, owner: type, *names: str) -> bool:
        """False if a subclass redefines one of ``names`` of ``owner``: the fused path
        implements ``owner``'s rule and must not replace the subclass's own."""
        return all(getattr(type(self), n) is getattr(owner, n)
                   for n in ("relevance", "engine_output") + names)

    def fast_forward(self, module: nn.Module, inputs: tuple[Tensor, ...],
                     relu: bool) -> Optional[Tensor]:
        """Fused evaluation for :class:`lrp_captum.LRP` on canonized models.

        Returns the layer's output (with ``relu`` the ReLU that follows it applied as well)
        from one autograd function whose backward pass applies the rule to ``c = R / a``
        (see :mod:`lrp_captum.fast`), or None where no fused path applies (the engine then
        runs the layer and :meth:`engine_output`).
        """
        return None

    # -- Captum's engine ----------------------------------------------------------------------
    def _manipulate_weights(self, module, inputs, outputs) -> None:
        """Never change the weights: rules compute modified parameters on the fly."""

    def forward_hook(self, module, inputs, outputs):
        """Captum's second forward pass: route the backward pass through :meth:`relevance`."""
        inputs = tuple(x for x in (inputs if isinstance(inputs, tuple) else (inputs,)))
        return _RelevanceFunction.apply(self, module, "relevance", outputs.detach(), *inputs)


def _fmt(value) -> str:
    if torch.is_tensor(value):
        if value.numel() > 4:
            return f"tensor{tuple(value.shape)}"
        return "[" + ", ".join(f"{v:.4g}" for v in value.flatten().tolist()) + "]" \
            if value.dim() else f"{value.item():.4g}"
    return repr(value)


# ---------------------------------------------------------------------------------------------
# proportional rules: LRP-0, LRP-ε, sum/average pooling
# ---------------------------------------------------------------------------------------------
class EpsilonRule(LRPRule):
    """LRP-ε: ``R_j = Σ_k x_j w_jk / (z_k + ε·sign(z_k)) R_k``.

    Works on any layer that is linear (or positively homogeneous, e.g. max-pooling) in its
    inputs, including multi-input sums; the layer is evaluated as is.

    Parameters
    ----------
    epsilon : float
        Stabiliser added to the denominator with the sign of ``z`` (``sign(0) = +1``).
    relative : bool
        If True, ``ε`` is ``epsilon × RMS(z)`` per example (the tutorial's ``0.25·std``).
    """

    needs_linear_layer = False

    def __init__(self, epsilon: float = 1e-6, relative: bool = False) -> None:
        super().__init__()
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        self.epsilon = float(epsilon)
        self.relative = relative
        self.STABILITY_FACTOR = self.epsilon

    def _params(self) -> dict:
        out = {"epsilon": self.epsilon}
        if self.relative:
            out["relative"] = True
        return out

    def _epsilon_for(self, z: Tensor) -> Union[float, Tensor]:
        if not self.relative:
            return self.epsilon
        rms = z.detach().pow(2).flatten(1).mean(1).sqrt()
        return self.epsilon * rms.reshape((-1,) + (1,) * (z.dim() - 1))

    def relevance(self, module, inputs, output, relevance_out):
        xs = tuple(x.detach().requires_grad_() for x in inputs)
        with torch.enable_grad():
            z = module.forward(*xs)
        # safe division: with ε = 0 (LRP-0) an output of exactly 0 carries no relevance
        s = _safe_divide(relevance_out, stabilize(z.detach(), self._epsilon_for(z)))
        grads = torch.autograd.grad(z, xs, s, allow_unused=True)
        return tuple(x.detach() * (g if g is not None else torch.zeros_like(x))
                     for x, g in zip(xs, grads))

    def engine_output(self, module, inputs, output):
        if self.epsilon == 0:
            return None  # LRP-0 is the plain gradient of the layer
        z = output.detach()
        kappa = z / stabilize(z, self._epsilon_for(z))
        return _ScaleGradient.apply(output, kappa)

    def supports_fast(self, module):
        return self.epsilon > 0 and self._same_rule_as(EpsilonRule, "_epsilon_for") and (
            isinstance(module, Sum) or fast.supports_linear(module))

    def fast_forward(self, module, inputs, relu):
        return fast.epsilon_forward(module, inputs, self._epsilon_for, relu)


class ZeroRule(EpsilonRule):
    """LRP-0: ``R_j = Σ_k x_j w_jk / z_k R_k`` (conservative; gradient × input per layer)."""

    def __init__(self) -> None:
        super().__init__(epsilon=0.0)

    def _params(self) -> dict:
        return {}


class ProportionalRule(EpsilonRule):
    """Sum / average pooling: ``R_j = x_j / (Σ_j x_j ± ε) R_k`` over each pooling window.

    The same as LRP-ε with a tiny stabiliser, named for what it does on sums and pooling
    layers (zennit calls it ``Norm``).
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        super().__init__(epsilon=stabilizer)

    def _params(self) -> dict:
        return {"stabilizer": self.epsilon}


# ---------------------------------------------------------------------------------------------
# rules built from modified terms: γ, generalised γ, αβ, z⁺
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Term:
    """One modified evaluation of the layer: which part of the input, which ρ on the params."""
    input: str  # "x", "pos" (x⁺), "neg" (x⁻)
    weight: Callable[[Tensor], Tensor] = _identity
    bias: Optional[Callable[[Tensor], Tensor]] = _identity  # None: leave the bias out


@dataclass(frozen=True)
class _Group:
    """Terms normalised together; ``select`` restricts to outputs of one sign."""
    terms: tuple[_Term, ...]
    coefficient: float = 1.0
    select: Optional[str] = None  # None, "pos" (z > 0), "neg" (z < 0)


def _mask_input(x: Tensor, which: str) -> Tensor:
    if which == "x":
        return x
    if which == "pos":
        return x * (x > 0)
    return x * (x < 0)


def _selection(z: Tensor, which: Optional[str]) -> Union[float, Tensor]:
    if which is None:
        return 1.0
    return (z > 0).to(z.dtype) if which == "pos" else (z < 0).to(z.dtype)


class _TermRule(LRPRule):
    """Relevance = Σ_groups coefficient · Σ_terms x_t ρ_t(w) / (Σ_terms z_t ± stabiliser) · R."""

    def __init__(self, stabilizer: float = 1e-6) -> None:
        super().__init__()
        self.stabilizer = float(stabilizer)
        self.STABILITY_FACTOR = self.stabilizer

    def _groups(self) -> tuple[_Group, ...]:
        raise NotImplementedError

    def _group_outputs(self, module: nn.Module, x: Tensor):
        """``(group, z_group)`` pairs; ``z_group`` keeps the autograd graph to ``x``."""
        groups = self._groups()
        nonnegative = not bool((x < 0).any())
        if nonnegative:
            # x ≥ 0 (ReLU inputs): terms on x⁻ vanish and x⁺ = x, so every group is one
            # evaluation of the layer on x; do them all in a single call with stacked weights
            groups = tuple(_Group(tuple(t for t in g.terms if t.input != "neg"), g.coefficient,
                                  g.select) for g in groups)
            fused = _fused_group_outputs(module, x, groups)
            if fused is not None:
                yield from zip(groups, fused)
                return
        for group in groups:
            z_group = None
            for term in group.terms:
                x_t = x if term.input == "x" or (nonnegative and term.input == "pos") \
                    else _mask_input(x, term.input)
                z_t = evaluate_linear(module, x_t, term.weight, term.bias,
                                      use_bias=term.bias is not None)
                z_group = z_t if z_group is None else z_group + z_t
            yield group, z_group

    def relevance(self, module, inputs, output, relevance_out):
        (x,) = inputs
        x = x.detach().requires_grad_()
        z_ref = output.detach()
        with torch.enable_grad():
            total = 0
            for group, z_group in self._group_outputs(module, x):
                s = group.coefficient * _selection(z_ref, group.select) * relevance_out \
                    / stabilize(z_group.detach(), self.stabilizer)
                total = total + (z_group * s).sum()
        (grad,) = torch.autograd.grad(total, x)
        return (x.detach() * grad,)

    def engine_output(self, module, inputs, output):
        (x,) = inputs
        z = output.detach()
        surrogate = None
        for group, z_group in self._group_outputs(module, x):
            kappa = (group.coefficient * z * _selection(z, group.select)
                     / stabilize(z_group.detach(), self.stabilizer))
            term = z_group * kappa
            surrogate = term if surrogate is None else surrogate + term
        return _ReplaceValue.apply(z, surrogate)


def _fused_group_outputs(module: nn.Module, x: Tensor, groups) -> Optional[list]:
    """Evaluate single-term groups on the same input as one layer call with stacked weights.

    Returns None where stacking along the output dimension is not the same map (grouped
    convolutions, transposed convolutions, BatchNorm, pooling).
    """
    if any(len(g.terms) != 1 for g in groups) or len(groups) < 2:
        return None
    base = getattr(module, "linear", module)  # MergedBatchNorm evaluates through its conv
    if not (isinstance(base, nn.Linear) or (isinstance(base, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
                                            and base.groups == 1)):
        return None
    weight, bias = layer_parameters(module)
    weights = [g.terms[0].weight(weight) for g in groups]
    biases = [g.terms[0].bias(bias) if (bias is not None and g.terms[0].bias is not None)
              else torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
              for g in groups]
    stacked = linear_forward(module, x, torch.cat(weights, 0), torch.cat(biases, 0))
    return list(stacked.chunk(len(groups), dim=1))


class GammaRule(_TermRule):
    """LRP-γ (textbook): ρ(w) = w + γw⁺ on weights *and* bias.

    ``R_j = Σ_k x_j (w_jk + γw⁺_jk) / (Σ_j x_j (w_jk + γw⁺_jk) + b_k + γb⁺_k ± s) R_k``.
    Meant for ReLU inputs (x ≥ 0). ``modify_bias=False`` gives Captum's ``GammaRule``.
    See :class:`GeneralizedGammaRule` for inputs of both signs.
    """

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6,
                 modify_bias: bool = True) -> None:
        super().__init__(stabilizer)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.modify_bias = modify_bias

    def _params(self) -> dict:
        out = {"gamma": self.gamma}
        if not self.modify_bias:
            out["modify_bias"] = False
        return out

    def _groups(self):
        rho = _gamma_mod(self.gamma, _positive)
        return (_Group((_Term("x", rho, rho if self.modify_bias else _identity),)),)

    def supports_fast(self, module):
        return self._same_rule_as(GammaRule, "_groups") and fast.supports_linear(module)

    def fast_forward(self, module, inputs, relu):
        return fast.term_forward(module, inputs[0], "gamma", (self.gamma, self.modify_bias),
                                 self.stabilizer, relu) if len(inputs) == 1 else None


class GeneralizedGammaRule(_TermRule):
    """Sign-aware LRP-γ (Andéol et al. 2021; zennit's ``Gamma``).

    For an output ``z_k > 0`` the positive contributions are favoured,
    ``z_jk + γ·max(0, z_jk)`` with ``z_jk = x_j w_jk`` (bias ``b_k + γb⁺_k``);
    for ``z_k < 0`` the negative ones, ``z_jk + γ·min(0, z_jk)`` (bias ``b_k + γb⁻_k``).
    Equal to :class:`GammaRule` for non-negative inputs and positive outputs.
    """

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6) -> None:
        super().__init__(stabilizer)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)

    def _params(self) -> dict:
        return {"gamma": self.gamma}

    def _groups(self):
        up = _gamma_mod(self.gamma, _positive)
        down = _gamma_mod(self.gamma, _negative)
        return (
            # x⁺w⁺ and x⁻w⁻ are the positive contributions: amplify them for positive outputs
            _Group((_Term("pos", up, up), _Term("neg", down, None)), select="pos"),
            _Group((_Term("pos", down, down), _Term("neg", up, None)), select="neg"),
        )

    def supports_fast(self, module):
        return self._same_rule_as(GeneralizedGammaRule, "_groups") and \
            fast.supports_linear(module)

    def fast_forward(self, module, inputs, relu):
        return fast.term_forward(module, inputs[0], "ggamma", (self.gamma,), self.stabilizer,
                                 relu) if len(inputs) == 1 else None


class AlphaBetaRule(_TermRule):
    """LRP-αβ: ``R_j = Σ_k (α z⁺_jk / Σ_j z⁺_jk − β z⁻_jk / Σ_j z⁻_jk) R_k``.

    ``z⁺_jk`` are the positive contributions ``x⁺_j w⁺_jk + x⁻_j w⁻_jk`` (bias ``b⁺_k``),
    ``z⁻_jk`` the negative ones ``x⁺_j w⁻_jk + x⁻_j w⁺_jk`` (bias ``b⁻_k``).
    Requires ``α − β = 1`` and ``α, β ≥ 0`` (conservation).
    """

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6) -> None:
        super().__init__(stabilizer)
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be >= 0, got alpha={alpha}, beta={beta}")
        if abs((alpha - beta) - 1.0) > 1e-12:
            raise ValueError(f"alpha - beta must equal 1 for conservation, got "
                             f"alpha={alpha}, beta={beta}")
        self.alpha, self.beta = float(alpha), float(beta)

    def _params(self) -> dict:
        return {"alpha": self.alpha, "beta": self.beta}

    def _groups(self):
        groups = [_Group((_Term("pos", _positive, _positive), _Term("neg", _negative, None)),
                         coefficient=self.alpha)]
        if self.beta:
            groups.append(_Group((_Term("pos", _negative, _negative),
                                  _Term("neg", _positive, None)), coefficient=-self.beta))
        return tuple(groups)

    def supports_fast(self, module):
        return self._same_rule_as(AlphaBetaRule, "_groups") and fast.supports_linear(module)

    def fast_forward(self, module, inputs, relu):
        return fast.term_forward(module, inputs[0], "alphabeta", (self.alpha, self.beta),
                                 self.stabilizer, relu) if len(inputs) == 1 else None


class ZPlusRule(AlphaBetaRule):
    """z⁺ rule (Deep Taylor, seed 002): only positive contributions, ``= AlphaBetaRule(1, 0)``.

    For ReLU inputs (x ≥ 0): ``R_j = Σ_k x_j w⁺_jk / Σ_j x_j w⁺_jk R_k`` (plus ``b⁺_k`` in
    the denominator).
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        super().__init__(alpha=1.0, beta=0.0, stabilizer=stabilizer)

    def _params(self) -> dict:
        return {}


class _WeightOnlyRule(_TermRule):
    """A single term ``x · ρ(w)`` with a given bias treatment (used to mirror Captum rules)."""

    def __init__(self, weight, bias, stabilizer: float, label: str) -> None:
        super().__init__(stabilizer)
        self._weight, self._bias, self._label = weight, bias, label

    def __repr__(self) -> str:
        return self._label

    def _groups(self):
        return (_Group((_Term("x", self._weight, self._bias),)),)


# ---------------------------------------------------------------------------------------------
# input-layer rules that compute relevance directly: z^B, flat, w²
# ---------------------------------------------------------------------------------------------
def zbox_bounds(mean: BoundType, std: BoundType,
                pixel_range: tuple[float, float] = (0.0, 1.0)) -> tuple[Tensor, Tensor]:
    """Bounds ``(low, high)`` of normalised inputs ``(pixel - mean) / std``, per channel.

    Parameters
    ----------
    mean, std : float or sequence of float
        The normalisation applied to the model's inputs (e.g. ImageNet's per-channel values).
    pixel_range : (float, float)
        Smallest and largest raw pixel value (``(0, 1)`` for float images, ``(0, 255)`` ...).

    Returns
    -------
    (Tensor, Tensor)
        ``low`` and ``high`` of shape ``(C,)`` for :class:`ZBoxRule`.
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
    std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
    if (std_t <= 0).any():
        raise ValueError(f"std must be positive, got {std_t.tolist()}")
    lo, hi = pixel_range
    if not lo < hi:
        raise ValueError(f"pixel_range must be (low, high) with low < high, got {pixel_range}")
    return (lo - mean_t) / std_t, (hi - mean_t) / std_t


def _broadcast_bound(bound: Tensor, x: Tensor) -> Tensor:
    bound = bound.to(device=x.device, dtype=x.dtype)
    if bound.dim() == 1 and x.dim() > 2 and bound.numel() == x.shape[1]:
        bound = bound.reshape((1, -1) + (1,) * (x.dim() - 2))
    return bound.expand_as(x)


class _DirectRule(LRPRule):
    direct = True

    def __init__(self, stabilizer: float = 1e-6) -> None:
        super().__init__()
        self.stabilizer = float(stabilizer)
        self.STABILITY_FACTOR = self.stabilizer


class ZBoxRule(_DirectRule):
    """Deep-Taylor z^B rule for inputs bounded by ``low ≤ x ≤ high`` (seed 002).

    ``R_i = Σ_j (x_i w_ij − l_i w⁺_ij − h_i w⁻_ij) / Σ_i (x_i w_ij − l_i w⁺_ij − h_i w⁻_ij) R_j``.
    The bias cancels out of the denominator (``b − b⁺ − b⁻ = 0``).

    Parameters
    ----------
    low, high : float, sequence of float, or Tensor
        Scalars, per-channel values ``(C,)`` or full tensors broadcastable to the input
        (without batch dimension). :func:`zbox_bounds` derives them from a normalisation.
    """

    def __init__(self, low: BoundType, high: BoundType, stabilizer: float = 1e-6) -> None:
        super().__init__(stabilizer)
        self.low = torch.as_tensor(low, dtype=torch.float32)
        self.high = torch.as_tensor(high, dtype=torch.float32)
        if (self.low > self.high).any():
            raise ValueError("ZBoxRule needs low <= high")

    def _params(self) -> dict:
        return {"low": self.low, "high": self.high}

    def relevance(self, module, inputs, output, relevance_out):
        (x,) = inputs
        x = x.detach().requires_grad_()
        low = _broadcast_bound(self.low, x).detach().requires_grad_()
        high = _broadcast_bound(self.high, x).detach().requires_grad_()
        with torch.enable_grad():
            z = (evaluate_linear(module, x, use_bias=False)
                 - evaluate_linear(module, low, _positive, use_bias=False)
                 - evaluate_linear(module, high, _negative, use_bias=False))
        s = relevance_out / stabilize(z.detach(), self.stabilizer)
        gx, gl, gh = torch.autograd.grad(z, (x, low, high), s)
        return (x.detach() * gx + low.detach() * gl + high.detach() * gh,)

    def supports_fast(self, module):
        return self._same_rule_as(ZBoxRule) and fast.supports_linear(module)

    def fast_forward(self, module, inputs, relu):
        if len(inputs) != 1:
            return None
        example = inputs[0][:1]
        low = _broadcast_bound(self.low, example).contiguous()
        high = _broadcast_bound(self.high, example).contiguous()
        return fast.zbox_forward(module, inputs[0], self, low, high, relu)


class FlatRule(_DirectRule):
    """Flat rule: each output's relevance spread uniformly over its receptive field.

    ``R_i = Σ_j 1 / (number of inputs of j) · R_j`` (Lapuschkin et al. 2019). Input layer only.
    """

    def relevance(self, module, inputs, output, relevance_out):
        return _uniform_input_relevance(module, inputs[0], _ones, relevance_out, self.stabilizer)


class WSquareRule(_DirectRule):
    """w² rule (Deep Taylor, seed 001): ``R_i = Σ_j w_ij² / Σ_i w_ij² · R_j``. Input layer only.

    The bias is not part of the denominator (zennit's ``WSquare`` adds ``b²``, which absorbs
    relevance).
    """

    def relevance(self, module, inputs, output, relevance_out):
        return _uniform_input_relevance(module, inputs[0], _square, relevance_out,
                                        self.stabilizer)


def _uniform_input_relevance(module, x, weight_mod, relevance_out, stabilizer):
    ones = torch.ones_like(x).requires_grad_()
    with torch.enable_grad():
        z = evaluate_linear(module, ones, weight_mod, use_bias=False)
    s = relevance_out / stabilize(z.detach(), stabilizer)
    (grad,) = torch.autograd.grad(z, ones, s)
    return (grad,)


# ---------------------------------------------------------------------------------------------
# elementwise layers
# ---------------------------------------------------------------------------------------------
_GRADIENT_IS_PASS = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Dropout, nn.Dropout1d,
                     nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Flatten, nn.Unflatten)


class PassRule(LRPRule):
    """Pass relevance through an elementwise layer unchanged: ``R_in = R_out``.

    For activations (ReLU, ELU, SiLU, GELU, tanh, x², log, ...), dropout and identity.
    Conservative by construction; the non-linearity is "explained" by the layers around it.
    """

    needs_linear_layer = False

    def check_module(self, module: nn.Module) -> None:
        return None

    def relevance(self, module, inputs, output, relevance_out):
        (x,) = inputs[:1]
        if relevance_out.numel() != x.numel():
            raise UnsupportedLayerError(
                f"PassRule needs an elementwise or reshaping layer, but {type(module).__name__} "
                f"maps {tuple(x.shape)} to {tuple(relevance_out.shape)}")
        return (relevance_out.reshape(x.shape),) + tuple(torch.zeros_like(t) for t in inputs[1:])

    def engine_output(self, module, inputs, output):
        if isinstance(module, _GRADIENT_IS_PASS):
            return None  # f(z)/z equals f'(z) here: the gradient already passes relevance
        return super().engine_output(module, inputs, output)


def from_captum_rule(rule: PropagationRule) -> LRPRule:
    """The equivalent :class:`LRPRule` of one of Captum's own rule objects."""
    from captum.attr._utils import lrp_rules as cr
    if isinstance(rule, LRPRule):
        return rule
    if isinstance(rule, cr.IdentityRule):
        return PassRule()
    if isinstance(rule, cr.EpsilonRule):
        return EpsilonRule(epsilon=rule.STABILITY_FACTOR)
    if isinstance(rule, cr.GammaRule):
        bias = (lambda t: torch.zeros_like(t)) if rule.set_bias_to_zero else _identity
        return _WeightOnlyRule(_gamma_mod(rule.gamma, _positive), bias, rule.STABILITY_FACTOR,
                               f"captum.GammaRule(gamma={rule.gamma})")
    if isinstance(rule, cr.Alpha1_Beta0_Rule):
        bias = (lambda t: torch.zeros_like(t)) if rule.set_bias_to_zero else _identity
        return _WeightOnlyRule(_positive, bias, rule.STABILITY_FACTOR,
                               "captum.Alpha1_Beta0_Rule()")
    raise TypeError(f"unknown Captum rule {type(rule).__name__}: use a rule from "
                    "lrp_captum.rules or subclass lrp_captum.rules.LRPRule")
