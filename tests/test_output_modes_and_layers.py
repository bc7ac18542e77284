"""Output-relevance modes and LayerLRP."""
import pytest
import torch
import torchvision
from torch import nn

from lrp_captum import LRP, LayerLRP

torch.manual_seed(0)


def _mlp(bias=False):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8, bias=bias), nn.ReLU(), nn.Linear(8, 8, bias=bias),
                         nn.ReLU(), nn.Linear(8, 4, bias=bias)).eval().double()


X = torch.randn(5, 6, dtype=torch.float64)
T = [0, 1, 2, 3, 0]


def test_probability_mode_conserves_the_softmax_probability():
    model = _mlp()
    relevance = LRP(model, composite="zero").attribute(X, target=T, output_mode="probability")
    p = torch.softmax(model(X), 1)[range(5), T]
    assert torch.allclose(relevance.sum(1), p, rtol=1e-9)


def test_contrastive_mode_follows_the_seed_formula_at_the_last_layer():
    model = _mlp()
    z = model(X).detach()
    hidden = model[:4](X).detach()  # a_k, input of the last layer
    w = model[4].weight.detach()  # (classes, hidden)
    expected = []
    for n, c in enumerate(T):
        others = [k for k in range(4) if k != c]
        margins = torch.stack([z[n, c] - z[n, k] for k in others])  # z_{c,c'}
        softmin = torch.softmax(-margins, 0)  # e^{-z_cc'} / Σ e^{-z_cc''}
        # R_{c,c'} = z_{c,c'} · softmin, propagated with LRP-0 through the difference weights
        r = sum(hidden[n] * (w[c] - w[k]) / margins[i] * (margins[i] * softmin[i])
                for i, k in enumerate(others))
        expected.append(r)
    expected = torch.stack(expected)
    ours = LayerLRP(model, model[4], composite="zero").attribute(
        X, target=T, output_mode="contrastive", attribute_to_layer_input=True)
    assert torch.allclose(ours, expected, rtol=1e-9)


def test_contrastive_total_is_softmin_weighted_margin_and_is_conserved():
    model = _mlp()
    relevance, delta = LRP(model, composite="zero").attribute(
        X, target=T, output_mode="contrastive", return_convergence_delta=True)
    z = model(X).detach()
    total = []
    for n, c in enumerate(T):
        m = torch.stack([z[n, c] - z[n, k] for k in range(4) if k != c])
        total.append((m * torch.softmax(-m, 0)).sum())
    assert torch.allclose(relevance.sum(1), torch.stack(total), rtol=1e-9)
    assert delta.abs().max() < 1e-12


def test_initial_relevance_tensor_is_propagated():
    model = _mlp()
    r0 = torch.zeros(5, 4, dtype=torch.float64)
    r0[:, 1] = 2.0
    relevance = LRP(model, composite="zero").attribute(X, output_mode=r0)
    assert torch.allclose(relevance.sum(1), torch.full((5,), 2.0, dtype=torch.float64))


def test_bad_output_mode_is_rejected():
    with pytest.raises(ValueError, match="output_mode"):
        LRP(_mlp()).attribute(X, target=0, output_mode="logits")


def test_target_forms_like_captum():
    model = _mlp()
    lrp = LRP(model, composite="zero")
    as_int = lrp.attribute(X, target=2)
    assert torch.equal(as_int, lrp.attribute(X, target=[2] * 5))
    assert torch.equal(as_int, lrp.attribute(X, target=torch.tensor([2] * 5)))


def test_layer_relevance_at_first_layer_input_equals_input_relevance():
    model = _mlp(bias=True)
    lrp_in = LRP(model, composite="epsilon").attribute(X, target=T)
    layer_in = LayerLRP(model, model[0], composite="epsilon").attribute(
        X, target=T, attribute_to_layer_input=True)
    assert torch.allclose(lrp_in, layer_in, rtol=1e-9)


def test_layer_lrp_on_a_non_leaf_block_and_a_list_of_layers():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval().double()
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    logit = model(x)[0, 4]
    rel = LayerLRP(model, [model.layer2, model.layer4], composite="zero").attribute(x, target=4)
    assert rel[0].shape == (1, 128, 4, 4) and rel[1].shape == (1, 512, 1, 1)
    for r in rel:  # relevance is conserved through every block
        assert torch.allclose(r.sum(), logit, rtol=1e-6)


def test_layer_lrp_on_embeddings_with_integer_inputs():
    class TextNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(50, 8)
            self.conv = nn.Conv1d(8, 6, 3, padding=1)
            self.act = nn.ReLU()
            self.pool = nn.AdaptiveMaxPool1d(1)
            self.out = nn.Linear(6, 2, bias=False)

        def forward(self, ids):
            h = self.embedding(ids).transpose(1, 2)
            return self.out(self.pool(self.act(self.conv(h))).flatten(1))

    torch.manual_seed(0)
    model = TextNet().eval()
    nn.init.zeros_(model.conv.bias)
    ids = torch.randint(0, 50, (3, 7))
    rel = LayerLRP(model, model.embedding, composite="zero").attribute(ids, target=1)
    assert rel.shape == (3, 7, 8)
    assert torch.allclose(rel.sum((1, 2)), model(ids)[:, 1].detach(), rtol=1e-4, atol=1e-6)
    with pytest.raises(TypeError, match="LayerLRP"):
        LRP(model).attribute(ids, target=1)


def test_layer_lrp_on_a_conv_whose_batchnorm_gets_merged():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval().double()
    nn.init.zeros_(model.fc.bias)
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    rel = LayerLRP(model, model.conv1, composite="zero").attribute(x, target=4)
    assert rel.shape == (1, 64, 16, 16)  # the conv's output, not the merged conv+BN output
    assert torch.allclose(rel.sum(), model(x)[0, 4], rtol=1e-6)
