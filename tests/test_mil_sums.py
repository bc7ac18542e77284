"""Maps that add up, pixel to slide (issue 21 item 5): with the defaults the tile evidence sums to
the slide logit, and each tile's pixel map sums to its evidence within 1 %, through an encoder
with biases (trained-like, so the biases are not zero); manifest.json and tiles.csv report the
numbers."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from lrp_captum import LRP
from lrp_captum.demos.mil_cohort import read_cohort
from lrp_captum.wsi.mil.encoders import build_encoder
from lrp_captum.wsi.mil.explain import explain_mil_slide
from lrp_captum.wsi.mil.head_files import save_head
from lrp_captum.wsi.mil.heads import make_head
from lrp_captum.wsi.mil.pixel_maps import default_pixel_composite
from lrp_captum.wsi.model import DemoTileCNN
from test_mil_support import mil_cohort, tiny_spec  # noqa: F401 -- fixture


@pytest.fixture(scope="module")
def lesion_slide(mil_cohort):
    return next(e for e in read_cohort(mil_cohort) if e.label == 1).slide


def _biased_head(encoder, seed=0):
    torch.manual_seed(seed)
    head = make_head("abmil", encoder.dim).eval()
    with torch.no_grad():
        for name, p in head.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
    return head


@pytest.fixture(scope="module")
def explained(lesion_slide, tmp_path_factory):
    """The defaults (xmil_lrp, the encoder's default pixel composite) on an encoder and a head whose
    biases are all far from zero."""
    d = tmp_path_factory.mktemp("sums")
    encoder = build_encoder(tiny_spec(bias=True))
    with torch.no_grad():
        for name, p in encoder.model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.3)
    head = save_head(_biased_head(encoder), d / "head", name="abmil", classes=["negative", "lesion"], encoder=encoder)
    manifest = explain_mil_slide(lesion_slide, head, d / "out", encoder=encoder, top_tiles=6,
                                 embeddings_dir=d / "emb", quiet=True)
    return d / "out", manifest


def test_the_default_pixel_composite_of_a_cnn_encoder_leaves_the_biases_out():
    assert default_pixel_composite(build_encoder(tiny_spec())) == "xmil_cnn"


def test_with_the_defaults_the_tile_evidence_sums_to_the_slide_logit(explained):
    _, manifest = explained
    sums = manifest["sums"]
    assert manifest["method"] == "xmil_lrp" and manifest["pixel_composite"] == "xmil_cnn"
    assert sums["evidence_sum"] == pytest.approx(manifest["target"]["logit"], rel=1e-4, abs=1e-6)
    assert sums["evidence_to_logit"] == pytest.approx(1.0, abs=1e-4)


def test_with_the_defaults_each_pixel_map_sums_to_its_tile_s_evidence_within_1_percent(explained):
    out, manifest = explained
    maps = zarr.open_group(str(out / "evidence.zarr"), mode="r")["tile_maps"][:].astype(np.float64)
    assert len(manifest["top_tiles"]) == 6
    for tile, m in zip(manifest["top_tiles"], maps):
        assert m.sum() == pytest.approx(tile["evidence"], rel=0.01)
        assert tile["pixel_to_evidence"] == pytest.approx(1.0, abs=0.01)
    assert manifest["sums"]["pixel_maps_off_by_more_than_1_percent"] == 0


def test_tiles_csv_gives_each_mapped_tile_its_pixel_map_sum_and_ratio(explained):
    out, manifest = explained
    table = pd.read_csv(out / "tiles.csv").set_index("tile_index")
    mapped = table[table["pixel_map"]]
    assert len(mapped) == 6 and table.loc[~table["pixel_map"], "pixel_map_sum"].isna().all()
    for tile in manifest["top_tiles"]:
        row = table.loc[tile["tile_index"]]
        assert row["pixel_map_sum"] == pytest.approx(tile["pixel_relevance_sum"], rel=1e-6)
        assert row["pixel_map_to_evidence"] == pytest.approx(row["pixel_map_sum"] / row["evidence"], rel=1e-6)


def test_the_previous_default_lets_the_biases_take_the_evidence_away(lesion_slide, explained, tmp_path):
    """epsilon_plus_flat (z⁺ with b⁺ in the denominator, ε with the bias) was the default: on the
    same tiles the maps do not sum to the evidence (the app showed +0.965 mapped to −0.414)."""
    _, manifest = explained
    encoder = build_encoder(tiny_spec(bias=True))
    with torch.no_grad():
        for name, p in encoder.model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.3)
    head = save_head(_biased_head(encoder), tmp_path / "head", name="abmil", classes=["negative", "lesion"],
                     encoder=encoder)
    old = explain_mil_slide(lesion_slide, head, tmp_path / "out", encoder=encoder, top_tiles=6,
                            pixel_composite="epsilon_plus_flat", embeddings_dir=tmp_path / "emb", quiet=True)
    assert [t["evidence"] for t in old["top_tiles"]] == pytest.approx([t["evidence"] for t in manifest["top_tiles"]])
    assert old["sums"]["pixel_maps_off_by_more_than_1_percent"] > 0


def test_xmil_cnn_conserves_relevance_through_the_demo_cnn_with_batchnorm_and_biases():
    """The demo tile CNN's trunk (conv, BatchNorm with running statistics, ReLU, max pooling,
    average pooling), every bias and BatchNorm shift non-zero: the input receives the relevance
    given to the embedding, to 1 %."""
    torch.manual_seed(0)
    model = DemoTileCNN(width=8)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.normal_(0.0, 0.3)
            if isinstance(m, torch.nn.Conv2d):
                m.bias.normal_(0.0, 0.3)
    model.classifier = torch.nn.Identity()
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    embedding = model(x)
    initial = embedding * torch.rand_like(embedding)
    relevance = LRP(model, composite="xmil_cnn").attribute(x, output_mode=initial)
    torch.testing.assert_close(relevance.flatten(1).sum(1), initial.sum(1), rtol=0.01, atol=1e-6)


@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_z_plus_without_the_bias_is_its_formula_and_passes_the_bias_s_share_to_the_inputs(layer):
    """ZPlusRule(bias=False): R_j = Σ_k x_j w⁺_jk / Σ_j x_j w⁺_jk · R_k, written out in float64 on
    x ≥ 0, against the engine's fused layer."""
    from lrp_captum import get_composite
    from lrp_captum.core.rules import ZPlusRule

    torch.manual_seed(0)
    if layer == "linear":
        module, x = torch.nn.Linear(6, 4).double(), torch.rand(3, 6, dtype=torch.float64)
        weight, cols = module.weight.detach(), x
    else:
        module, x = torch.nn.Conv2d(2, 3, 2).double(), torch.rand(3, 2, 2, 2, dtype=torch.float64)
        weight, cols = module.weight.detach().flatten(1), x.flatten(1)  # a 2x2 input gives one 2x2 window
    with torch.no_grad():
        module.bias.uniform_(0.5, 1.5)  # positive: z⁺ with the bias would put b⁺ in every denominator
    initial = torch.rand_like(module(x))
    composite = get_composite("epsilon", layer_map={type(module): ZPlusRule(stabilizer=0.0, bias=False)})
    relevance = LRP(torch.nn.Sequential(module), composite=composite).attribute(x, output_mode=initial)
    contributions = cols[:, :, None] * weight.clamp(min=0).t()[None]          # (N, J, K)
    expected = (contributions / contributions.sum(1, keepdim=True) * initial.flatten(1)[:, None]).sum(2)
    torch.testing.assert_close(relevance.flatten(1), expected)
    torch.testing.assert_close(relevance.flatten(1).sum(1), initial.flatten(1).sum(1))


