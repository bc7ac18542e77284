"""The LRP core: rules, composites and canonizers (declarations), the engine that compiles
and runs them, and Captum's ``LRP`` / ``LayerLRP`` on top (:mod:`.attribution`).

The public names are exported by :mod:`lrp_captum` itself (``from lrp_captum import LRP``).
"""
