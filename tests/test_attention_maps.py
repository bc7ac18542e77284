"""Attention probabilities recorded from timm, torchvision and Hugging Face ViTs; attention
rollout and raw attention against hand-written references."""
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
import transformers
from torch import nn

from lrp_captum.evaluation.attention_maps import (attention_maps, computes_attention,
                                                  record_attention, sdpa_probabilities)
from lrp_captum.evaluation.attention_rollout import (attention_rollout, raw_attention,
                                                     raw_attention_image_map, rollout_image_map,
                                                     token_map_to_pixels)

LAYERS, HEADS, TOKENS = 3, 4, 17  # 32x32 images in 8x8 patches, plus the class token


def _timm_vit(fused: bool = True):
    torch.manual_seed(0)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=LAYERS, num_heads=HEADS, num_classes=3)
    for block in model.blocks:
        block.attn.fused_attn = fused
    return model.eval()


def _torchvision_vit():
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=LAYERS,
                                                num_heads=HEADS, hidden_dim=32, mlp_dim=64,
                                                num_classes=3).eval()


def _hf_vit(attention: str):
    torch.manual_seed(0)
    config = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32,
                                    num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                    intermediate_size=64, num_labels=3)
    config._attn_implementation = attention
    return transformers.ViTForImageClassification(config).eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_fused_timm_attention_is_recorded_as_its_explicit_softmax(images):
    """timm computes the same attention with F.scaled_dot_product_attention or with an
    explicit softmax; the recorder sees the probabilities of both paths, and they agree."""
    fused, explicit = attention_maps(_timm_vit(True), images), attention_maps(_timm_vit(False), images)
    assert [a.shape for a in fused] == [(2, HEADS, TOKENS, TOKENS)] * LAYERS
    for a, b in zip(fused, explicit):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_torchvision_attention_equals_multihead_attention_weights(images):
    model = _torchvision_vit()
    inputs = []
    handles = [layer.self_attention.register_forward_pre_hook(
        lambda module, args: inputs.append(args[0])) for layer in model.encoder.layers]
    maps = attention_maps(model, images)
    for h in handles:
        h.remove()
    assert len(maps) == LAYERS
    for layer, x, recorded in zip(model.encoder.layers, inputs, maps):
        with torch.no_grad():
            _, weights = layer.self_attention(x, x, x, need_weights=True, average_attn_weights=False)
        torch.testing.assert_close(recorded, weights)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_hugging_face_attention_equals_its_output_attentions(images, attention):
    model = _hf_vit(attention)
    maps = attention_maps(model, pixel_values=images)
    reference = _hf_vit("eager")(pixel_values=images, output_attentions=True).attentions
    assert len(maps) == LAYERS
    for a, b in zip(maps, reference):
        torch.testing.assert_close(a, b.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [_timm_vit, _torchvision_vit, lambda: _hf_vit("sdpa")],
                         ids=["timm", "torchvision", "hf"])
def test_recording_leaves_the_output_unchanged(images, make):
    model = make()
    with torch.no_grad():
        plain = model(images)
        with record_attention() as record:
            recorded = model(images)
    plain, recorded = (getattr(o, "logits", o) for o in (plain, recorded))
    torch.testing.assert_close(recorded, plain, rtol=1e-5, atol=1e-6)
    assert len(record.maps) == LAYERS


def test_sdpa_probabilities_reproduce_the_fused_kernel_with_masks():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 5, 8, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(5, 5, generator=g) > 0.3
    mask.fill_diagonal_(True)
    additive = torch.randn(2, 1, 5, 5, generator=g, dtype=torch.float64)
    for kwargs in ({}, {"attn_mask": mask}, {"attn_mask": additive}, {"is_causal": True},
                   {"scale": 0.3}):
        probabilities = sdpa_probabilities(q, k, **kwargs)
        torch.testing.assert_close(probabilities @ v, F.scaled_dot_product_attention(q, k, v, **kwargs))


def test_grouped_query_attention_shares_key_heads():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 4, 3, 8, generator=g), torch.randn(1, 2, 3, 8, generator=g)
    shared = sdpa_probabilities(q, k, enable_gqa=True)
    torch.testing.assert_close(shared[:, 1], sdpa_probabilities(q[:, 1:2], k[:, 0:1])[:, 0])
    torch.testing.assert_close(shared[:, 2], sdpa_probabilities(q[:, 2:3], k[:, 1:2])[:, 0])


def test_a_cnn_computes_no_attention_and_says_so(images):
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    assert not computes_attention(cnn, images)
    assert computes_attention(_timm_vit(), images)
    with pytest.raises(ValueError, match="Sequential computed no attention"):
        attention_maps(cnn, images)


def test_a_final_class_softmax_is_not_taken_for_attention(images):
    model = nn.Sequential(_timm_vit(), nn.Softmax(dim=-1))
    assert len(attention_maps(model, images)) == LAYERS


def _numpy_rollout(maps):
    """Abnar & Zuidema's rollout written out for one image, in numpy."""
    result = np.eye(maps[0].shape[-1])
    for a in maps:
        mean = a.mean(0)
        result = (0.5 * mean + 0.5 * np.eye(len(mean))) @ result
    return result


def test_rollout_matches_the_papers_recursion():
    g = torch.Generator().manual_seed(0)
    maps = [torch.softmax(torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64), -1) for _ in range(4)]
    rollout = attention_rollout(maps)
    for i in range(2):
        np.testing.assert_allclose(rollout[i].numpy(), _numpy_rollout([a[i].numpy() for a in maps]),
                                   rtol=1e-12)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 5, dtype=torch.float64))


def test_rollout_without_residual_is_the_product_of_head_means():
    g = torch.Generator().manual_seed(0)
    maps = [torch.softmax(torch.randn(1, 2, 4, 4, generator=g, dtype=torch.float64), -1) for _ in range(2)]
    torch.testing.assert_close(attention_rollout(maps, residual=False),
                               maps[1].mean(1) @ maps[0].mean(1))
    torch.testing.assert_close(raw_attention(maps), maps[1].mean(1))


def test_token_scores_fill_their_patches():
    scores = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    pixels = token_map_to_pixels(scores, (8, 12))  # 2 x 3 patches of 4 x 4 pixels
    assert pixels.shape == (1, 8, 12)
    assert torch.equal(pixels[0, :4, 4:8], torch.full((4, 4), 2.0))
    assert torch.equal(pixels[0, 4:, 8:], torch.full((4, 4), 6.0))
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        token_map_to_pixels(torch.ones(1, 5), (8, 12))


@pytest.mark.parametrize("make", [_timm_vit, _torchvision_vit], ids=["timm", "torchvision"])
def test_image_maps_have_pixel_shape_and_use_the_class_row(images, make):
    model = make()
    rollout, raw = rollout_image_map(model, images), raw_attention_image_map(model, images)
    assert rollout.shape == raw.shape == (2, 32, 32)
    maps = attention_maps(model, images)
    expected = token_map_to_pixels(maps[-1].mean(1)[:, 0, 1:], (32, 32))
    torch.testing.assert_close(raw, expected)
    assert (rollout > 0).all()
