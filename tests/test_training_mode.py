"""A model left in training mode is explained in evaluation mode and comes back as it was."""
import warnings

import pytest
import torch
from torch import nn

from lrp_captum import LRP, LayerLRP
from lrp_captum.core.model_mode import evaluation_mode, mode_dependent_modules


def _mlp(dropout: float = 0.0, batchnorm: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    layers = [nn.Linear(6, 8)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(8))
    layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(8, 3)]
    return nn.Sequential(*layers)


def test_mode_independent_model_runs_in_training_mode_without_warning():
    model = _mlp(dropout=0.0).train()
    x = torch.randn(4, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rel = LRP(model).attribute(x, target=1)
    expected = LRP(model.eval()).attribute(x, target=1)
    torch.testing.assert_close(rel, expected)


def test_dropout_model_is_explained_in_eval_mode_with_one_warning_and_restored():
    model = _mlp(dropout=0.5).train()
    model[1].eval()  # a mixed state must come back mixed
    flags = [m.training for m in model.modules()]
    x = torch.randn(4, 6)
    lrp = LRP(model)
    with pytest.warns(UserWarning, match="training mode") as record:
        first = lrp.attribute(x, target=0)
        second = lrp.attribute(x, target=0)
    assert len([w for w in record if "training mode" in str(w.message)]) == 1
    assert [m.training for m in model.modules()] == flags
    torch.testing.assert_close(first, second)  # dropout was off: deterministic
    model.eval()
    torch.testing.assert_close(first, LRP(model).attribute(x, target=0))


def test_batchnorm_statistics_are_not_updated_and_flags_restored_after_an_error():
    model = _mlp(batchnorm=True).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.warns(UserWarning):
        with pytest.raises(ValueError):
            LayerLRP(model, model[0]).attribute(torch.randn(4, 6), target=7)
    assert all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_user_module_reading_the_training_flag_counts_as_mode_dependent():
    class Noisy(nn.Module):
        def forward(self, x):
            return x + torch.randn_like(x) if self.training else x

    model = nn.Sequential(nn.Linear(2, 2), Noisy()).train()
    assert mode_dependent_modules(model) == ["1"]
    with evaluation_mode(model, warn=False):
        assert not any(m.training for m in model.modules())
    assert all(m.training for m in model.modules())
