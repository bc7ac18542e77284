"""explain_epochs never changes the user's model: a model in training mode is explained in
evaluation mode (lrp_captum.core.model_mode) and comes back exactly as it was."""
import copy

import numpy as np
import pytest
import torch

from lrp_captum.eeg.explain import explain_epochs
from lrp_captum.eeg.models import build_model
from lrp_captum.demos.eeg_simulation import simulate_epochs
from lrp_captum.eeg.model_folder import EEGModelConfig


@pytest.fixture(scope="module")
def epochs():
    return simulate_epochs("erp", n_epochs=8, seed=6)


def _model(epochs):
    torch.manual_seed(0)
    net = build_model("eegnet", len(epochs.ch_names), len(epochs.times))
    with torch.no_grad():  # running statistics that a training-mode forward would overwrite
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    net.eeg_config = EEGModelConfig(
        architecture="eegnet", ch_names=list(epochs.ch_names), sfreq=epochs.info["sfreq"],
        n_times=len(epochs.times), tmin=float(epochs.tmin),
        class_names=["non_target", "target"])
    return net


def test_model_in_training_mode_comes_back_in_training_mode_with_identical_state(epochs):
    model = _model(epochs).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning, match="training mode"):
        result = explain_epochs(model, epochs, device="cpu")
    assert all(m.training for m in model.modules())
    after = model.state_dict()
    assert set(after) == set(before)
    for k, v in before.items():
        assert torch.equal(after[k], v), k
    reference = copy.deepcopy(model).eval()
    expected = explain_epochs(reference, epochs, device="cpu")
    np.testing.assert_array_equal(result.epochs.get_data(), expected.epochs.get_data())
    np.testing.assert_array_equal(result.logits, expected.logits)


def test_a_partly_evaluating_model_keeps_each_modules_flag(epochs):
    model = _model(epochs).train()
    model.bn2.eval()  # a mixed state must come back mixed
    flags = [m.training for m in model.modules()]
    with pytest.warns(UserWarning, match="training mode"):
        explain_epochs(model, epochs, device="cpu")
    assert [m.training for m in model.modules()] == flags


def test_model_in_eval_mode_stays_in_eval_mode(epochs):
    model = _model(epochs).eval()
    explain_epochs(model, epochs, device="cpu")
    assert not any(m.training for m in model.modules())
