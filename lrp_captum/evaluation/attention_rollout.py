"""Attention rollout and raw attention: the attention-based explanations LRP is compared with.

* **Attention rollout** (Abnar & Zuidema, ACL 2020): average each layer's attention over its
  heads, add the identity for the residual connection and renormalise the rows,
  ``Â = (mean_h A + I) / 2``, and multiply the layers, ``R = Â_L ⋯ Â_2 Â_1``. The class token's
  row of ``R`` says how much each input token flows into the class token.
* **Raw attention**: the class token's row of the last layer's attention, averaged over heads.

Both are class-agnostic (the same map for every target) and live on the token grid; for images
:func:`token_map_to_pixels` spreads each patch token's score over the patch's pixels. The
attention probabilities come from :func:`lrp_captum.evaluation.attention_maps.attention_maps`, so any
transformer it records works.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lrp_captum.evaluation.attention_maps import attention_maps

__all__ = ["attention_rollout", "raw_attention", "token_map_to_pixels", "rollout_image_map",
           "raw_attention_image_map"]


def _check_maps(maps: list[Tensor]) -> None:
    if not maps:
        raise ValueError("no attention maps given")
    shapes = {tuple(a.shape[-2:]) for a in maps}
    if len(shapes) != 1 or any(a.shape[-1] != a.shape[-2] for a in maps):
        raise ValueError(f"attention rollout needs self-attention maps of one (L, L) shape in "
                         f"every layer, got {sorted(shapes)}")


def attention_rollout(maps: list[Tensor], residual: bool = True) -> Tensor:
    """Attention rollout (Abnar & Zuidema 2020) over the layers of ``maps``.

    Parameters
    ----------
    maps : list of Tensor
        ``(N, H, L, L)`` attention probabilities per layer, first layer first (as
        :func:`~lrp_captum.evaluation.attention_maps.attention_maps` returns them).
    residual : bool
        Add the identity and renormalise (``(Ā + I) / 2``) before multiplying, for the
        residual connections, as the paper does.

    Returns
    -------
    Tensor
        ``(N, L, L)``, float64 (products of many row-stochastic matrices lose precision in
        float32); row ``i`` is how much each input token flows into token ``i`` of the output.
    """
    _check_maps(maps)
    length = maps[0].shape[-1]
    eye = torch.eye(length, dtype=torch.float64, device=maps[0].device)
    rollout = eye.expand(maps[0].shape[0], length, length)
    for a in maps:
        a = a.double().mean(1)
        if residual:
            a = a + eye
            a = a / a.sum(-1, keepdim=True)
        rollout = a @ rollout
    return rollout


def raw_attention(maps: list[Tensor], layer: int = -1) -> Tensor:
    """One layer's attention averaged over heads, ``(N, L, S)``."""
    if not maps:
        raise ValueError("no attention maps given")
    return maps[layer].mean(1)


def token_map_to_pixels(scores: Tensor, image_shape: tuple[int, int]) -> Tensor:
    """Patch-token scores spread over the pixels of their patches.

    Parameters
    ----------
    scores : Tensor
        ``(N, T)``, one score per patch token in row-major patch order (prefix tokens such as
        the class token removed).
    image_shape : (int, int)
        ``(H, W)`` of the input image in pixels; the patches tile it, ``T = (H / p)(W / p)``.

    Returns
    -------
    Tensor
        ``(N, H, W)``: every pixel carries its patch's score.
    """
    height, width = image_shape
    tokens = scores.shape[1]
    side = math.sqrt(height * width / tokens)
    rows, cols = round(height / side), round(width / side)
    if rows * cols != tokens or height % rows or width % cols:
        raise ValueError(f"{tokens} patch tokens do not tile a {height}x{width} image into "
                         f"square patches; is num_prefix_tokens right?")
    grid = scores.reshape(-1, 1, rows, cols)
    pixels = grid.repeat_interleave(height // rows, 2).repeat_interleave(width // cols, 3)
    return pixels[:, 0]


def rollout_image_map(model: nn.Module, images: Tensor, num_prefix_tokens: int = 1,
                      residual: bool = True) -> Tensor:
    """Attention rollout of an image transformer, as a pixel map.

    Parameters
    ----------
    model : nn.Module
        A ViT-like model whose first ``num_prefix_tokens`` tokens are the class token (first)
        and other non-patch tokens (distillation token, registers) and the rest the patches.
    images : Tensor
        ``(N, C, H, W)``.
    num_prefix_tokens : int
        1 for ViT (timm, torchvision, Hugging Face), 2 for DeiT with distillation token,
        ``model.num_prefix_tokens`` for timm models.

    Returns
    -------
    Tensor
        ``(N, H, W)``: the class token's rollout row over the patches, per pixel.
    """
    rollout = attention_rollout(attention_maps(model, images), residual)
    cls_row = rollout[:, 0, num_prefix_tokens:].to(images.dtype)
    return token_map_to_pixels(cls_row, tuple(images.shape[-2:]))


def raw_attention_image_map(model: nn.Module, images: Tensor, num_prefix_tokens: int = 1,
                            layer: int = -1) -> Tensor:
    """The class token's attention to the patches in one layer (default the last), averaged
    over heads, as an ``(N, H, W)`` pixel map (arguments as :func:`rollout_image_map`)."""
    attention = raw_attention(attention_maps(model, images), layer)
    cls_row = attention[:, 0, num_prefix_tokens:].to(images.dtype)
    return token_map_to_pixels(cls_row, tuple(images.shape[-2:]))
