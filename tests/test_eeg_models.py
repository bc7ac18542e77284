"""EEG models: shapes, LRP conservation per epoch, and the EEG layer rules."""
import pytest
import torch
from torch import nn

from lrp_captum import LRP, CanonizationError, NoRuleError, get_composite
from lrp_captum.eeg.models import (EEGNet, SafeLog, ShallowConvNet, Square, build_model,
                                   eeg_layer_map)

N_CH, N_T = 28, 200


def _zero_bias_model(architecture: str) -> nn.Module:
    """Random weights, BatchNorm with random scale but no shift, every bias zero.

    Then the network is a sum of per-input contributions (the logit has no bias term), so
    LRP-0 / LRP-ε relevance must add up to the logit.
    """
    torch.manual_seed(1)
    model = build_model(architecture, N_CH, N_T, n_classes=2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.zero_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.zero_()
            elif getattr(m, "bias", None) is not None:
                m.bias.zero_()
    return model.eval()


@pytest.mark.parametrize("architecture,cls", [("shallow", ShallowConvNet), ("eegnet", EEGNet)])
def test_models_map_epochs_to_one_logit_per_class(architecture, cls):
    model = build_model(architecture, N_CH, N_T, n_classes=3).eval()
    assert isinstance(model, cls)
    assert model(torch.randn(5, N_CH, N_T)).shape == (5, 3)


def test_square_and_safelog_are_elementwise_power_and_clamped_log():
    x = torch.tensor([-2.0, 0.0, 3.0])
    assert torch.equal(Square()(x), torch.tensor([4.0, 0.0, 9.0]))
    out = SafeLog(eps=1e-6)(torch.tensor([0.0, 1.0, torch.e]))
    assert torch.allclose(out, torch.tensor([torch.log(torch.tensor(1e-6)), 0.0, 1.0]))


@pytest.mark.parametrize("architecture", ["shallow", "eegnet"])
@pytest.mark.parametrize("composite", ["zero", "epsilon"])
def test_relevance_of_each_epoch_sums_to_its_logit(architecture, composite):
    model = _zero_bias_model(architecture)
    x = 10 * torch.randn(6, N_CH, N_T)
    target = torch.tensor([0, 1, 0, 1, 1, 0])
    lrp = LRP(model, composite=get_composite(composite, layer_map=eeg_layer_map()),
              canonizers="auto")
    relevance = lrp.attribute(x, target=target)
    with torch.no_grad():
        logits = model(x)[torch.arange(6), target]
    assert relevance.shape == x.shape
    torch.testing.assert_close(relevance.sum((1, 2)), logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("architecture", ["shallow", "eegnet"])
def test_convergence_delta_is_zero_without_biases(architecture):
    model = _zero_bias_model(architecture)
    lrp = LRP(model, composite=get_composite("epsilon", layer_map=eeg_layer_map()),
              canonizers="auto")
    x = 10 * torch.randn(4, N_CH, N_T)
    _, delta = lrp.attribute(x, target=1, return_convergence_delta=True)
    scale = model(x)[:, 1].abs().detach()
    assert (delta.abs() <= 1e-4 * scale + 1e-5).all()


def test_square_and_log_need_the_eeg_layer_map():
    model = build_model("shallow", N_CH, N_T).eval()
    # Without the map the core cannot know x*x and log are elementwise; it must say so.
    with pytest.raises((NoRuleError, CanonizationError), match="(?i)square"):
        LRP(model, composite="epsilon_plus", canonizers="auto").attribute(
            torch.randn(2, N_CH, N_T), target=0)


def test_eeg_layer_map_passes_relevance_through_square_and_log():
    rules = eeg_layer_map()
    assert set(rules) == {Square, SafeLog}
    assert all(type(r).__name__ == "PassRule" for r in rules.values())


@pytest.mark.parametrize("architecture", ["shallow", "eegnet"])
def test_epochs_too_short_for_the_architecture_are_rejected(architecture):
    with pytest.raises(ValueError, match="too short"):
        build_model(architecture, N_CH, 12)


def test_unknown_architecture_is_rejected():
    with pytest.raises(ValueError, match="Unknown architecture 'resnet'"):
        build_model("resnet", N_CH, N_T)
