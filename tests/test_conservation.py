"""Conservation on real architectures: LRP-0, biases zeroed, canonizers on → Σ R = target logit."""
import pytest
import torch
import torchvision

from lrp_captum import LRP, canonize

MODELS = ["vgg16", "vgg16_bn", "resnet18", "resnet50", "densenet121", "efficientnet_b0",
          "mobilenet_v3_small"]


def _zero_bias_model(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval().double()
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
            torch.nn.init.zeros_(module.bias)
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            # random but bias-free normalisation: scale only
            module.weight.data.uniform_(0.5, 1.5)
            module.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("name", MODELS)
def test_input_relevance_sums_to_target_logit(name):
    model = _zero_bias_model(name)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    target = [7, 42]
    relevance, delta = LRP(model, composite="zero").attribute(
        x, target=target, return_convergence_delta=True)
    logits = model(x)[[0, 1], target]
    sums = relevance.flatten(1).sum(1)
    assert torch.allclose(sums, logits, rtol=1e-3, atol=1e-12 + 1e-3 * logits.abs().max().item())
    assert torch.allclose(delta, logits - sums, atol=1e-9)


@pytest.mark.parametrize("name", MODELS)
def test_canonized_model_reproduces_outputs(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(2, 3, 64, 64)
    canonized = canonize(model, (x,), check=False)
    with torch.no_grad():
        assert torch.allclose(canonized.module(x), model(x), atol=1e-5, rtol=1e-4)
    assert any("BatchNorm" in c or "Sum" in c or "Gated" in c for c in canonized.changes) or \
        name == "vgg16"


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_residual_sums_share_relevance_between_their_addends_under_epsilon(name):
    """LRP-ε with a tiny ε runs the fused proportional kernels (LRP-0 is the plain gradient
    and runs none): each residual sum must pass relevance to every addend, so Σ R still equals
    the target logit on a bias-free model."""
    from lrp_captum import get_composite

    model = _zero_bias_model(name)
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    target = [7, 42]
    lrp = LRP(model, composite=get_composite("epsilon", epsilon=1e-12, stabilizer=1e-12))
    assert any("fused" in path for path in lrp.rule_table(x).paths.values())
    relevance = lrp.attribute(x, target=target)
    logits = model(x)[[0, 1], target]
    sums = relevance.flatten(1).sum(1)
    assert torch.allclose(sums, logits, rtol=1e-3, atol=1e-12 + 1e-3 * logits.abs().max().item())
