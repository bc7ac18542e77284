"""LRP rules as declarations.

Every rule says how the relevance ``R_k`` at a layer's output is redistributed onto its input.
For a linear layer ``z_k = Σ_j x_j w_jk + b_k`` the general form (seed 000) is

    R_j = Σ_groups c_g · Σ_k  Σ_t  ι_t(x)_j ρ_t(w_jk) / (Σ_t Σ_j ι_t(x)_j ρ_t(w_jk) + β_t(b_k) ± s)
                            · σ_g(z_k) · R_k

and a rule is nothing but the choice of its **terms** ``t`` (an input ``ι``: ``x``, ``x⁺``,
``x⁻``, ones or a bound; a weight modifier ``ρ``; a bias modifier ``β`` or none; a sign), how
terms are **grouped** and weighted (``c_g``, e.g. αβ's ``α`` and ``−β``), which outputs a group
serves (``σ_g``: all, ``z > 0`` or ``z < 0``) and the **stabiliser** ``s`` added to every
denominator with the denominator's sign. This module holds those declarations only; the engine
(:mod:`lrp_captum.core.engine`) compiles each one into the paths that run it:

* the fused autograd function of a layer in :class:`lrp_captum.LRP` (all terms of a layer in
  one stacked evaluation, the following ReLU folded in);
* the hook path (layers without a fused form, ``canonizers=None``, ``LayerLRP`` probes);
* :meth:`LRPRule.relevance`, the path Captum's own ``captum.attr.LRP`` calls (set
  ``module.rule = EpsilonRule()``): every rule here is a Captum ``PropagationRule``.

A new rule is a new declaration (see :class:`TermRule` and docs/rules.md); it runs on every
path with no further code. Rules never modify a module's parameters.

Deliberate differences from Captum's rules of the same name:

* ``GammaRule`` applies ρ(w) = w + γw⁺ to the bias as well (textbook); Captum's leaves the bias
  unmodified. ``GammaRule(gamma, modify_bias=False)`` reproduces Captum's.
* ``EpsilonRule`` defaults to ``epsilon=1e-6`` (zennit's default) instead of Captum's 1e-9.
* Captum deletes ``module.rule`` after every ``attribute()``; :class:`lrp_captum.LRP` does not.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Optional, Sequence, Union

import torch
from captum.attr._utils.lrp_rules import PropagationRule
from torch import Tensor, nn

from lrp_captum.core.linear_ops import UnsupportedLayerError, is_linear_layer

__all__ = [
    "LRPRule", "TermRule", "Input", "Mix", "Ones", "Square", "Term", "Group", "Terms", "Pass",
    "ZeroRule", "EpsilonRule", "GammaRule", "GeneralizedGammaRule", "AlphaBetaRule",
    "ZPlusRule", "ZBoxRule", "FlatRule", "WSquareRule", "PassRule", "ProportionalRule",
    "GradientRule", "ConstantRule", "UniformRule", "ConstantScaleRule", "FunctionsRule",
    "Gradient", "Constant", "Uniform", "ConstantScale", "Functions", "zbox_bounds",
    "from_captum_rule", "effective_declaration", "check_rule", "CaptumPath",
    "register_captum_path",
]

BoundType = Union[float, Sequence[float], Tensor]
Modifier = Callable[[Tensor], Tensor]


# ---------------------------------------------------------------------------------------------
# the vocabulary of declarations
# ---------------------------------------------------------------------------------------------
class Input(str, Enum):
    """What a term evaluates the layer on."""
    X = "x"
    POSITIVE = "x⁺"  # the positive part of the input
    NEGATIVE = "x⁻"  # the negative part of the input
    ONES = "1"  # a tensor of ones (flat, w²): relevance does not depend on x
    LOW = "l"  # the rule's lower input bound (z^B)
    HIGH = "h"  # the rule's upper input bound (z^B)


#: inputs a term's relevance is computed on directly (not as ``x × something``)
DIRECT_INPUTS = (Input.ONES, Input.LOW, Input.HIGH)


@dataclass(frozen=True)
class Mix:
    """Parameter modifier ``ρ(t) = positive · t⁺ + negative · t⁻``.

    ``Mix(1, 1)`` is ``t``, ``Mix(1, 0)`` is ``t⁺``, ``Mix(1 + γ, 1)`` is ``t + γt⁺``. Declared
    as numbers, so the engine can evaluate every term of a layer from the two products ``W⁺x``
    and ``W⁻x`` and derive the modified weights of the backward pass.
    """
    positive: float = 1.0
    negative: float = 1.0

    def __call__(self, t: Tensor) -> Tensor:
        if self.positive == self.negative:
            return t if self.positive == 1.0 else t * self.positive
        out = t.clamp(min=0)
        if self.positive != 1.0:
            out = out * self.positive
        if self.negative:
            out = out + t.clamp(max=0) * self.negative
        return out

    def __repr__(self) -> str:
        p, n = self.positive, self.negative
        if p == n:
            return "w" if p == 1 else f"{p:g}w"
        if n == 0:
            return "w⁺" if p == 1 else f"{p:g}w⁺"
        if p == 0:
            return "w⁻" if n == 1 else f"{n:g}w⁻"
        if n == 1:
            return f"w + {p - 1:g}w⁺"
        if p == 1:
            return f"w + {n - 1:g}w⁻"
        return f"{p:g}w⁺ + {n:g}w⁻"


IDENTITY = Mix(1.0, 1.0)
POSITIVE_PART = Mix(1.0, 0.0)
NEGATIVE_PART = Mix(0.0, 1.0)


@dataclass(frozen=True)
class Ones:
    """Weight modifier ``ρ(w) = 1`` (the flat rule)."""

    def __call__(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def __repr__(self) -> str:
        return "1"


@dataclass(frozen=True)
class Square:
    """Weight modifier ``ρ(w) = w²`` (the w² rule)."""

    def __call__(self, t: Tensor) -> Tensor:
        return t * t

    def __repr__(self) -> str:
        return "w²"


@dataclass(frozen=True)
class Term:
    """One evaluation of the layer: ``coefficient · layer(input; ρ(W), β(b))``.

    Parameters
    ----------
    input : Input
        What the layer is evaluated on.
    weight : Mix or callable
        ``ρ``, applied to the weight (any function of the weight tensor works; a :class:`Mix`
        lets the engine share the evaluation with other terms).
    bias : Mix, callable or None
        ``β``, applied to the bias; ``None`` leaves the bias out of this term.
    coefficient : float
        Sign or weight of the term within its group (z^B's bound terms are ``-1``).
    """
    input: Input = Input.X
    weight: Modifier = IDENTITY
    bias: Optional[Modifier] = IDENTITY
    coefficient: float = 1.0


@dataclass(frozen=True)
class Group:
    """Terms normalised together: ``R += coefficient · σ(z) · Σ_t term_t / (Σ_t term_t ± s)·R``.

    ``select`` restricts the group to outputs of one sign: ``"positive"`` (``z > 0``),
    ``"negative"`` (``z < 0``) or ``None`` (all outputs).
    """
    terms: tuple[Term, ...]
    coefficient: float = 1.0
    select: Optional[str] = None

    def __post_init__(self) -> None:
        if self.select not in (None, "positive", "negative"):
            raise ValueError(f"select must be None, 'positive' or 'negative', got {self.select!r}")


@dataclass(frozen=True, eq=False)
class Terms:
    """The declaration of a term rule (every rule on linear layers).

    Attributes
    ----------
    groups : tuple of Group
    stabilizer : float
        ``s`` of every denominator ``d + s·sign(d)`` (``sign(0) = +1``); with ``s = 0`` an
        output whose denominator is exactly 0 passes no relevance.
    relative : bool
        ``s`` is ``stabilizer × RMS(d)`` per example (the tutorial's ``0.25·std``).
    bounds : (Tensor, Tensor) or None
        Values of the :attr:`Input.LOW` / :attr:`Input.HIGH` inputs: scalars, per-channel
        ``(C,)`` or tensors broadcastable to one input example.
    """
    groups: tuple[Group, ...]
    stabilizer: float = 1e-6
    relative: bool = False
    bounds: Optional[tuple[Tensor, Tensor]] = field(default=None, repr=False)

    @property
    def terms(self) -> tuple[Term, ...]:
        return tuple(t for g in self.groups for t in g.terms)

    @property
    def proportional(self) -> bool:
        """One group of one plain term: ``R_j = z_jk / (z_k ± s) R_k`` (LRP-0/ε).

        Defined for any layer that is linear (or positively homogeneous) in its inputs, with
        any number of inputs (sums): the layer is evaluated as it is.
        """
        return (len(self.groups) == 1 and len(self.groups[0].terms) == 1
                and self.groups[0].coefficient == 1.0 and self.groups[0].select is None
                and self.groups[0].terms[0] == Term())

    @property
    def direct(self) -> bool:
        """Some term's relevance does not scale with ``x`` (flat, w², z^B): such rules belong
        on the input layer, where the engine collects their relevance exactly."""
        return any(t.input in DIRECT_INPUTS for t in self.terms)

    @property
    def sign_split(self) -> bool:
        """Some term takes ``x⁺`` or ``x⁻``."""
        return any(t.input in (Input.POSITIVE, Input.NEGATIVE) for t in self.terms)


@dataclass(frozen=True)
class Pass:
    """The declaration of the pass rule: ``R_in = R_out`` through an elementwise layer."""


@dataclass(frozen=True)
class Gradient:
    """Relevance per unit of value follows the plain gradient: ``R_in = x · Jᵀ (R_out / y)``,
    the first-order Taylor decomposition of the operation at ``x`` (AttnLRP's softmax rule)."""


@dataclass(frozen=True)
class Constant:
    """The operation's output is a constant for relevance: nothing flows through it
    (CP-LRP's attention probabilities, a gate)."""


@dataclass(frozen=True)
class Uniform:
    """A product of several non-constant factors (``A @ B``, ``a * b``): each factor gets an
    equal share of the relevance (AttnLRP's uniform rule), ``R_i = x_i ∂y/∂x_i · R / (n y)``."""


@dataclass(frozen=True)
class ConstantScale:
    """A normalisation ``y = (x − μ(x)) · s(x) · w + b`` whose scale ``s(x)`` (``1/σ``,
    ``1/RMS``) is a constant for relevance: the rest is linear in ``x`` (AttnLRP, CP-LRP).
    ``bias=False``: the shift ``b`` is out of the denominator, ``R_in = x ∂y/∂x · R / (y − b ± ε)``,
    so the output's relevance goes to the input whole."""
    bias: bool = True


@dataclass(frozen=True)
class Functions:
    """The module is covered by the rules of the functions it calls (softmax, products,
    activations, ...: the composite's :class:`~lrp_captum.core.composites.Op` rules)."""


#: the kinds of declaration of this package; what each means on every path of the engine is one
#: entry of its table (:mod:`lrp_captum.core.engine.declaration_kinds`), where new kinds register
Declaration = Union[Terms, Pass, Gradient, Constant, Uniform, ConstantScale, Functions]


# ---------------------------------------------------------------------------------------------
# base class: a Captum PropagationRule whose behaviour comes from its declaration
# ---------------------------------------------------------------------------------------------
class LRPRule(PropagationRule):
    """Base class of this package's rules.

    A rule declares what it does (:meth:`declaration`); the engine derives every path from it.
    A subclass may instead override :meth:`relevance` (relevance out → relevance in, as in
    Captum) and return ``None`` from :meth:`declaration`: such an *imperative* rule runs on
    the hook path of :class:`lrp_captum.LRP` and in Captum's engine, never fused.
    """

    def declaration(self) -> Optional[Declaration]:
        """What the rule does, as data (None: an imperative rule, see :meth:`relevance`)."""
        return None

    # -- description --------------------------------------------------------------------------
    def _params(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def copy(self) -> "LRPRule":
        """A fresh instance with the same parameters (composites give each layer its own)."""
        new = copy.copy(self)
        for attr in ("relevance_input", "relevance_output", "_handle_input_hooks",
                     "_handle_output_hook", "_has_single_input"):
            new.__dict__.pop(attr, None)
        return new

    # -- Captum's engine ----------------------------------------------------------------------
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
        decl = self.declaration()
        if decl is None:
            raise NotImplementedError(
                f"{type(self).__name__} declares nothing: return a declaration from "
                "declaration() or override relevance()")
        return _captum_path().relevance(decl, module, inputs, output, relevance_out)

    def _manipulate_weights(self, module, inputs, outputs) -> None:
        """Never change the weights: rules compute modified parameters on the fly."""

    def forward_hook(self, module, inputs, outputs):
        """Captum's second forward pass: route the backward pass through :meth:`relevance`."""
        return _captum_path().relevance_output(self, module, inputs, outputs)


def _fmt(value) -> str:
    if torch.is_tensor(value):
        if value.numel() > 4:
            return f"tensor{tuple(value.shape)}"
        return "[" + ", ".join(f"{v:.4g}" for v in value.flatten().tolist()) + "]" \
            if value.dim() else f"{value.item():.4g}"
    return repr(value)


def effective_declaration(rule: LRPRule) -> Optional[Declaration]:
    """What the engine compiles for ``rule``: its declaration, or None for an imperative rule
    (one that overrides :meth:`LRPRule.relevance`: its own code must run, so a declaration it
    may also return is not used)."""
    if type(rule).relevance is not LRPRule.relevance:
        return None
    return rule.declaration()


def check_rule(rule: LRPRule, module: nn.Module) -> None:
    """Raise :class:`~lrp_captum.core.linear_ops.UnsupportedLayerError` if ``rule`` cannot
    apply to ``module``: a rule with modified terms needs a linear layer."""
    decl = effective_declaration(rule)
    if isinstance(decl, Terms) and not decl.proportional and not is_linear_layer(module):
        raise UnsupportedLayerError(
            f"{rule!r} needs a linear layer (Linear, Conv, ConvTranspose, BatchNorm, "
            f"AvgPool) but got {type(module).__name__}")


# ---------------------------------------------------------------------------------------------
# Captum's path, supplied by the engine
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptumPath:
    """How Captum's engine runs a declaration: supplied by the engine
    (:mod:`lrp_captum.core.engine.declaration_kinds`) when it is imported, which
    :mod:`lrp_captum.core` does. The declarations import no engine code.

    Attributes
    ----------
    relevance : callable
        ``(declaration, module, inputs, output, relevance_out) -> tuple of Tensor``: input
        relevances from the relevance of the output (:meth:`LRPRule.relevance`).
    relevance_output : callable
        ``(rule, module, inputs, output) -> Tensor``: the layer's output in Captum's second
        forward pass, whose backward pass applies ``rule.relevance``
        (:meth:`LRPRule.forward_hook`).
    """
    relevance: Callable
    relevance_output: Callable


_CAPTUM_PATH: list[CaptumPath] = []


def register_captum_path(path: CaptumPath) -> None:
    """Set the engine's implementation of Captum's path (the engine calls this)."""
    _CAPTUM_PATH[:] = [path]


def _captum_path() -> CaptumPath:
    if not _CAPTUM_PATH:
        raise RuntimeError("the LRP engine is not loaded: import lrp_captum (or "
                           "lrp_captum.core.engine.declaration_kinds) first")
    return _CAPTUM_PATH[0]


class TermRule(LRPRule):
    """A rule given by its groups of terms (see :class:`Terms`).

    Subclass it and return the groups from :meth:`groups`; the rule then runs fused, on the
    hook path and in Captum. Example: a γ-like rule with its own weight modifier::

        class AbsGamma(TermRule):
            def __init__(self, gamma=0.5, stabilizer=1e-6):
                super().__init__(stabilizer)
                self.gamma = gamma

            def groups(self):
                rho = lambda w: w + self.gamma * w.abs()
                return (Group((Term(Input.X, rho, rho),)),)
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        if stabilizer < 0:
            raise ValueError(f"stabilizer must be >= 0, got {stabilizer}")
        self.stabilizer = float(stabilizer)
        self.STABILITY_FACTOR = self.stabilizer

    def groups(self) -> tuple[Group, ...]:
        raise NotImplementedError(f"{type(self).__name__} must return its groups of terms")

    def declaration(self) -> Terms:
        return Terms(tuple(self.groups()), self.stabilizer)


# ---------------------------------------------------------------------------------------------
# proportional rules: LRP-0, LRP-ε, sum/average pooling
# ---------------------------------------------------------------------------------------------
class EpsilonRule(TermRule):
    """LRP-ε: ``R_j = Σ_k x_j w_jk / (z_k + ε·sign(z_k)) R_k``.

    Works on any layer that is linear (or positively homogeneous, e.g. max-pooling) in its
    inputs, including multi-input sums; the layer is evaluated as is.

    Parameters
    ----------
    epsilon : float
        Stabiliser added to the denominator with the sign of ``z`` (``sign(0) = +1``).
    relative : bool
        If True, ``ε`` is ``epsilon × RMS(z)`` per example (the tutorial's ``0.25·std``).
    bias : bool
        False leaves the bias out of the denominator, ``R_j = Σ_k x_j w_jk / (z'_k ± ε) R_k``
        with ``z'_k = Σ_j x_j w_jk``: the output's relevance, the bias's share included, goes
        to the inputs (``Σ_j R_j = Σ_k R_k`` up to ε). xMIL-LRP's default (Hense et al. 2024).
    """

    def __init__(self, epsilon: float = 1e-6, relative: bool = False, bias: bool = True) -> None:
        if epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {epsilon}")
        super().__init__(epsilon)
        self.epsilon = float(epsilon)
        self.relative = relative
        self.bias = bool(bias)

    def _params(self) -> dict:
        out = {"epsilon": self.epsilon}
        if self.relative:
            out["relative"] = True
        if not self.bias:
            out["bias"] = False
        return out

    def groups(self):
        return (Group((Term(),)),) if self.bias else (Group((Term(bias=None),)),)

    def declaration(self) -> Terms:
        return Terms(self.groups(), self.epsilon, self.relative)


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
# rules with modified terms: γ, generalised γ, αβ, z⁺
# ---------------------------------------------------------------------------------------------
def _gamma(gamma: float, towards: str) -> Mix:
    """``w + γw⁺`` (towards positive) or ``w + γw⁻`` (towards negative)."""
    return Mix(1.0 + gamma, 1.0) if towards == "positive" else Mix(1.0, 1.0 + gamma)


def _check_gamma(gamma: float) -> float:
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    return float(gamma)


class GammaRule(TermRule):
    """LRP-γ (textbook): ρ(w) = w + γw⁺ on weights *and* bias.

    ``R_j = Σ_k x_j (w_jk + γw⁺_jk) / (Σ_j x_j (w_jk + γw⁺_jk) + b_k + γb⁺_k ± s) R_k``.
    Meant for ReLU inputs (x ≥ 0). ``modify_bias=False`` gives Captum's ``GammaRule``.
    See :class:`GeneralizedGammaRule` for inputs of both signs.
    """

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6,
                 modify_bias: bool = True) -> None:
        super().__init__(stabilizer)
        self.gamma = _check_gamma(gamma)
        self.modify_bias = modify_bias

    def _params(self) -> dict:
        out = {"gamma": self.gamma}
        if not self.modify_bias:
            out["modify_bias"] = False
        return out

    def groups(self):
        rho = _gamma(self.gamma, "positive")
        return (Group((Term(Input.X, rho, rho if self.modify_bias else IDENTITY),)),)


class GeneralizedGammaRule(TermRule):
    """Sign-aware LRP-γ (Andéol et al. 2021; zennit's ``Gamma``).

    For an output ``z_k > 0`` the positive contributions are favoured,
    ``z_jk + γ·max(0, z_jk)`` with ``z_jk = x_j w_jk`` (bias ``b_k + γb⁺_k``);
    for ``z_k < 0`` the negative ones, ``z_jk + γ·min(0, z_jk)`` (bias ``b_k + γb⁻_k``).
    Equal to :class:`GammaRule` for non-negative inputs and positive outputs.
    """

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6) -> None:
        super().__init__(stabilizer)
        self.gamma = _check_gamma(gamma)

    def _params(self) -> dict:
        return {"gamma": self.gamma}

    def groups(self):
        up, down = _gamma(self.gamma, "positive"), _gamma(self.gamma, "negative")
        # x⁺w⁺ and x⁻w⁻ are the positive contributions: amplify them for positive outputs
        return (
            Group((Term(Input.POSITIVE, up, up), Term(Input.NEGATIVE, down, None)),
                  select="positive"),
            Group((Term(Input.POSITIVE, down, down), Term(Input.NEGATIVE, up, None)),
                  select="negative"),
        )


class AlphaBetaRule(TermRule):
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

    def groups(self):
        groups = [Group((Term(Input.POSITIVE, POSITIVE_PART, POSITIVE_PART),
                         Term(Input.NEGATIVE, NEGATIVE_PART, None)), coefficient=self.alpha)]
        if self.beta:
            groups.append(Group((Term(Input.POSITIVE, NEGATIVE_PART, NEGATIVE_PART),
                                 Term(Input.NEGATIVE, POSITIVE_PART, None)),
                                coefficient=-self.beta))
        return tuple(groups)


class ZPlusRule(AlphaBetaRule):
    """z⁺ rule (Deep Taylor, seed 002): only positive contributions, ``= AlphaBetaRule(1, 0)``.

    For ReLU inputs (x ≥ 0): ``R_j = Σ_k x_j w⁺_jk / Σ_j x_j w⁺_jk R_k`` (plus ``b⁺_k`` in
    the denominator; ``bias=False`` leaves it out, so that the output's relevance, the bias's
    share included, goes to the inputs, as :class:`EpsilonRule` ``bias=False`` does).
    """

    def __init__(self, stabilizer: float = 1e-6, bias: bool = True) -> None:
        super().__init__(alpha=1.0, beta=0.0, stabilizer=stabilizer)
        self.bias = bool(bias)

    def _params(self) -> dict:
        return {} if self.bias else {"bias": False}

    def groups(self):
        return (Group((Term(Input.POSITIVE, POSITIVE_PART, POSITIVE_PART if self.bias else None),
                       Term(Input.NEGATIVE, NEGATIVE_PART, None))),)


class _WeightOnlyRule(TermRule):
    """A single term ``x · ρ(w)`` with a given bias treatment (mirrors Captum's rules)."""

    def __init__(self, weight: Modifier, bias: Optional[Modifier], stabilizer: float,
                 label: str) -> None:
        super().__init__(stabilizer)
        self._weight, self._bias, self._label = weight, bias, label

    def __repr__(self) -> str:
        return self._label

    def groups(self):
        return (Group((Term(Input.X, self._weight, self._bias),)),)


# ---------------------------------------------------------------------------------------------
# input-layer rules whose relevance does not scale with x: z^B, flat, w²
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


class ZBoxRule(TermRule):
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

    def groups(self):
        return (Group((Term(Input.X, IDENTITY, None),
                       Term(Input.LOW, POSITIVE_PART, None, -1.0),
                       Term(Input.HIGH, NEGATIVE_PART, None, -1.0))),)

    def declaration(self) -> Terms:
        return Terms(self.groups(), self.stabilizer, bounds=(self.low, self.high))


class FlatRule(TermRule):
    """Flat rule: each output's relevance spread uniformly over its receptive field.

    ``R_i = Σ_j 1 / (number of inputs of j) · R_j`` (Lapuschkin et al. 2019). Input layer only.
    """

    def groups(self):
        return (Group((Term(Input.ONES, Ones(), None),)),)


class WSquareRule(TermRule):
    """w² rule (Deep Taylor, seed 001): ``R_i = Σ_j w_ij² / Σ_i w_ij² · R_j``. Input layer only.

    The bias is not part of the denominator (zennit's ``WSquare`` adds ``b²``, which absorbs
    relevance).
    """

    def groups(self):
        return (Group((Term(Input.ONES, Square(), None),)),)


# ---------------------------------------------------------------------------------------------
# elementwise layers
# ---------------------------------------------------------------------------------------------
class PassRule(LRPRule):
    """Pass relevance through an elementwise layer unchanged: ``R_in = R_out``.

    For activations (ReLU, ELU, SiLU, GELU, tanh, x², log, ...), dropout and identity.
    Conservative by construction; the non-linearity is "explained" by the layers around it.
    """

    def declaration(self) -> Pass:
        return Pass()


class GradientRule(LRPRule):
    """Gradient × input at the operation: ``R_in = x · Jᵀ (R_out / y)``.

    AttnLRP's rule for the softmax (Achtibat et al. 2024, Prop. 3.1): the first-order Taylor
    decomposition of ``softmax(x)`` at ``x``, ``R_i = x_i (R_i − s_i Σ_j R_j)``. Not
    conservative: the Taylor remainder (a bias) absorbs part of the relevance.
    """

    def declaration(self) -> Gradient:
        return Gradient()


class ConstantRule(LRPRule):
    """Treat the operation's output as a constant: no relevance flows through it.

    CP-LRP (Ali et al. 2022) on the attention probabilities: ``softmax(QKᵀ) V`` is then linear
    in ``V`` and conserves relevance; the gate of a gated product likewise.
    """

    def declaration(self) -> Constant:
        return Constant()


class UniformRule(LRPRule):
    """Split the relevance of a product of ``n`` non-constant factors equally between them.

    AttnLRP's rule for the bilinear matrix products of attention (``QKᵀ``, ``AV``) and for
    elementwise products of two branches (gated MLPs): each factor gets ``1/n`` of the
    gradient × input of the product.
    """

    def declaration(self) -> Uniform:
        return Uniform()


class ConstantScaleRule(LRPRule):
    """LayerNorm / RMSNorm with the normalisation's scale (``1/σ``) treated as a constant.

    ``y = (x − μ) / σ · w + b`` is then linear in ``x``; relevance follows its gradient × input
    (AttnLRP and CP-LRP both use this; with ``b = 0`` it conserves relevance). ``bias=False``
    leaves the shift ``b`` out of the denominator (``R_in = x ∂y/∂x · R / (y − b ± 1e-8)``): the
    relevance, the shift's share included, goes to the input, as :class:`EpsilonRule`
    ``bias=False`` does on a linear layer.
    """

    def __init__(self, bias: bool = True) -> None:
        self.bias = bool(bias)

    def _params(self) -> dict:
        return {} if self.bias else {"bias": False}

    def declaration(self) -> ConstantScale:
        return ConstantScale(self.bias)


class FunctionsRule(LRPRule):
    """No rule of its own: the rules of the functions the module calls apply (a transformer
    block, an activation module of a library, ``LayerScale``). A function no rule covers is
    named in an error."""

    def declaration(self) -> Functions:
        return Functions()


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
        return _WeightOnlyRule(_gamma(rule.gamma, "positive"),
                               None if rule.set_bias_to_zero else IDENTITY,
                               rule.STABILITY_FACTOR, f"captum.GammaRule(gamma={rule.gamma})")
    if isinstance(rule, cr.Alpha1_Beta0_Rule):
        return _WeightOnlyRule(POSITIVE_PART, None if rule.set_bias_to_zero else IDENTITY,
                               rule.STABILITY_FACTOR, "captum.Alpha1_Beta0_Rule()")
    raise TypeError(f"unknown Captum rule {type(rule).__name__}: use a rule from "
                    "lrp_captum.core.rules or subclass lrp_captum.LRPRule (declare its terms with "
                    "lrp_captum.core.rules.TermRule)")