class HandLayerNorm(torch.nn.Module):
    """A LayerNorm written by hand, as libraries do (found by its class name)."""

    def __init__(self, n):
        super().__init__()
        self.weight, self.bias = torch.nn.Parameter(torch.ones(n)), torch.nn.Parameter(torch.zeros(n))

    def forward(self, x):
        centred = x - x.mean(-1, keepdim=True)
        return centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight + self.bias


@pytest.mark.parametrize("norm", [torch.nn.LayerNorm, HandLayerNorm])
def test_layernorm_with_its_shift_out_of_the_denominator_is_its_formula(norm):
    """ConstantScaleRule(bias=False) in xmil_vit: R_i = Σ_j x_i ∂y_j/∂x_i · R_j / (y_j − b_j ± ε), the
    scale 1/σ held constant, written out in float64; the input receives all the relevance."""
    torch.manual_seed(0)
    layer = norm(5).double()
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.normal_(0.0, 1.0)
    x = torch.randn(3, 5, dtype=torch.float64)
    y = layer(x).detach()
    initial = torch.rand_like(y)
    relevance = LRP(torch.nn.Sequential(layer), composite="xmil_vit").attribute(x, output_mode=initial)
    sigma = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-5)
    jacobian = (torch.eye(5, dtype=torch.float64) - 1 / 5)[None] * (layer.weight.detach() / sigma)[:, None, :]  # (N, i, j)
    shifted = y - layer.bias.detach()
    shifted = shifted + 1e-8 * torch.where(shifted >= 0, 1.0, -1.0)  # the rule's ε, with the sign of y − b
    expected = x * (jacobian * (initial / shifted)[:, None, :]).sum(-1)
    torch.testing.assert_close(relevance, expected)
    torch.testing.assert_close(relevance.sum(1), initial.sum(1))


def _vit_without_token_constants(seed=0):
    """A timm ViT whose tokens are all computed from the pixels (no class token, no position
    embedding, average pooling), with layer scale and every bias, LayerNorm shift and layer
    scale moved off its initial value."""
    import timm

    torch.manual_seed(seed)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, num_classes=0, class_token=False,
        global_pool="avg", pos_embed="none", init_values=1e-1).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def test_xmil_vit_passes_the_shares_of_biases_and_layernorm_shifts_to_the_pixels():
    model = _vit_without_token_constants()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    initial = model(x) * torch.rand(3, 32, dtype=torch.float64)
    relevance = LRP(model, composite="xmil_vit").attribute(x, output_mode=initial)
    torch.testing.assert_close(relevance.flatten(1).sum(1), initial.sum(1), rtol=1e-5, atol=1e-8)
    kept = LRP(model, composite="cp_lrp").attribute(x, output_mode=initial)  # biases and shifts keep their shares
    assert not torch.allclose(kept.flatten(1).sum(1), initial.sum(1), rtol=1e-2)
