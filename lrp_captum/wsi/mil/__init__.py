"""Slide-level multiple-instance learning (MIL) over tile embeddings, explained tile by tile.

- :mod:`.labelled_cohort` -- the table of a cohort with slide labels (and lesion masks) that
  training and the faithfulness checks read (``lrp_captum.demos.mil_cohort`` writes a synthetic one);
- :mod:`.encoders` -- tile encoders (demo CNN trunk, torchvision, timm) and their identity;
- :mod:`.embeddings` -- embed a slide's tissue tiles once, cached in zarr with the tile grid;
- :mod:`.heads` -- gated attention-MIL and a small transformer aggregator (plain PyTorch);
- :mod:`.head_files` -- save/load heads with the encoder they belong to;
- :mod:`.training` -- train a head on slide labels only;
- :mod:`.evidence` -- signed evidence per tile: xMIL-LRP and the baselines;
- :mod:`.pixel_maps` -- a tile's evidence continued into the encoder (LRP);
- :mod:`.explain` -- one call from a slide to slide-aligned outputs, written through the slide
  pipeline's result folder (:mod:`lrp_captum.wsi.result_folder`); :mod:`.results` reads them back;
- :mod:`.faithfulness` -- per-tile AUROC against lesion masks and patch-dropping AOPC.
"""
