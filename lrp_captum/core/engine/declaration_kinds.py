"""The table of kinds of declaration: what each one means on every path of the engine.

A rule declares what it does (:meth:`lrp_captum.core.rules.LRPRule.declaration`): a
:class:`~lrp_captum.core.rules.Terms` rule, or a declaration without terms (``Pass``,
``Gradient``, ``Constant``, ``Uniform``, ``ConstantScale``, ``Functions``). Each *kind* of
declaration (its class) has one row in :data:`KINDS`:

============= ===================== ================== ======================== ===== ============
kind          Captum path           hook path          functions (families)     fused conserves
============= ===================== ================== ======================== ===== ============
Terms         term by term          ε scaling / terms  linear: dense kernel     yes   yes (1)
Pass          R_in = R_out          R_in = R_out       activation: identity     no    yes
Gradient      gradient × input      plain gradient     every family but linear  no    no
Constant      nothing               detached output    softmax, products: none  no    yes (2)
Uniform       gradient × input / n  gradient / n       matmul, mul: split       no    yes
ConstantScale scale held constant   scale constant     norm: scale constant     no    yes (1)
Functions     gradient × input      the functions'     (none)                   no    yes
============= ===================== ================== ======================== ===== ============

(1) up to the biases and stabilisers, which absorb relevance; (2) the relevance stays with the
other factors of the product (CP-LRP). An imperative rule (no declaration, its own
``relevance()``) is :data:`IMPERATIVE`. Adding a kind of declaration is one
:func:`register_kind` call with its functions (see docs/architecture.md).

Importing this module also gives the declarations their Captum path
(:func:`lrp_captum.core.rules.register_captum_path`): the rules import no engine code, and
:mod:`lrp_captum.core` imports this module, so the path is always there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import torch
from torch import Tensor, nn

from lrp_captum.core.engine import fused, functional, hook_path, reference
from lrp_captum.core.engine.autograd import captum_relevance_output
from lrp_captum.core.op_families import OP_FAMILIES
from lrp_captum.core.rules import (CaptumPath, Constant, ConstantScale, Functions, Gradient, Pass,
                                   Terms, Uniform, register_captum_path)

__all__ = ["DeclarationKind", "FusedPath", "KINDS", "IMPERATIVE", "register_kind", "kind_of",
           "declared_relevance"]


@dataclass(frozen=True)
class FusedPath:
    """A layer under this kind as one autograd function (:mod:`lrp_captum.core.engine.fused`).

    ``fusable(declaration, module) -> bool``: the layer has a fused form (for some inputs);
    ``forward(declaration, kernels, module, inputs, relu, sink) -> Tensor or None``: the
    layer's output, None where the kernel does not apply to these inputs.
    """
    fusable: Callable
    forward: Callable


def _never(declaration) -> bool:
    return False


@dataclass(frozen=True)
class DeclarationKind:
    """What one kind of declaration means on every path of the engine.

    Attributes
    ----------
    relevance : callable
        Captum's path and the reference: ``(declaration, module, inputs, output,
        relevance_out) -> input relevances`` (:mod:`lrp_captum.core.engine.reference`).
    hook_output : callable
        The hook path: ``(compiled, module, inputs, output) -> Tensor or None``, a replacement
        of the layer's output whose gradient applies the rule to ``c = R / a``; None where the
        plain gradient is the rule (:mod:`lrp_captum.core.engine.hook_path`).
    functions : mapping
        ``{family: (compiled, func, args, kwargs) -> output}``: the rule on the functions of a
        family (:mod:`lrp_captum.core.engine.functional`); a family not listed is not covered.
    fused : FusedPath or None
        The layer as one autograd function, for kinds that have one.
    share : callable or None
        ``n -> float``: the part of a product's gradient each of its ``n`` relevance-carrying
        factors gets under this rule; attention combines the softmax's and the products'.
    nonconservative : str
        Why relevance is not conserved by design (the conservation diagnosis quotes it); empty
        for kinds that conserve it up to biases and stabilisers.
    passes_unchanged : bool
        ``R_in = R_out``: right on elementwise layers only (the diagnosis names the others).
    covered_by_functions : bool
        The module has no rule of its own: the rules of the functions it calls apply.
    direct : callable
        ``declaration -> bool``: some relevance does not scale with the input (flat, w², z^B);
        the engine collects it exactly at the input layer.
    """
    relevance: Callable
    hook_output: Callable
    functions: Mapping[str, Callable] = field(default_factory=dict)
    fused: Optional[FusedPath] = None
    share: Optional[Callable[[int], float]] = None
    nonconservative: str = ""
    passes_unchanged: bool = False
    covered_by_functions: bool = False
    direct: Callable = _never


#: the families the plain gradient can be the rule of (on F.linear it is LRP-0, a term rule)
_GRADIENT_FAMILIES = tuple(family for family in OP_FAMILIES if family != "linear")

#: ``{declaration class: DeclarationKind}``
KINDS: dict = {
    Terms: DeclarationKind(
        relevance=reference.terms_relevance, hook_output=hook_path.terms_output,
        functions={"linear": functional.dense_call},
        fused=FusedPath(fused.fusable, fused.fused_forward),
        direct=lambda declaration: declaration.direct),
    Pass: DeclarationKind(
        relevance=reference.pass_relevance, hook_output=hook_path.pass_output,
        functions={"activation": functional.identity_call}, passes_unchanged=True),
    Gradient: DeclarationKind(
        relevance=reference.gradient_relevance, hook_output=hook_path.plain_gradient,
        functions={family: functional.plain_call for family in _GRADIENT_FAMILIES},
        share=lambda n: 1.0,
        nonconservative="gradient × input (AttnLRP's Taylor rule for the softmax) leaves out "
                        "the Taylor remainder; CP-LRP's constant attention conserves relevance"),
    Constant: DeclarationKind(
        relevance=reference.no_relevance, hook_output=hook_path.constant_output,
        functions={"softmax": functional.constant_call, "matmul": functional.split_product,
                   "mul": functional.split_product}, share=lambda n: 0.0),
    Uniform: DeclarationKind(
        relevance=reference.uniform_relevance, hook_output=hook_path.uniform_output,
        functions={"matmul": functional.split_product, "mul": functional.split_product},
        share=lambda n: 1.0 / n),
    ConstantScale: DeclarationKind(
        relevance=reference.constant_scale_relevance,
        hook_output=hook_path.normalization_output,
        functions={"norm": functional.constant_scale_call}),
    Functions: DeclarationKind(
        relevance=reference.gradient_relevance, hook_output=hook_path.plain_gradient,
        covered_by_functions=True),
}


def _imperative_relevance(declaration, module, inputs, output, relevance_out):
    raise NotImplementedError("an imperative rule computes its relevance in its own relevance()")


#: a rule without a declaration: its own ``relevance()`` runs, on the hook path and in Captum
IMPERATIVE = DeclarationKind(relevance=_imperative_relevance, hook_output=hook_path.own_relevance)


def register_kind(declaration_type: type, kind: DeclarationKind) -> None:
    """Give a new kind of declaration its behaviour on every path.

    Parameters
    ----------
    declaration_type : type
        The class of the declarations (what a rule's ``declaration()`` returns).
    kind : DeclarationKind
    """
    if not isinstance(declaration_type, type):
        raise TypeError(f"register a class of declarations, got {declaration_type!r}")
    KINDS[declaration_type] = kind


def kind_of(declaration) -> DeclarationKind:
    """The row of ``declaration``'s kind (:data:`IMPERATIVE` for None)."""
    if declaration is None:
        return IMPERATIVE
    for cls in type(declaration).__mro__:
        kind = KINDS.get(cls)
        if kind is not None:
            return kind
    raise TypeError(f"the engine does not know declarations of type "
                    f"{type(declaration).__name__}: give them their behaviour with "
                    "lrp_captum.core.engine.declaration_kinds.register_kind")


def declared_relevance(declaration, module: nn.Module, inputs: tuple, output: Tensor,
                       relevance_out: Tensor) -> tuple:
    """Input relevances of ``module`` under ``declaration`` (Captum's path).

    Parameters
    ----------
    declaration : a declaration of a registered kind
    module : nn.Module
    inputs : tuple
        The layer's inputs, e.g. ``(N, C_in, H, W)`` (values that are not tensors are left out).
    output : Tensor
        The layer's output.
    relevance_out : Tensor
        Relevance of the output, shaped like ``output``.

    Returns
    -------
    tuple of Tensor
        One relevance tensor per tensor input, shaped like it.
    """
    inputs = tuple(x for x in inputs if torch.is_tensor(x))
    return kind_of(declaration).relevance(declaration, module, inputs, output, relevance_out)


register_captum_path(CaptumPath(relevance=declared_relevance,
                                relevance_output=captum_relevance_output))
