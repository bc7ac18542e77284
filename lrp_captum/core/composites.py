"""Composites: which rule goes on which layer.

A composite is data: an ordered list of ``(selector, rule)`` pairs; for every leaf layer the first
matching selector wins and the layer gets a fresh copy of that rule. Selectors are

* a tuple of layer types (see :mod:`lrp_captum.core.layer_types`), e.g. ``types.Convolution``;
* a glob pattern on the module name, e.g. ``"features.*"`` (use :class:`Name`);
* a position in execution order among the linear layers: :class:`First`, :class:`Position`;
* any callable ``(name, module, layer_info) -> bool``, or :class:`All` of several selectors.

Presets are registered by name (:func:`get_composite`, :func:`list_composites`) so the CLI and the
apps can refer to them as strings.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

from torch import nn

from lrp_captum.core import layer_types as types
from lrp_captum.core.layers import FunctionalActivation, GatedProduct, MergedBatchNorm, Sum
from lrp_captum.core.op_families import OP_FAMILIES
from lrp_captum.core.rules import (AlphaBetaRule, ConstantRule, ConstantScaleRule, EpsilonRule, FlatRule,
                                   FunctionsRule, GammaRule, GeneralizedGammaRule, GradientRule, LRPRule,
                                   PassRule, ProportionalRule, UniformRule, ZBoxRule, ZeroRule, ZPlusRule,
                                   check_rule, from_captum_rule, zbox_bounds)

__all__ = ["Composite", "Name", "First", "Position", "All", "Op", "Normalization", "AnyLayer",
           "LayerInfo", "ResolvedComposite",
           "get_composite", "list_composites", "register_composite", "composite_needs_bounds",
           "NoRuleError", "UnknownCompositeError"]

#: layers through which relevance needs no rule: they start the graph (token ids → vectors)
SOURCE_LAYERS = (nn.Embedding, nn.EmbeddingBag)
#: treated as linear layers by position selectors
POSITIONED = types.Linear


class NoRuleError(TypeError):
    """A layer has no rule in the composite (raised before anything is changed)."""


def _looks_like_transformer_part(module: nn.Module) -> bool:
    """Attention, or a library's own activation or normalisation class (``GELUActivation``,
    ``LlamaRMSNorm``): what the composites with rules on functions cover."""
    return isinstance(module, nn.MultiheadAttention) or "attention" in type(module).__name__.lower() \
        or NamedActivation()("", module, None) or Normalization()("", module, None)


@dataclass(frozen=True, eq=False)
class LayerInfo:
    """Where a layer sits: its execution order among all leaf ``layers`` of the model."""
    order: int
    layers: Sequence[tuple[str, nn.Module]]

    def members(self, layer_types: tuple) -> list[int]:
        """Execution-order indices of the layers of the given types."""
        return [i for i, (_, m) in enumerate(self.layers) if _is_a(m, layer_types)]


@dataclass(frozen=True)
class Name:
    """Match module names with a glob pattern (``"features.*"``, ``"layer4.*.conv2"``)."""
    pattern: str

    def __call__(self, name: str, module: nn.Module, info: LayerInfo) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)


@dataclass(frozen=True)
class First:
    """The first layer of the given types in execution order (default: the input layer)."""
    layer_types: tuple = POSITIONED

    def __call__(self, name, module, info) -> bool:
        members = info.members(self.layer_types)
        return bool(members) and members[0] == info.order

    def __repr__(self) -> str:
        return f"first {_selector_text(self.layer_types)} layer"


@dataclass(frozen=True)
class Position:
    """Layers of ``layer_types`` whose relative position ``k / count`` lies in ``[start, stop)``.

    ``Position(0.0, 0.5, types.Convolution)`` is the lower half of the convolutions, counted
    among convolutions only, in execution order.
    """
    start: float = 0.0
    stop: float = 1.0
    layer_types: tuple = POSITIONED

    def __call__(self, name, module, info) -> bool:
        members = info.members(self.layer_types)
        if info.order not in members:
            return False
        return self.start <= members.index(info.order) / len(members) < self.stop

    def __repr__(self) -> str:
        return f"{_selector_text(self.layer_types)} at [{self.start:g}, {self.stop:g})"


@dataclass(frozen=True)
class All:
    """All of several selectors match."""
    selectors: tuple

    def __call__(self, name, module, info) -> bool:
        return all(_matches(s, name, module, info) for s in self.selectors)


@dataclass(frozen=True)
class Op:
    """A family of functions called in ``forward`` (``"softmax"``, ``"matmul"``, ``"mul"``,
    ``"norm"``, ``"activation"``, ``"linear"``): see :mod:`lrp_captum.core.op_families`.

    Rules of families apply to calls outside leaf modules that carry rules of their own, such
    as the attention of a transformer (``torch.softmax(q @ k.transpose(-1, -2))``).
    """
    family: str

    def __post_init__(self) -> None:
        if self.family not in OP_FAMILIES:
            raise ValueError(f"unknown op family {self.family!r}; choose from "
                             f"{', '.join(OP_FAMILIES)}")

    def __call__(self, name, module, info) -> bool:
        return False  # never a module

    def __repr__(self) -> str:
        return f"op {self.family}"


Selector = Union[tuple, type, str, Callable]


def _is_a(module: nn.Module, layer_types) -> bool:
    """isinstance, where a merged conv+BatchNorm counts as its conv."""
    if isinstance(module, MergedBatchNorm) and MergedBatchNorm not in (
            layer_types if isinstance(layer_types, tuple) else (layer_types,)):
        module = module.linear
    return isinstance(module, layer_types)


def _matches(selector: Selector, name: str, module: nn.Module, info: LayerInfo) -> bool:
    if isinstance(selector, str):
        return fnmatch.fnmatchcase(name, selector)
    if isinstance(selector, (type, tuple)):
        return _is_a(module, selector)
    return bool(selector(name, module, info))


_GROUP_NAMES = [(name, getattr(types, name)) for name in
                ("Linear", "Convolution", "Dense", "BatchNorm", "AvgPool", "MaxPool",
                 "Activation", "Identity")]


def _selector_text(selector: Selector) -> str:
    if isinstance(selector, tuple):
        remaining = set(selector)
        names = []
        for name, group in _GROUP_NAMES:
            if set(group) <= remaining:
                names.append(name)
                remaining -= set(group)
        names += sorted(t.__name__ for t in remaining)
        return "|".join(names)
    if isinstance(selector, type):
        return selector.__name__
    if isinstance(selector, str):
        return f"name {selector!r}"
    return repr(selector)


class ResolvedComposite(dict):
    """``{layer name: rule}`` for one model; ``str()`` gives a readable layer → rule table.

    ``paths`` (filled by ``LRP.rule_table``) says how each layer runs in the engine:
    ``"fused"``, ``"fused, ReLU folded in"``, ``"folded into the layer before"`` (a ReLU) or
    ``"hooks"``.
    """

    def __init__(self, rows: list[tuple[str, nn.Module, Optional[LRPRule], str]],
                 paths: Optional[dict] = None) -> None:
        super().__init__((name, rule) for name, _, rule, _ in rows)
        self.rows = rows
        self.paths = dict(paths or {})

    def __str__(self) -> str:
        header = ("layer", "type", "rule", "matched by") + (("runs",) if self.paths else ())
        body = [(n, type(m).__name__, "(none: starts the graph)" if r is None else repr(r), why)
                + ((self.paths.get(n, "-"),) if self.paths else ())
                for n, m, r, why in self.rows]
        widths = [max(len(str(row[i])) for row in [header] + body) for i in range(len(header))]
        lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)),
                 "  ".join("-" * w for w in widths)]
        lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in body]
        return "\n".join(lines)

    __repr__ = __str__


class Composite:
    """An ordered map from layer selectors to rules; the first match wins.

    Parameters
    ----------
    rules : sequence of (selector, LRPRule)
        See the module docstring for selectors. Each layer gets ``rule.copy()``.
    name : str, optional
        Registry name, shown in tables and manifests.
    """

    def __init__(self, rules: Sequence[tuple[Selector, LRPRule]], name: str = "custom") -> None:
        self.rules = [(sel, from_captum_rule(rule) if rule is not None else None)
                      for sel, rule in rules]
        self.name = name

    def __repr__(self) -> str:
        lines = [f"Composite {self.name!r} (first match wins):"]
        lines += [f"  {_selector_text(s):<40} -> {r!r}" for s, r in self.rules]
        return "\n".join(lines)

    def prepend(self, rules: Union[dict, Sequence[tuple[Selector, LRPRule]]]) -> "Composite":
        """A new composite with ``rules`` taking precedence (dict keys: types or name globs)."""
        extra = list(rules.items()) if isinstance(rules, dict) else list(rules)
        return Composite(extra + self.rules, name=self.name)

    def op_rules(self) -> dict:
        """``{family: rule}`` for the :class:`Op` selectors (the first match wins)."""
        rules: dict = {}
        for selector, rule in self.rules:
            if isinstance(selector, Op) and selector.family not in rules:
                rules[selector.family] = rule.copy()
        return rules

    def resolve_layers(self, layers: Sequence[tuple[str, nn.Module]],
                       respect_module_rules: bool = True,
                       carried_rules: Optional[dict] = None) -> ResolvedComposite:
        """Assign a rule to each ``(name, module)`` leaf layer given in execution order.

        A rule already set as ``module.rule`` (Captum's way) takes precedence, also when it
        was set on a module that canonization replaced (``carried_rules``:
        ``{substitute: (rule, note)}``). Raises :class:`NoRuleError` naming every layer
        without a rule, before anything is changed.
        """
        rows, missing = [], []
        layers = list(layers)
        carried_rules = carried_rules or {}
        for order, (name, module) in enumerate(layers):
            info = LayerInfo(order, layers)
            user_rule = getattr(module, "rule", None) if respect_module_rules else None
            if user_rule is not None:
                rows.append((name, module, from_captum_rule(user_rule), "module.rule"))
                continue
            if respect_module_rules and module in carried_rules:
                rule, note = carried_rules[module]
                rows.append((name, module, from_captum_rule(rule), note))
                continue
            for selector, rule in self.rules:
                if _matches(selector, name, module, info):
                    rows.append((name, module, rule.copy() if rule is not None else None,
                                 _selector_text(selector)))
                    break
            else:
                if isinstance(module, SOURCE_LAYERS):
                    rows.append((name, module, None, "source layer"))
                else:
                    missing.append((name, module))
        if missing:
            listing = "; ".join(f"'{n}' ({type(m).__name__})" for n, m in missing)
            hint = ""
            if not self.op_rules() and any(_looks_like_transformer_part(m) for _, m in missing):
                hint = (" These are transformer parts: use composite 'attnlrp' (or 'cp_lrp'; "
                        "'attnlrp_gamma' for Vision Transformers), which cover LayerNorm, GELU and attention.")
            raise NoRuleError(
                f"composite {self.name!r} has no rule for: {listing}.{hint} Attach one with "
                f"get_composite({self.name!r}, layer_map={{{type(missing[0][1]).__name__}: "
                f"PassRule()}}) (or EpsilonRule() for a linear layer), or set "
                f"`module.rule = ...` on that module.")
        for name, module, rule, _ in rows:
            if rule is not None:
                try:
                    check_rule(rule, module)
                except TypeError as exc:
                    raise NoRuleError(f"layer '{name}': {exc}") from None
        return ResolvedComposite(rows)

    def resolve(self, model: nn.Module) -> ResolvedComposite:
        """Resolve on a model's leaf modules in registration order (see :func:`leaf_layers`)."""
        return self.resolve_layers(leaf_layers(model))

    def attach(self, model: nn.Module) -> "AttachedRules":
        """Set ``module.rule`` on every leaf layer so plain ``captum.attr.LRP(model)`` uses it.

        Returns a handle whose ``remove()`` (or use as a context manager) deletes exactly the
        rules it set. Note that Captum itself deletes all ``module.rule`` after each call.
        """
        resolved = self.resolve_layers(leaf_layers(model), respect_module_rules=False)
        modules = dict(leaf_layers(model))
        set_on = []
        for name, rule in resolved.items():
            module = modules[name]
            if rule is None or (isinstance(rule, PassRule) and _captum_passes(module)):
                continue  # Captum handles ReLU/Dropout/Tanh itself and rejects rules on them
            module.rule = rule
            set_on.append(module)
        return AttachedRules(set_on)


def _captum_passes(module: nn.Module) -> bool:
    from captum.attr._core.lrp import SUPPORTED_NON_LINEAR_LAYERS
    return type(module) in SUPPORTED_NON_LINEAR_LAYERS


class AttachedRules:
    def __init__(self, modules: list[nn.Module]) -> None:
        self.modules = modules

    def remove(self) -> None:
        for module in self.modules:
            module.__dict__.pop("rule", None)

    def __enter__(self) -> "AttachedRules":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def leaf_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every leaf module, in registration order."""
    return [(n, m) for n, m in model.named_modules() if next(m.children(), None) is None
            and n != ""] or [("", model)]


# ---------------------------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Composite]
    description: str
    #: the composite has a rule (z^B) that needs the input bounds ``low``/``high``
    needs_bounds: bool


_REGISTRY: dict[str, _Entry] = {}


class UnknownCompositeError(KeyError, ValueError):
    """A composite name that is not registered; the message lists the registered ones."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def register_composite(name: str, description: str, needs_bounds: bool = False):
    """Decorator registering a composite factory under ``name``.

    ``needs_bounds=True`` says that the factory takes the input bounds ``low``/``high``
    (:func:`get_composite` can derive them from ``mean``/``std``).
    """
    def wrap(factory):
        _REGISTRY[name] = _Entry(factory, description, needs_bounds)
        return factory
    return wrap


def list_composites() -> dict[str, str]:
    """``{name: one-line description}`` of the registered composites."""
    return {name: entry.description for name, entry in _REGISTRY.items()}


def _key(name: str) -> str:
    key = name.replace("-", "_").lower()
    if key not in _REGISTRY:
        raise UnknownCompositeError(
            f"unknown composite {name!r}; choose from {', '.join(_REGISTRY)}")
    return key


def composite_needs_bounds(name: Union[str, Composite]) -> bool:
    """True if the registered composite ``name`` needs input bounds (``low``/``high`` or
    ``mean``/``std``); False for a :class:`Composite` object (already built)."""
    return False if isinstance(name, Composite) else _REGISTRY[_key(name)].needs_bounds


def get_composite(name: Union[str, Composite], layer_map: Optional[dict] = None,
                  mean=None, std=None, pixel_range: tuple[float, float] = (0.0, 1.0),
                  **kwargs: Any) -> Composite:
    """A registered composite by name (or a given composite), with optional extra rules.

    Parameters
    ----------
    name : str or Composite
        One of :func:`list_composites`.
    layer_map : dict, optional
        ``{layer type or name glob: rule}`` taking precedence over the preset.
    mean, std : float or sequence of float, optional
        The normalisation of the model's inputs, ``(pixel - mean) / std`` per channel. For a
        composite that needs input bounds (:func:`composite_needs_bounds`) and is not given
        ``low``/``high``, the bounds are derived from them with
        :func:`lrp_captum.core.rules.zbox_bounds` over ``pixel_range``; other composites ignore
        them, so callers can pass the normalisation whatever the composite.
    **kwargs
        Parameters of the preset (``low``, ``high``, ``epsilon``, ``gamma``, ...).

    Raises
    ------
    UnknownCompositeError
        ``name`` is not registered (the message lists the registered names).
    """
    if isinstance(name, Composite):
        composite = name
    else:
        entry = _REGISTRY[_key(name)]
        if entry.needs_bounds and "low" not in kwargs and "high" not in kwargs and \
                mean is not None and std is not None:
            kwargs["low"], kwargs["high"] = zbox_bounds(mean, std, pixel_range)
        composite = entry.factory(**kwargs)
    return composite.prepend(layer_map) if layer_map else composite


def _norms() -> list:
    """LayerNorm, GroupNorm, RMSNorm (ConvNeXt's LayerNorm2d, a library's ``...RMSNorm``) in a
    CNN: the normalisation's scale is a constant, as in the transformer composites."""
    return [(FUNCTIONAL_NORMS, ConstantScaleRule()), (Normalization(), ConstantScaleRule())]


def _base(stabilizer: float) -> list:
    """Rules shared by the zennit-style presets (all but the linear layers)."""
    return [
        *_norms(),
        (types.Activation + types.Identity + (FunctionalActivation,), PassRule()),
        ((Sum,) + types.AvgPool, ProportionalRule(stabilizer)),
        (types.BatchNorm, PassRule()),
        (types.MaxPool, ZeroRule()),
        ((GatedProduct,), ZeroRule()),
    ]


def _bounds(low, high, name):
    if low is None or high is None:
        raise ValueError(f"composite {name!r} needs the input bounds: get_composite({name!r}, "
                         "mean=..., std=...) for inputs normalised as (pixel - mean) / std, or "
                         "low=..., high=... (see lrp_captum.core.rules.zbox_bounds)")
    return low, high


@register_composite("epsilon_gamma_box",
                    "z^B on the first conv, generalised γ on convs, ε on dense layers (zennit's "
                    "EpsilonGammaBox)", needs_bounds=True)
def epsilon_gamma_box(low=None, high=None, epsilon: float = 1e-6, gamma: float = 0.25,
                      stabilizer: float = 1e-6) -> Composite:
    low, high = _bounds(low, high, "epsilon_gamma_box")
    return Composite([
        (First(types.Convolution), ZBoxRule(low, high, stabilizer)),
        *_base(stabilizer),
        (types.Convolution, GeneralizedGammaRule(gamma, stabilizer)),
        (types.Dense, EpsilonRule(epsilon)),
    ], name="epsilon_gamma_box")


@register_composite("epsilon_plus", "z⁺ on convs, ε on dense layers")
def epsilon_plus(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    return Composite([
        *_base(stabilizer),
        (types.Convolution, ZPlusRule(stabilizer)),
        (types.Dense, EpsilonRule(epsilon)),
    ], name="epsilon_plus")


@register_composite("epsilon_plus_flat", "flat on the first layer, z⁺ on convs, ε on dense")
def epsilon_plus_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    return Composite([(First(), FlatRule(stabilizer))] + epsilon_plus(epsilon, stabilizer).rules,
                     name="epsilon_plus_flat")


@register_composite("epsilon_alpha2_beta1", "α2β1 on convs, ε on dense layers")
def epsilon_alpha2_beta1(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    return Composite([
        *_base(stabilizer),
        (types.Convolution, AlphaBetaRule(2.0, 1.0, stabilizer)),
        (types.Dense, EpsilonRule(epsilon)),
    ], name="epsilon_alpha2_beta1")


@register_composite("epsilon_alpha2_beta1_flat", "flat on the first layer, α2β1 on convs, ε dense")
def epsilon_alpha2_beta1_flat(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    return Composite([(First(), FlatRule(stabilizer))]
                     + epsilon_alpha2_beta1(epsilon, stabilizer).rules,
                     name="epsilon_alpha2_beta1_flat")


@register_composite("seeds",
                    "the seeds' recipe: z^B input layer, γ lower convs, ε middle convs, LRP-0 "
                    "upper dense layers", needs_bounds=True)
def seeds(low=None, high=None, gamma: float = 0.25, epsilon: float = 0.25,
          relative_epsilon: bool = True, lower: float = 0.5,
          stabilizer: float = 1e-9) -> Composite:
    """Montavon et al.'s VGG-16 recipe (seeds 000/002).

    Parameters
    ----------
    low, high : bounds of the input (see :func:`lrp_captum.core.rules.zbox_bounds`).
    gamma : γ of the lower convolutions.
    epsilon : ε of the middle convolutions; with ``relative_epsilon`` it is ``ε × RMS(z)``
        of each layer's output (the tutorial's ``0.25·std``).
    lower : fraction of the convolutions (in execution order) counted as "lower".
    """
    low, high = _bounds(low, high, "seeds")
    conv = types.Convolution
    return Composite([
        (First(), ZBoxRule(low, high, stabilizer)),
        *_norms(),
        (types.Activation + types.Identity + (FunctionalActivation,), PassRule()),
        ((Sum,) + types.AvgPool, ProportionalRule(1e-6)),
        (types.BatchNorm, PassRule()),
        (types.MaxPool, ZeroRule()),
        ((GatedProduct,), ZeroRule()),
        (Position(0.0, lower, conv), GammaRule(gamma, stabilizer)),
        (conv, EpsilonRule(epsilon, relative=relative_epsilon)),
        (types.Dense, ZeroRule()),
    ], name="seeds")


@register_composite("epsilon", "LRP-ε on every linear layer")
def epsilon_only(epsilon: float = 1e-6, stabilizer: float = 1e-6) -> Composite:
    return Composite([
        *_norms(),
        (types.Activation + types.Identity + (FunctionalActivation,), PassRule()),
        ((Sum,) + types.AvgPool, ProportionalRule(stabilizer)),
        (types.MaxPool, ZeroRule()),
        ((GatedProduct,), ZeroRule()),
        (types.Linear + types.BatchNorm, EpsilonRule(epsilon)),
    ], name="epsilon")


@register_composite("zero", "LRP-0 everywhere (gradient × input on ReLU networks)")
def zero_only() -> Composite:
    return Composite([
        *_norms(),
        (types.Activation + types.Identity + (FunctionalActivation,), PassRule()),
        (types.Linear + types.BatchNorm + types.AvgPool + types.MaxPool
         + (Sum, GatedProduct), ZeroRule()),
    ], name="zero")


@register_composite("xmil_cnn", "xMIL-LRP carried into a convolutional tile encoder: flat on the "
                                "first layer, z⁺ on convs, ε on dense layers, every bias out of the "
                                "denominators (a tile's pixel map sums to its evidence)")
def xmil_cnn(epsilon: float = 1e-8, stabilizer: float = 1e-6) -> Composite:
    """:func:`epsilon_plus_flat` with the biases out of every denominator, as :func:`xmil` has
    them in the head: ``R_j = Σ_k x_j w⁺_jk / (Σ_j x_j w⁺_jk ± s) R_k`` on convolutions (and
    on a BatchNorm merged into its convolution), LRP-ε without the bias on dense layers, the
    flat rule (which has no bias term) on the first layer. The relevance of a tile's embedding
    reaches its pixels whole, except where an output unit is active through its bias alone
    (``Σ_j x_j w⁺_jk = 0``): that unit's relevance stops there. The default composite of MIL
    pixel maps through a CNN encoder (docs/mil.md, "Maps that add up")."""
    return Composite([
        (First(), FlatRule(stabilizer)),
        *_norms(),
        (types.Activation + types.Identity + (FunctionalActivation,), PassRule()),
        ((Sum,) + types.AvgPool, ProportionalRule(stabilizer)),
        (types.BatchNorm, PassRule()),
        (types.MaxPool, ZeroRule()),
        ((GatedProduct,), ZeroRule()),
        (types.Convolution, ZPlusRule(stabilizer, bias=False)),
        (types.Dense, EpsilonRule(epsilon, bias=False)),
    ], name="xmil_cnn")


# ---------------------------------------------------------------------------------------------
# transformers: rules on the functions of attention, normalisation and activations
# ---------------------------------------------------------------------------------------------
#: normalisation modules that call one function (F.layer_norm, ...) the "norm" rule covers
FUNCTIONAL_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


@dataclass(frozen=True)
class Normalization:
    """Normalisation modules written by hand in libraries, found by their class name
    (``LlamaRMSNorm``, ``T5LayerNorm``, ``Qwen2RMSNorm``)."""

    def __call__(self, name: str, module: nn.Module, info: LayerInfo) -> bool:
        return not isinstance(module, FUNCTIONAL_NORMS) and \
            type(module).__name__.endswith(("LayerNorm", "RMSNorm", "GroupNorm"))

    def __repr__(self) -> str:
        return "normalization layer"


@dataclass(frozen=True)
class NamedActivation:
    """Activation modules written by hand in libraries, found by their class name ending in
    ``Activation`` (Hugging Face's ``NewGELUActivation``, ``QuickGELUActivation``,
    ``FastGELUActivation``: tanh/sigmoid approximations built from ``pow``, ``tanh``, ``*``).
    The identity rule applies to the module as a whole; :class:`~lrp_captum.core.rules.PassRule`
    refuses, naming the module, one that is not elementwise."""

    def __call__(self, name: str, module: nn.Module, info: LayerInfo) -> bool:
        return not isinstance(module, types.Activation) and type(module).__name__.endswith("Activation")

    def __repr__(self) -> str:
        return "activation layer"


@dataclass(frozen=True)
class AnyLayer:
    """Every layer (the last entry of a composite: what no earlier selector matched)."""

    def __call__(self, name: str, module: nn.Module, info: LayerInfo) -> bool:
        return True

    def __repr__(self) -> str:
        return "any other layer"


def _transformer(name: str, dense: LRPRule, softmax: LRPRule, low=None, high=None,
                 stabilizer: float = 1e-6, norm: LRPRule | None = None) -> Composite:
    first = [(First(types.Convolution), ZBoxRule(low, high, stabilizer))] \
        if low is not None and high is not None else []
    norm = norm or ConstantScaleRule()
    return Composite(first + [
        (Op("softmax"), softmax),
        (Op("matmul"), UniformRule()),
        (Op("mul"), UniformRule()),
        (Op("norm"), norm),
        (Op("activation"), PassRule()),
        (Op("linear"), dense),
        # modules that call one function (F.layer_norm, F.gelu, torch.softmax): the
        # function's rule applies, with no second evaluation of the module
        (FUNCTIONAL_NORMS + types.Activation + (nn.Softmax,), FunctionsRule()),
        (Normalization(), norm),
        (NamedActivation(), PassRule()),
        (types.Identity + (FunctionalActivation,), PassRule()),
        # residual sums conserve relevance with the plain gradient (c = R / a is shared)
        ((Sum,), ZeroRule()),
        (types.AvgPool, ProportionalRule(stabilizer)),
        (types.MaxPool, ZeroRule()),
        (types.Linear, dense),
        (AnyLayer(), FunctionsRule()),
    ], name=name)


@register_composite("attnlrp", "AttnLRP for transformers: softmax gradient×input, uniform split "
                               "of attention products, LayerNorm scale constant, identity on "
                               "GELU/SiLU, LRP-0/ε on linear layers")
def attnlrp(epsilon: float = 0.0, low=None, high=None, stabilizer: float = 1e-6) -> Composite:
    """AttnLRP (Achtibat et al., ICML 2024), with LRP-ε on linear layers (``epsilon=0``, the
    plain gradient, by default, as in the authors' efficient implementation: in the engine's
    gradient form LRP-0 needs no division and costs nothing).

    ``low``/``high`` (or ``mean``/``std`` through :func:`get_composite`) put z^B on a ViT's
    patch embedding.
    """
    return _transformer("attnlrp", EpsilonRule(epsilon), GradientRule(), low, high, stabilizer)


@register_composite("attnlrp_gamma", "AttnLRP with sign-aware γ on linear layers (the paper's "
                                     "choice for vision transformers)")
def attnlrp_gamma(gamma: float = 0.25, low=None, high=None,
                  stabilizer: float = 1e-6) -> Composite:
    """AttnLRP with :class:`~lrp_captum.core.rules.GeneralizedGammaRule` on linear layers."""
    return _transformer("attnlrp_gamma", GeneralizedGammaRule(gamma, stabilizer),
                        GradientRule(), low, high, stabilizer)


@register_composite("cp_lrp", "CP-LRP for transformers: attention probabilities and LayerNorm "
                              "scale constant, identity on GELU/SiLU, LRP-0 on linear layers")
def cp_lrp(epsilon: float = 0.0, low=None, high=None, stabilizer: float = 1e-6) -> Composite:
    """CP-LRP (Ali et al., ICML 2022): conservative propagation through attention heads and
    LayerNorm, gradient × input (LRP-0) elsewhere; with every bias zeroed the relevance sums
    to the output. Also xMIL-LRP's rule for attention pooling (Hense et al., NeurIPS 2024)."""
    return _transformer("cp_lrp", EpsilonRule(epsilon), ConstantRule(), low, high, stabilizer)


@register_composite("xmil", "xMIL-LRP for multiple-instance heads as its authors define it: "
                            "attention pooling weights constant, LRP-ε (ε = 1e-8) with the biases "
                            "out of every denominator, CP-LRP in transformer aggregators")
def xmil(epsilon: float = 1e-8, bias: bool = False, stabilizer: float = 1e-6) -> Composite:
    """xMIL-LRP (Hense et al., NeurIPS 2024) for slide-level MIL heads, with the authors'
    defaults (their code: ``gamma=0``, ``eps=1e-8``, ``no_bias=True``).

    The attention weights of attention-MIL pooling (``softmax(...) @ h``) are constants (the
    AH rule of Ali et al. 2022), so the bag's logit is redistributed over the tile embeddings
    as signed evidence; a transformer aggregator (TransMIL-like) gets the CP-LRP rules. Linear
    and convolutional layers take LRP-ε with their bias left out of the denominator
    (``R_j = Σ_k x_j w_jk / (Σ_j x_j w_jk ± ε) R_k``): the slide logit, bias included, is
    shared out among the tiles, and on an attention-MIL head the tile evidence sums to the
    logit up to ε. ``bias=True`` keeps the biases in the denominators (they absorb their share:
    the registered ``xmil_bias_kept``).
    """
    return _transformer("xmil", EpsilonRule(epsilon, bias=bias), ConstantRule(), None, None,
                        stabilizer)


@register_composite("xmil_bias_kept", "xMIL-LRP with the biases in the denominators (the "
                                      "authors' no_bias=False variant): biases absorb relevance")
def xmil_bias_kept(epsilon: float = 1e-8, stabilizer: float = 1e-6) -> Composite:
    """:func:`xmil` with ``bias=True``: ``R_j = Σ_k x_j w_jk / (z_k ± ε) R_k``, the biases'
    shares stay with them, so the tile evidence sums to less than the logit."""
    return _transformer("xmil_bias_kept", EpsilonRule(epsilon), ConstantRule(), None, None,
                        stabilizer)


@register_composite("xmil_vit", "xMIL-LRP carried into a transformer tile encoder: CP-LRP with the "
                                "biases of linear layers and the shifts of LayerNorms out of the "
                                "denominators")
def xmil_vit(epsilon: float = 1e-8, stabilizer: float = 1e-6) -> Composite:
    """:func:`xmil` with the LayerNorm shifts out of the denominators as well
    (``ConstantScaleRule(bias=False)``): a Vision Transformer's relevance reaches its pixels
    except for the share of what is added to the tokens rather than computed from the pixels
    (the class and register tokens' own embeddings, the position embeddings). The default
    composite of MIL pixel maps through a transformer encoder (docs/mil.md, "Maps that add
    up")."""
    return _transformer("xmil_vit", EpsilonRule(epsilon, bias=False), ConstantRule(), None, None,
                        stabilizer, norm=ConstantScaleRule(bias=False))
