"""The hook path: a rule attached to a layer's output.

The engine propagates the relevance per unit of value, ``c = R / a``, as the gradient. On the
hook path a layer runs its own forward pass and a forward hook replaces its output with one of
the same value whose backward pass applies the rule to ``c``; None where the plain gradient
already is the rule. Every function here has the signature ``(compiled, module, inputs, output)
-> Tensor or None``, ``compiled`` being the layer's
:class:`~lrp_captum.core.engine.compiler.CompiledRule`; the table of kinds
(:mod:`lrp_captum.core.engine.declaration_kinds`) says which one a declaration uses. The hook
path serves every layer without a fused form, ``canonizers=None`` and ``LayerLRP``'s probes.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from lrp_captum.core.engine.autograd import PassRatio, ScaleGradient, relevance_output
from lrp_captum.core.engine.constant_scale import constant_scale_output, without_shift
from lrp_captum.core.engine.numerics import stabilize
from lrp_captum.core.engine.reference import pass_relevance, stabilizer_for, terms_relevance

__all__ = ["GRADIENT_IS_PASS", "plain_gradient", "own_relevance", "pass_output",
           "constant_output", "uniform_output", "normalization_output",
           "terms_output"]

#: elementwise layers whose gradient already passes relevance unchanged (f(z)/z = f'(z))
GRADIENT_IS_PASS = (nn.ReLU, nn.LeakyReLU, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                    nn.Dropout3d, nn.AlphaDropout, nn.Flatten, nn.Unflatten)


def plain_gradient(compiled, module: nn.Module, inputs: tuple, output: Tensor) -> None:
    """The plain gradient is the rule (gradient × input; inside a module covered by
    functions, the rules of the functions it calls)."""
    return None


def own_relevance(compiled, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
    """An imperative rule: its own ``relevance`` runs in the backward pass."""
    return relevance_output(compiled.rule.relevance, module, inputs, output)


def pass_output(compiled, module: nn.Module, inputs: tuple,
                output: Tensor) -> Optional[Tensor]:
    """``R_in = R_out``; nothing to do where the layer's gradient already passes it."""
    if isinstance(module, GRADIENT_IS_PASS):
        return None
    carriers = [t for t in inputs if torch.is_tensor(t) and t.requires_grad]
    if len(carriers) == 1 and carriers[0] is inputs[0] and inputs[0].shape == output.shape:
        return PassRatio.apply(output.detach(), inputs[0])  # elementwise: one factor kept
    return relevance_output(_declared(pass_relevance, compiled.declaration), module, inputs,
                            output)


def constant_output(compiled, module: nn.Module, inputs: tuple, output: Tensor) -> Tensor:
    """The output is a constant: nothing flows through it."""
    return output.detach()


def uniform_output(compiled, module: nn.Module, inputs: tuple,
                   output: Tensor) -> Optional[Tensor]:
    """Each of ``n`` relevance-carrying inputs takes ``1/n`` of the gradient."""
    factors = sum(1 for t in inputs if torch.is_tensor(t) and t.requires_grad)
    return None if factors < 2 else ScaleGradient.apply(
        output, torch.tensor(1.0 / factors, dtype=output.dtype, device=output.device))


def normalization_output(compiled, module: nn.Module, inputs: tuple,
                               output: Tensor) -> Tensor:
    """The normalisation recomputed with its scale detached (its shift out of the denominator
    where the rule says ``bias=False``)."""
    out = constant_scale_output(module, inputs, output)
    if getattr(compiled.declaration, "bias", True):
        return out
    shift = getattr(module, "bias", None)
    return without_shift(out, output.detach(), shift if torch.is_tensor(shift) else None)


def terms_output(compiled, module: nn.Module, inputs: tuple, output: Tensor) -> Optional[Tensor]:
    """A term rule: LRP-0 is the plain gradient, LRP-ε a rescaling of it by ``z / (z ± ε)``;
    every other declaration is evaluated term by term in the backward pass."""
    decl = compiled.declaration
    if decl.proportional:
        if decl.stabilizer == 0 and not decl.relative:
            return None
        z = output.detach()
        return ScaleGradient.apply(output, z / stabilize(z, stabilizer_for(decl, z)))
    return relevance_output(_declared(terms_relevance, decl), module, inputs, output,
                            sink=compiled.sink)


def _declared(relevance: Callable, decl) -> Callable:
    """``relevance`` with its declaration bound, as the autograd function calls it."""
    def bound(module, inputs, output, relevance_out):
        return relevance(decl, module, inputs, output, relevance_out)
    return bound
