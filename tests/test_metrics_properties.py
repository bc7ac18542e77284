"""Conservation, continuity, model randomisation and ground-truth localisation metrics."""
import numpy as np
import pytest
import torch
from captum.attr import InputXGradient, Occlusion, Saliency
from torch import nn

from lrp_captum.evaluation import metrics as M


class _Linear(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(weight)  # (K, C, H, W)
        self.bias = bias

    def forward(self, x):
        return torch.einsum("nchw,kchw->nk", x, self.weight) + self.bias


def _mlp_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 16), nn.ReLU(),
                         nn.Linear(16, 3)).eval()


def test_input_x_gradient_of_bias_free_linear_model_is_conservative():
    model = _Linear(torch.randn(2, 1, 5, 5)).eval()
    x = torch.rand(4, 1, 5, 5)
    err = M.conservation_error(model, x, M.captum_explainer(InputXGradient), [0, 1, 0, 1])
    assert err.max() < 1e-5


def test_conservation_error_equals_the_bias_a_linear_model_adds():
    w = torch.randn(1, 1, 4, 4)
    model = _Linear(w, bias=0.5).eval()
    x = torch.rand(3, 1, 4, 4)
    err = M.conservation_error(model, x, x * w[0], 0)
    np.testing.assert_allclose(err.numpy(), 0.5, rtol=1e-5)
    rel = M.conservation_error(model, x, x * w[0], 0, relative=True)
    f = model(x)[:, 0].detach()
    np.testing.assert_allclose(rel.numpy(), (0.5 / f.abs()).numpy(), rtol=1e-5)


def test_conservation_against_a_given_explained_output():
    x = torch.rand(2, 1, 3, 3)
    a = torch.full_like(x, 0.1)  # sums to 0.9
    model = _Linear(torch.randn(1, 1, 3, 3)).eval()
    err = M.conservation_error(model, x, a, 0, explained_output=torch.tensor([0.9, 1.9]))
    np.testing.assert_allclose(err.numpy(), [0.0, 1.0], atol=1e-6)


def test_continuity_of_input_x_gradient_on_uniform_linear_model_is_one():
    # R = c * x: the explanation changes exactly as much (relatively) as the input
    model = _Linear(torch.full((1, 1, 6, 6), 0.3)).eval()
    x = torch.rand(3, 1, 6, 6) + 0.5
    cont = M.continuity(model, M.captum_explainer(InputXGradient), x, 0, scale=0.05, n_samples=3)
    np.testing.assert_allclose(cont.numpy(), 1.0, rtol=1e-4)


def test_continuity_of_input_independent_explanation_is_zero_under_shift():
    model = _Linear(torch.randn(1, 1, 6, 6)).eval()
    x = torch.rand(2, 1, 6, 6)
    constant = lambda m, inp, t: torch.ones_like(inp)  # noqa: E731
    cont = M.continuity(model, constant, x, 0, perturbation="shift", n_samples=2)
    torch.testing.assert_close(cont, torch.zeros(2))


def test_gradient_of_relu_network_is_less_continuous_than_occlusion():
    model = _mlp_cnn()
    x = torch.rand(6, 1, 8, 8)
    grad = M.continuity(model, M.captum_explainer(Saliency, abs=False), x, 0, scale=0.05, n_samples=3)
    occ = M.continuity(model, M.captum_explainer(Occlusion, sliding_window_shapes=(1, 4, 4),
                                                 strides=(1, 4, 4)), x, 0, scale=0.05, n_samples=3)
    assert grad.median() > occ.median()


