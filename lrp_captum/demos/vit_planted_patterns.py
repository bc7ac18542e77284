"""Explanations of a Vision Transformer scored against the planted-pattern ground truth.

The methods people use on ViTs, each as an explainer ``explain(model, images, target)`` (the
signature of :mod:`lrp_captum.evaluation.ranking`), and the localisation scores of their maps against the
pattern masks of :mod:`lrp_captum.demos.planted_patterns`:

* LRP: ``attnlrp``, ``attnlrp_gamma``, ``cp_lrp`` (pixel relevance through the patch embedding);
* Captum: ``input_x_gradient``, ``integrated_gradients`` (32 steps, zero baseline);
* attention: ``attention_rollout`` (Abnar & Zuidema 2020) and ``raw_attention`` (the class
  token's last-layer attention, mean over heads), both one score per patch and class-agnostic
  (:mod:`lrp_captum.evaluation.attention_rollout`);
* ``random``: Gaussian noise, the chance level.

Scores (:func:`localisation_scores`), per image: the relevance mass accuracy (share of positive
relevance inside the mask) and the pointing game (is the maximum inside the mask), each on
pixels and on patches. On patches, every map is summed over the ViT's patches and the mask
becomes the patches it touches; this is the resolution attention-based maps have, so it
compares every method at the resolution of the coarsest.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lrp_captum.evaluation import metrics as M
from lrp_captum.evaluation import ranking as S
from lrp_captum.evaluation.attention_rollout import raw_attention_image_map, rollout_image_map

__all__ = ["VIT_METHODS", "SCORES", "vit_explainers", "patch_mask", "localisation_scores",
           "score_explainers"]

VIT_METHODS = ("attnlrp", "attnlrp_gamma", "cp_lrp", "input_x_gradient", "integrated_gradients",
               "attention_rollout", "raw_attention", "random")
SCORES = ("mass_accuracy", "mass_accuracy_patches", "pointing_game", "pointing_game_patches")


def vit_explainers(names: Sequence[str] = VIT_METHODS, num_prefix_tokens: int = 1,
                   seed: int = 0) -> dict[str, M.Explainer]:
    """The methods of the module docstring, by name.

    Parameters
    ----------
    names : sequence of str
        A subset of :data:`VIT_METHODS`.
    num_prefix_tokens : int
        Tokens before the patch tokens (1: the class token), for the attention maps.
    seed : int
        Seed of the ``random`` explainer.
    """
    unknown = [n for n in names if n not in VIT_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(VIT_METHODS)}")

    def attention(map_fn):
        def explain(model: nn.Module, images: Tensor, target: Tensor) -> Tensor:
            return map_fn(model, images, num_prefix_tokens)  # class-agnostic: target unused
        return explain

    table = {
        "attention_rollout": lambda: attention(rollout_image_map),
        "raw_attention": lambda: attention(raw_attention_image_map),
        "random": lambda: S.random_explainer(seed),
        "input_x_gradient": lambda: S.captum_explainers(["input_x_gradient"])["input_x_gradient"],
        "integrated_gradients":
            lambda: S.captum_explainers(["integrated_gradients"])["integrated_gradients"],
    }
    return {n: table[n]() if n in table else S.lrp_explainer(n) for n in names}


def patch_mask(masks: Tensor, patch_size: int) -> Tensor:
    """``(N, H/p, W/p)`` bool: the patches that contain any pixel of ``masks`` ``(N, H, W)``."""
    return F.max_pool2d(masks.float().unsqueeze(1), patch_size)[:, 0].bool()


def localisation_scores(attributions: Tensor, masks: Tensor, patch_size: int) -> dict[str, Tensor]:
    """The scores of :data:`SCORES`, per image.

    Parameters
    ----------
    attributions : Tensor
        ``(N, C, H, W)`` (summed over channels) or ``(N, H, W)``.
    masks : Tensor
        ``(N, H, W)`` bool ground truth.
    patch_size : int
        Side of the ViT's patches in pixels.

    Returns
    -------
    dict
        score name -> ``(N,)`` tensor.
    """
    relevance = attributions.sum(1) if attributions.dim() == 4 else attributions
    relevance = relevance.detach().float()
    cells = F.avg_pool2d(relevance.unsqueeze(1), patch_size)[:, 0] * patch_size ** 2
    cell_masks = patch_mask(masks, patch_size)
    return {"mass_accuracy": M.relevance_mass_accuracy(relevance, masks),
            "mass_accuracy_patches": M.relevance_mass_accuracy(cells, cell_masks),
            "pointing_game": M.pointing_game(relevance, masks),
            "pointing_game_patches": M.pointing_game(cells, cell_masks)}


def score_explainers(model: nn.Module, images: Tensor, target: Tensor, masks: Tensor,
                     explainers: dict[str, M.Explainer], patch_size: int,
                     batch_size: int = 32) -> dict[str, dict[str, Tensor]]:
    """Run every explainer on ``images`` for ``target`` and score its maps.

    Returns
    -------
    dict
        method -> {score -> ``(N,)`` tensor, ``"seconds"`` -> wall time for all images}.
    """
    out = {}
    for name, explain in explainers.items():
        start = time.perf_counter()
        maps = torch.cat([explain(model, images[i:i + batch_size], target[i:i + batch_size]).detach()
                          for i in range(0, len(images), batch_size)])
        seconds = time.perf_counter() - start
        out[name] = dict(localisation_scores(maps, masks, patch_size), seconds=seconds)
    return out
