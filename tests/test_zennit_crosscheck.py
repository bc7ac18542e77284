"""Peer cross-check: zennit 0.5.1 (test-only oracle) vs ours on the same composites."""
import pytest
import torch
import torchvision
from zennit.attribution import Gradient
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat
from zennit.torchvision import ResNetCanonizer, VGGCanonizer

from lrp_captum import LRP, get_composite, zbox_bounds

LOW, HIGH = zbox_bounds((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SIZE = 64


def _zennit_composite(name, canonizer):
    if name == "epsilon_gamma_box":
        full = (1, 3, SIZE, SIZE)
        return EpsilonGammaBox(low=LOW.view(1, 3, 1, 1).expand(full).clone(),
                               high=HIGH.view(1, 3, 1, 1).expand(full).clone(),
                               canonizers=[canonizer()])
    return {"epsilon_plus_flat": EpsilonPlusFlat,
            "epsilon_alpha2_beta1": EpsilonAlpha2Beta1}[name](canonizers=[canonizer()])


@pytest.fixture(scope="module", params=["vgg16", "resnet18", "resnet50"])
def model_and_input(request, make_images):
    torch.manual_seed(1)
    model = getattr(torchvision.models, request.param)().eval()
    x = make_images(2, SIZE, seed=1)
    canonizer = VGGCanonizer if request.param.startswith("vgg") else ResNetCanonizer
    return request.param, model, x, canonizer


@pytest.mark.parametrize("composite", ["epsilon_gamma_box", "epsilon_plus_flat",
                                       "epsilon_alpha2_beta1"])
def test_matches_zennit(model_and_input, composite):
    name, model, x, canonizer = model_and_input
    target = [3, 5]
    with Gradient(model=model, composite=_zennit_composite(composite, canonizer)) as attributor:
        _, theirs = attributor(x, lambda out: torch.eye(out.shape[1])[target] * out)
    kwargs = {"low": LOW, "high": HIGH} if composite == "epsilon_gamma_box" else {}
    ours = LRP(model, composite=get_composite(composite, **kwargs)).attribute(x, target=target)
    for i in range(2):
        corr = torch.corrcoef(torch.stack([ours[i].flatten(), theirs[i].flatten()]))[0, 1]
        assert corr >= 0.999, f"{name}/{composite} example {i}: correlation {corr:.6f}"
        # values, not only their pattern: float32 differences measured ≤ 2e-4 of the largest
        # |R|; a preset parameter off by as little as γ 0.25 -> 0.3 differs by ≥ 1.7e-2
        error = (ours[i] - theirs[i]).abs().max() / theirs[i].abs().max()
        assert error <= 2e-3, f"{name}/{composite} example {i}: max error {error:.2e} of max |R|"
    assert torch.allclose(ours.flatten(1).sum(1), theirs.flatten(1).sum(1), rtol=1e-3)