def test_model_randomisation_leaves_the_users_model_untouched():
    model = _mlp_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    M.model_randomisation(model, M.captum_explainer(Saliency, abs=False), torch.rand(2, 1, 8, 8), 0,
                          layers=2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_model_independent_explanation_is_flagged_by_similarity_one():
    model = _mlp_cnn()
    x = torch.rand(4, 1, 8, 8)
    edge_detector = lambda m, inp, t: inp - inp.roll(1, dims=-1)  # noqa: E731
    sim = M.model_randomisation(model, edge_detector, x, 0, layers=2)
    torch.testing.assert_close(sim, torch.ones(4))


def test_gradient_changes_when_top_layers_are_randomised():
    model = _mlp_cnn()
    x = torch.rand(4, 1, 8, 8)
    sim = M.model_randomisation(model, M.captum_explainer(Saliency, abs=False), x, 0, layers=2)
    assert sim.max() < 0.9


def test_randomising_named_layer_that_does_not_exist_names_the_layers():
    with pytest.raises(ValueError, match="no module named"):
        M.model_randomisation(_mlp_cnn(), lambda m, x, t: x, torch.rand(1, 1, 8, 8), 0,
                              layers=["fc9"])


def test_spearman_similarity_is_rank_correlation():
    model = _mlp_cnn()
    x = torch.rand(1, 1, 8, 8)
    calls = []

    def explain(m, inp, t):
        calls.append(m)
        base = torch.arange(64, dtype=torch.float32).view(1, 1, 8, 8)
        return base if len(calls) == 1 else base.flip(-1)

    sim = M.model_randomisation(model, explain, x, 0, layers=1)
    from scipy.stats import spearmanr

    expected = spearmanr(np.arange(64), np.arange(64).reshape(8, 8)[:, ::-1].ravel()).statistic
    np.testing.assert_allclose(sim.item(), expected, rtol=1e-6)


def test_relevance_mass_accuracy_counts_only_positive_relevance():
    a = torch.zeros(1, 2, 2, 2)
    a[0, 0, 0, 0], a[0, 1, 0, 0] = 1.0, 1.0  # 2 inside
    a[0, 0, 1, 1] = 2.0  # 2 outside
    a[0, 0, 1, 0] = -5.0  # negative outside: ignored
    mask = torch.tensor([[[True, False], [False, False]]])
    torch.testing.assert_close(M.relevance_mass_accuracy(a, mask), torch.tensor([0.5]))


def test_mask_with_a_channel_axis_gives_the_same_mass_accuracy():
    a = torch.randn(3, 3, 5, 5)
    mask = torch.rand(3, 5, 5) > 0.5
    torch.testing.assert_close(M.relevance_mass_accuracy(a, mask[:, None]),
                               M.relevance_mass_accuracy(a, mask))


def test_pointing_game_hits_when_maximum_is_inside_the_mask():
    a = torch.zeros(2, 1, 3, 3)
    a[0, 0, 1, 1], a[1, 0, 2, 2] = 1.0, 1.0
    mask = torch.zeros(2, 3, 3, dtype=torch.bool)
    mask[:, 1, 1] = True
    torch.testing.assert_close(M.pointing_game(a, mask), torch.tensor([1.0, 0.0]))


def test_captum_explainer_sends_constructor_and_attribute_arguments_to_the_right_place():
    from lrp_captum import LRP

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).eval()
    x = torch.rand(2, 1, 4, 4)
    occ = M.captum_explainer(Occlusion, sliding_window_shapes=(1, 2, 2), strides=(1, 2, 2))(model, x, torch.tensor([0, 1]))
    assert occ.shape == x.shape
    lrp = M.captum_explainer(LRP, composite="zero")(model, x, torch.tensor([0, 1]))
    ixg = M.captum_explainer(InputXGradient)(model, x, torch.tensor([0, 1]))
    torch.testing.assert_close(lrp, ixg, rtol=1e-4, atol=1e-6)


def test_pointing_game_points_at_the_largest_positive_relevance_not_the_largest_magnitude():
    # the strongest evidence *against* the class lies outside the mask: it is not where the
    # explanation points
    a = torch.zeros(1, 1, 3, 3)
    a[0, 0, 1, 1] = 1.0
    a[0, 0, 0, 0] = -5.0
    mask = torch.zeros(1, 3, 3, dtype=torch.bool)
    mask[0, 1, 1] = True
    torch.testing.assert_close(M.pointing_game(a, mask), torch.tensor([1.0]))
    torch.testing.assert_close(M.pointing_game(-a, mask), torch.tensor([0.0]))
