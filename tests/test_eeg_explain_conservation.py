"""Through the public API: per-epoch relevance adds up to the explained logit."""
import numpy as np
import pytest
import torch
from torch import nn

from lrp_captum.demos.eeg_simulation import simulate_epochs
from lrp_captum.eeg import EEGModelConfig, build_model, explain_epochs


@pytest.fixture(scope="module")
def epochs():
    return simulate_epochs("motor_imagery", n_epochs=8, seed=9)


@pytest.mark.parametrize("architecture", ["shallow", "eegnet"])
def test_relevance_sum_of_each_epoch_equals_its_logit(epochs, architecture):
    torch.manual_seed(3)
    model = build_model(architecture, 28, 200).eval()
    with torch.no_grad():  # no bias anywhere (BatchNorm without shift): LRP-0 is conservative
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
                m.bias.zero_()
            elif getattr(m, "bias", None) is not None:
                m.bias.zero_()
    model.eeg_config = EEGModelConfig(architecture, list(epochs.ch_names), 100.0, 200, 0.0,
                                      ["left_hand", "right_hand"])
    result = explain_epochs(model, epochs, composite="zero", target="true", device="cpu")
    with torch.no_grad():  # independent reference: the model on the raw data in µV
        logits = model(torch.as_tensor(epochs.get_data() * 1e6, dtype=torch.float32)).numpy()
    expected = logits[np.arange(8), epochs.metadata["label"].to_numpy()]
    sums = result.epochs.get_data().sum((1, 2))
    np.testing.assert_allclose(sums, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_allclose(result.epochs.metadata["relevance_sum"], sums)


def test_lazy_exports_resolve_and_unknown_names_fail():
    import lrp_captum.eeg as eeg

    assert eeg.explain_epochs is explain_epochs
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        eeg.nothing
