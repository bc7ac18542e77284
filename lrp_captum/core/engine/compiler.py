"""One rule on one layer, compiled from its declaration into the paths that run it.

:class:`CompiledRule` answers, for the rule attached to one layer:

* :meth:`~CompiledRule.fusable` / :meth:`~CompiledRule.fused_forward` -- the layer as one
  autograd function (:mod:`lrp_captum.core.engine.fused`);
* :meth:`~CompiledRule.hook_output` -- the hook path: a replacement of the layer's output whose
  backward pass applies the rule to ``c = R / a``.

Captum's path (:meth:`lrp_captum.core.rules.LRPRule.relevance`) evaluates the same declaration
term by term (:mod:`lrp_captum.core.engine.reference`). Every choice below is made from the
declaration, never from the rule's class.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from lrp_captum.core.rules import (Constant, ConstantScale, Functions, Gradient, LRPRule, Pass, Terms,
                                   Uniform)
from lrp_captum.core.engine.autograd import ScaleGradient, relevance_output
from lrp_captum.core.engine.fused import fusable, fused_forward
from lrp_captum.core.linear_ops import UnsupportedLayerError, is_linear_layer
from lrp_captum.core.engine.numerics import stabilize
from lrp_captum.core.engine.reference import declared_relevance, stabilizer_for

__all__ = ["CompiledRule", "check_rule", "GRADIENT_IS_PASS"]

#: elementwise layers whose gradient already passes relevance unchanged (f(z)/z = f'(z))
GRADIENT_IS_PASS = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                    nn.Dropout3d, nn.AlphaDropout, nn.Flatten, nn.Unflatten)


def _declaration(rule: LRPRule):
    """The rule's declaration, or None for an imperative rule (one that overrides
    ``relevance``: its own code must run, so its declaration, if any, is not used)."""
    if type(rule).relevance is not LRPRule.relevance:
        return None
    return rule.declaration()


def check_rule(rule: LRPRule, module: nn.Module) -> None:
    """Raise :class:`UnsupportedLayerError` if ``rule`` cannot apply to ``module``."""
    decl = _declaration(rule)
    if isinstance(decl, Terms) and not decl.proportional and not is_linear_layer(module):
        raise UnsupportedLayerError(
            f"{rule!r} needs a linear layer (Linear, Conv, ConvTranspose, BatchNorm, "
            f"AvgPool) but got {type(module).__name__}")


class CompiledRule:
    """The rule of one layer, ready to run.

    Attributes
    ----------
    rule : LRPRule
    declaration : Terms, Pass or None
        None for an imperative rule (it runs through its own ``relevance``).
    sink : callable or None
        Set by the engine during a call for rules whose relevance does not scale with the
        input (``declaration.direct``): receives ``(inputs, relevances)`` so that relevance
        at inputs that are exactly 0 is not lost in the ratio ``R / x``.
    """

    def __init__(self, rule: LRPRule) -> None:
        self.rule = rule
        self.declaration = _declaration(rule)
        self.sink: Optional[Callable] = None
        self._kernels: dict = {}

    @property
    def covered_by_functions(self) -> bool:
        """The module has no rule of its own: the rules of the functions it calls apply."""
        return isinstance(self.declaration, Functions)

    @property
    def direct(self) -> bool:
        return isinstance(self.declaration, Terms) and self.declaration.direct

    # -- fused path ----------------------------------------------------------------------------
    def fusable(self, module: nn.Module) -> bool:
        return fusable(self.declaration, module)

    def fused_forward(self, module: nn.Module, inputs: tuple, relu: bool) -> Optional[Tensor]:
        return fused_forward(self.declaration, self._kernels, module, inputs, relu, self.sink)

    # -- hook path ----------------------------------------------------------------------------
    def hook_output(self, module: nn.Module, inputs: tuple, output: Tensor) -> Optional[Tensor]:
        """Replacement output whose gradient applies the rule (gradient = ``R / a``), or None
        where the plain gradient already is the rule."""
        decl = self.declaration
        if decl is None:
            return relevance_output(self.rule.relevance, module, inputs, output)
        if isinstance(decl, Pass):
            if isinstance(module, GRADIENT_IS_PASS):
                return None
            return relevance_output(_declared(decl), module, inputs, output)
        if isinstance(decl, (Gradient, Functions)):
            return None  # the plain gradient (and, inside, the rules of the functions)
        if isinstance(decl, Constant):
            return output.detach()
        if isinstance(decl, Uniform):
            factors = sum(1 for t in inputs if torch.is_tensor(t) and t.requires_grad)
            return None if factors < 2 else ScaleGradient.apply(
                output, torch.tensor(1.0 / factors, dtype=output.dtype, device=output.device))
        if isinstance(decl, ConstantScale):
            from lrp_captum.core.engine.functional import constant_scale_output
            return constant_scale_output(module, inputs, output)
        if decl.proportional:
            if decl.stabilizer == 0 and not decl.relative:
                return None  # LRP-0 is the plain gradient of the layer
            z = output.detach()
            return ScaleGradient.apply(output, z / stabilize(z, stabilizer_for(decl, z)))
        # every other term rule: its declaration evaluated term by term in the backward pass
        return relevance_output(_declared(decl), module, inputs, output, sink=self.sink)

    def __repr__(self) -> str:
        return f"CompiledRule({self.rule!r})"


def _declared(decl) -> Callable:
    def relevance(module, inputs, output, relevance_out):
        return declared_relevance(decl, module, inputs, output, relevance_out)
    return relevance
