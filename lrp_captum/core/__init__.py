"""The LRP core: rules, composites and canonizers (declarations), the engine that compiles
and runs them, and Captum's ``LRP`` / ``LayerLRP`` on top (:mod:`.attribution`).

Layers, each importing only those below it (pyproject.toml's import-linter contract "core"):
``attribution`` > ``engine`` > ``canonizers`` > ``composites`` > ``rules`` > ``layers`` >
``linear_ops`` > ``layer_types | model_mode | normalization | op_families``.

The public names are exported by :mod:`lrp_captum` itself (``from lrp_captum import LRP``).
"""
# the rules import no engine code: the engine gives them their Captum path when its table of
# kinds of declaration is imported, here, before any rule can be used
from lrp_captum.core.engine import declaration_kinds as _declaration_kinds  # noqa: F401
