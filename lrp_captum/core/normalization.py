"""Input normalisations that models are trained with, defined once.

``x = (pixel - mean) / std`` per channel, pixels in ``[0, 1]``. Pass them to
:func:`lrp_captum.get_composite` (``mean=..., std=...``) for composites that need the input bounds.
"""
from __future__ import annotations

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD"]

#: per-channel (R, G, B) mean of ImageNet, used by torchvision and timm models
IMAGENET_MEAN = (0.485, 0.456, 0.406)
#: per-channel (R, G, B) standard deviation of ImageNet
IMAGENET_STD = (0.229, 0.224, 0.225)
