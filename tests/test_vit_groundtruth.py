"""The harness of the ViT faithfulness benchmark (benchmarks/vit_groundtruth.py): the scores
and every compared method, on a tiny ViT."""
import warnings

import pytest
import torch
from torch import nn

from lrp_captum.demos import planted_patterns as G
from lrp_captum.demos.vit_planted_patterns import (SCORES, VIT_METHODS, localisation_scores, patch_mask,
                                                   score_explainers, vit_explainers)


@pytest.fixture(scope="module")
def data():
    return G.make_planted_patterns(6, size=32, n_classes=4, seed=0)


@pytest.fixture(scope="module")
def tiny_vit():
    torch.manual_seed(0)
    model = G.planted_pattern_vit(4, 32, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                                  stem_channels=8)
    nn.init.normal_(model.heads.head.weight)  # torchvision starts the head at zero
    return model.eval()


def test_a_map_equal_to_the_mask_scores_one_everywhere(data):
    scores = localisation_scores(data.masks.float(), data.masks, patch_size=4)
    assert set(scores) == set(SCORES)
    for name, values in scores.items():
        assert torch.equal(values, torch.ones(len(data))), name


def test_a_map_outside_the_mask_scores_zero(data):
    outside = (~patch_mask(data.masks, 4)).float().repeat_interleave(4, 1).repeat_interleave(4, 2)
    for name, values in localisation_scores(outside, data.masks, patch_size=4).items():
        assert torch.equal(values, torch.zeros(len(data))), name


def test_a_constant_map_scores_the_mask_area(data):
    scores = localisation_scores(torch.ones(len(data), 3, 32, 32), data.masks, patch_size=4)
    torch.testing.assert_close(scores["mass_accuracy"], data.masks.float().mean((1, 2)))
    torch.testing.assert_close(scores["mass_accuracy_patches"],
                               patch_mask(data.masks, 4).float().mean((1, 2)))


def test_patch_mask_marks_every_patch_the_mask_touches():
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 3, 3:5] = True  # one row of two pixels across a patch border
    assert patch_mask(mask, 4).tolist() == [[[True, True], [False, False]]]


def test_every_method_runs_on_a_tiny_vit_and_gives_a_pixel_map(tiny_vit, data):
    with warnings.catch_warnings():  # AttnLRP's sums on random weights may be far off
        warnings.simplefilter("ignore")
        results = score_explainers(tiny_vit, data.images, data.labels, data.masks,
                                   vit_explainers(), patch_size=4, batch_size=4)
    assert list(results) == list(VIT_METHODS)
    for name, scores in results.items():
        for score in SCORES:
            assert scores[score].shape == (len(data),), (name, score)
            assert ((scores[score] >= 0) & (scores[score] <= 1)).all(), (name, score)
        assert scores["seconds"] >= 0


def test_lrp_maps_vary_inside_a_patch_and_attention_maps_do_not(tiny_vit, data):
    x, y = data.images[:2], data.labels[:2]
    explainers = vit_explainers(["cp_lrp", "attention_rollout"])
    lrp = explainers["cp_lrp"](tiny_vit, x, y).sum(1)
    rollout = explainers["attention_rollout"](tiny_vit, x, y)
    within = lambda m: m.reshape(2, 8, 4, 8, 4).std(dim=(2, 4))  # noqa: E731
    assert (within(lrp) > 0).float().mean() > 0.9
    assert torch.all(within(rollout) == 0)


def test_unknown_methods_are_named():
    with pytest.raises(ValueError, match="'gradcam'"):
        vit_explainers(["attnlrp", "gradcam"])
