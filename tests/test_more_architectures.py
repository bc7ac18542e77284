"""Architectures beyond VGG/ResNet/BERT that users bring, through LRP with registered composites:
ConvNeXt (LayerNorm in a CNN), timm's EfficientNet (BatchNormAct2d: normalisation, dropout and
activation in one module), Swin (shifted windows: torch.roll, fx-wrapped window attention),
MaxViT (swapaxes partitions) and timm's LeViT (a forward that caches tensors in the model).

Conservation is checked where it is exact: float64, every bias (and BatchNorm shift) zero, LRP-0
on CNNs and CP-LRP on transformers, whose relevance then sums to the explained logit.
"""
import warnings

import pytest
import timm
import torch
import torchvision
from torch import nn

from lrp_captum import LRP, get_composite
from lrp_captum.core.canonizers import canonize


def _bias_free(model: nn.Module) -> nn.Module:
    model = model.double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "relative_position_bias" in name or "attention_biases" in name:
                p.zero_()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
    return model


def _sums(model, composite, x, target=1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        relevance = LRP(model, composite=composite).attribute(x, target=target)
    return relevance.flatten(1).sum(1), model(x)[:, target]


def test_convnext_layernorm_gets_a_constant_scale_rule_in_cnn_composites():
    torch.manual_seed(0)
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt
    model = _bias_free(ConvNeXt([CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)], num_classes=3))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    summed, logit = _sums(model, "zero", x)
    torch.testing.assert_close(summed, logit, rtol=1e-6, atol=1e-9)
    relevance = LRP(model, composite=get_composite("epsilon_gamma_box", mean=(0.5,) * 3, std=(0.25,) * 3)
                    ).attribute(x.float().double(), target=1)
    assert torch.isfinite(relevance).all()


def test_timm_batchnorm_act_is_merged_and_its_activation_kept():
    torch.manual_seed(0)
    model = _bias_free(timm.create_model("efficientnet_b0", pretrained=False, num_classes=3))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    canonized = canonize(model, (x,))  # raised "does not reproduce the model's output" before
    assert any("then its drop, act" in change for change in canonized.changes)
    summed, logit = _sums(model, "zero", x)
    torch.testing.assert_close(summed, logit, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_swin_conserves_under_cp_lrp(library):
    torch.manual_seed(0)
    if library == "timm":
        model = timm.models.swin_transformer.SwinTransformer(
            img_size=32, patch_size=4, window_size=4, embed_dim=16, depths=(2, 2), num_heads=(2, 2),
            num_classes=3)
    else:
        model = torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2],
                                                   num_heads=[2, 2], window_size=[4, 4], num_classes=3)
    model = _bias_free(model)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    # stabiliser 0: torchvision's Swin pools with nn.AdaptiveAvgPool2d, whose proportional rule
    # would otherwise absorb about 1e-5 of the relevance
    summed, logit = _sums(model, get_composite("cp_lrp", stabilizer=0.0), x)
    torch.testing.assert_close(summed, logit, rtol=1e-6, atol=1e-9)


def test_maxvit_runs_through_its_window_and_grid_partitions():
    torch.manual_seed(0)
    model = _bias_free(torchvision.models.MaxVit(
        input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[8, 16],
        block_layers=[1, 1], head_dim=4, stochastic_depth_prob=0.0, num_classes=3))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    summed, logit = _sums(model, "cp_lrp", x)
    assert torch.isfinite(summed).all() and (summed != 0).all()


def test_a_forward_that_caches_tensors_is_traced_without_changing_the_model():
    torch.manual_seed(0)
    model = timm.create_model("levit_128s", pretrained=False, num_classes=3).eval()
    x = torch.randn(1, 3, 224, 224)
    model(x)  # fills the attention-bias caches, as any eval-mode forward does
    caches = {name: dict(m.attention_bias_cache) for name, m in model.named_modules()
              if hasattr(m, "attention_bias_cache")}
    assert caches
    for composite in ("cp_lrp", "attnlrp"):  # a second trace met the first one's proxies before
        relevance = LRP(model, composite=composite).attribute(x, target=1)
        assert torch.isfinite(relevance).all()
    after = {name: dict(m.attention_bias_cache) for name, m in model.named_modules()
             if hasattr(m, "attention_bias_cache")}
    assert after.keys() == caches.keys()
    for name in caches:
        assert after[name].keys() == caches[name].keys()
        assert all(torch.is_tensor(v) and torch.equal(v, caches[name][k]) for k, v in after[name].items())
