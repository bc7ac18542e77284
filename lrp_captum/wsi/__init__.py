"""Whole-slide images: tiling, tissue masks, tile models, the slide pipeline and its outputs,
and slide-level MIL (``lrp_captum.wsi.mil``). Submodules are imported on use."""
