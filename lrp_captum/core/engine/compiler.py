"""One rule on one layer, compiled from its declaration into the paths that run it.

:class:`CompiledRule` answers, for the rule attached to one layer:

* :meth:`~CompiledRule.fusable` / :meth:`~CompiledRule.fused_forward` -- the layer as one
  autograd function (:mod:`lrp_captum.core.engine.fused`);
* :meth:`~CompiledRule.hook_output` -- the hook path: a replacement of the layer's output whose
  backward pass applies the rule to ``c = R / a`` (:mod:`lrp_captum.core.engine.hook_path`);
* :attr:`~CompiledRule.kind` -- the row of the declaration's kind in the table
  (:mod:`lrp_captum.core.engine.declaration_kinds`), which also holds the rule's behaviour on
  functions and the properties the conservation diagnosis reads.

Every choice is made from the declaration, never from the rule's class.
"""
from __future__ import annotations

from typing import Callable, Optional

from torch import Tensor, nn

from lrp_captum.core.engine.declaration_kinds import DeclarationKind, kind_of
from lrp_captum.core.rules import LRPRule, effective_declaration

__all__ = ["CompiledRule"]


class CompiledRule:
    """The rule of one layer, ready to run.

    Attributes
    ----------
    rule : LRPRule
    declaration : a declaration, or None
        None for an imperative rule (it runs through its own ``relevance``).
    kind : DeclarationKind
        What the declaration means on every path.
    sink : callable or None
        Set by the engine during a call for rules whose relevance does not scale with the
        input (:attr:`direct`): receives ``(inputs, relevances)`` so that relevance at inputs
        that are exactly 0 is not lost in the ratio ``R / x``.
    """

    def __init__(self, rule: LRPRule) -> None:
        self.rule = rule
        self.declaration = effective_declaration(rule)
        self.kind: DeclarationKind = kind_of(self.declaration)
        self.sink: Optional[Callable] = None
        self._kernels: dict = {}

    @property
    def covered_by_functions(self) -> bool:
        """The module has no rule of its own: the rules of the functions it calls apply."""
        return self.kind.covered_by_functions

    @property
    def direct(self) -> bool:
        """Some of the rule's relevance does not scale with the input (flat, w², z^B)."""
        return self.kind.direct(self.declaration)

    # -- fused path ----------------------------------------------------------------------------
    def fusable(self, module: nn.Module) -> bool:
        return self.kind.fused is not None and self.kind.fused.fusable(self.declaration, module)

    def fused_forward(self, module: nn.Module, inputs: tuple, relu: bool) -> Optional[Tensor]:
        return self.kind.fused.forward(self.declaration, self._kernels, module, inputs, relu,
                                       self.sink)

    # -- hook path ----------------------------------------------------------------------------
    def hook_output(self, module: nn.Module, inputs: tuple, output: Tensor) -> Optional[Tensor]:
        """Replacement output whose gradient applies the rule (gradient = ``R / a``), or None
        where the plain gradient already is the rule."""
        return self.kind.hook_output(self, module, inputs, output)

    def __repr__(self) -> str:
        return f"CompiledRule({self.rule!r})"
