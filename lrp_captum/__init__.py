"""lrp-captum: Layer-wise Relevance Propagation for PyTorch, native to Captum.

>>> from lrp_captum import LRP
>>> attribution = LRP(model, composite="epsilon_gamma_box").attribute(x, target=3)
"""
from lrp_captum import deprecated_paths
from lrp_captum.core.attribution import LRP, OUTPUT_MODES, LayerLRP
from lrp_captum.core.canonizers import CanonizationError, canonize
from lrp_captum.core.composites import (Composite, NoRuleError, UnknownCompositeError, composite_needs_bounds,
                                        get_composite, list_composites)
from lrp_captum.core.normalization import IMAGENET_MEAN, IMAGENET_STD
from lrp_captum.core.rules import (AlphaBetaRule, EpsilonRule, FlatRule, GammaRule, GeneralizedGammaRule,
                                   LRPRule, PassRule, ProportionalRule, TermRule, WSquareRule, ZBoxRule,
                                   ZeroRule, ZPlusRule, zbox_bounds)

__version__ = "0.1.0"

__all__ = [
    "LRP", "LayerLRP", "OUTPUT_MODES", "canonize", "CanonizationError", "Composite",
    "NoRuleError", "UnknownCompositeError", "get_composite", "list_composites",
    "composite_needs_bounds", "IMAGENET_MEAN", "IMAGENET_STD", "ZeroRule", "EpsilonRule", "GammaRule",
    "GeneralizedGammaRule", "AlphaBetaRule", "ZPlusRule", "ZBoxRule", "FlatRule", "WSquareRule",
    "PassRule", "ProportionalRule", "zbox_bounds", "LRPRule", "TermRule",
]

deprecated_paths.install()
