"""Region perturbation / pixel flipping curves, AOPC, baselines and selectivity."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from lrp_captum.evaluation import metrics as M


def _small_cnn(in_channels: int, n_classes: int = 3, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, n_classes)).eval()


class _Linear(nn.Module):
    """f(x)_c = sum_i w_ci x_i without bias: input x gradient decomposes it exactly."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)  # (K, C, *S)

    def forward(self, x):
        return torch.einsum("n...,k...->nk", x, self.weight)


def _quantus_region_curve(model, x, y, a, order, patch_size, baseline, n_regions, softmax):
    import quantus

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = quantus.RegionPerturbation(patch_size=patch_size, regions_evaluation=n_regions,
                                            order=order, perturb_baseline=baseline,
                                            disable_warnings=True)
        return np.array(metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
                               device="cpu", softmax=softmax))


def test_morf_curve_equals_quantus_region_perturbation():
    model = _small_cnn(3)
    gen = torch.Generator().manual_seed(1)
    x, a = torch.rand(5, 3, 18, 17, generator=gen), torch.randn(5, 3, 18, 17, generator=gen)
    y = torch.tensor([0, 1, 2, 0, 1])
    ours = M.perturbation_curve(model, x, a, y, patch_size=4, order="morf", baseline=0.3, n_steps=12)
    theirs = _quantus_region_curve(model, x, y, a, "morf", 4, 0.3, 12, softmax=False)
    # quantus reports the drop f(x) - f(x_k) for k = 1..L
    np.testing.assert_allclose((ours[:, :1] - ours[:, 1:]).numpy(), theirs, atol=1e-6)


def test_lerf_curve_equals_quantus_region_perturbation_with_probabilities():
    model = _small_cnn(3)
    gen = torch.Generator().manual_seed(2)
    x, a = torch.rand(4, 3, 16, 16, generator=gen), torch.randn(4, 1, 16, 16, generator=gen)
    y = torch.tensor([2, 1, 0, 2])
    ours = M.perturbation_curve(model, x, a, y, patch_size=4, order="lerf", baseline=0.0,
                                output="probability")
    theirs = _quantus_region_curve(model, x, y, a, "lerf", 4, 0.0, 16, softmax=True)
    np.testing.assert_allclose((ours[:, :1] - ours[:, 1:]).numpy(), theirs, atol=1e-6)


def test_pixel_flipping_curve_equals_quantus_pixel_flipping():
    import quantus

    model = _small_cnn(1)
    gen = torch.Generator().manual_seed(3)
    x, a = torch.rand(5, 1, 10, 10, generator=gen), torch.randn(5, 1, 10, 10, generator=gen)
    y = torch.tensor([0, 1, 2, 0, 1])
    ours = M.perturbation_curve(model, x, a, y, patch_size=1, patches_per_step=5, baseline="zeros",
                                output="probability")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = quantus.PixelFlipping(features_in_step=5, perturb_baseline=0.0, disable_warnings=True)
        theirs = np.array(metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
                                 device="cpu"))
    # quantus reports f(x_k) for k = 1..L
    np.testing.assert_allclose(ours[:, 1:].numpy(), theirs, atol=1e-6)


def test_morf_curve_of_linear_model_removes_largest_contributions_first():
    gen = torch.Generator().manual_seed(4)
    w = torch.randn(2, 1, 6, 6, generator=gen)
    model = _Linear(w).eval()
    x = torch.rand(3, 1, 6, 6, generator=gen)
    contrib = (x * w[1]).reshape(3, -1).numpy()  # exact per-pixel contributions to class 1
    curve = M.perturbation_curve(model, x, torch.from_numpy(contrib).view(3, 1, 6, 6), 1,
                                 patch_size=1, baseline="zeros")
    expected = contrib.sum(1, keepdims=True) - np.concatenate(
        [np.zeros((3, 1)), np.cumsum(-np.sort(-contrib, axis=1), axis=1)], axis=1)
    np.testing.assert_allclose(curve.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_curve_on_one_dimensional_signals_uses_windows_of_patch_size():
    gen = torch.Generator().manual_seed(5)
    w = torch.randn(1, 2, 12, generator=gen)
    model = _Linear(w).eval()
    x = torch.rand(2, 2, 12, generator=gen)
    contrib = (x * w[0]).sum(1).reshape(2, 4, 3).sum(2).numpy()  # 4 windows of 3 samples
    curve = M.perturbation_curve(model, x, x * w[0], 0, patch_size=3, baseline="zeros")
    expected = contrib.sum(1, keepdims=True) - np.concatenate(
        [np.zeros((2, 1)), np.cumsum(-np.sort(-contrib, axis=1), axis=1)], axis=1)
    np.testing.assert_allclose(curve.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_last_step_equals_output_on_the_baseline_image():
    model = _small_cnn(3)
    x, a = torch.rand(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    curve = M.perturbation_curve(model, x, a, 0, patch_size=4, baseline="mean")
    base = M.perturbation_baseline(x, "mean")
    np.testing.assert_allclose(curve[:, -1].numpy(), model(base)[:, 0].detach().numpy(), rtol=1e-5, atol=1e-6)


def test_aopc_averages_the_drop_over_all_steps_including_step_zero():
    curve = torch.tensor([[3.0, 2.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    torch.testing.assert_close(M.aopc(curve), torch.tensor([(0 + 1 + 2 + 3) / 4, 0.0]))


def test_region_perturbation_abpc_is_mean_gap_between_lerf_and_morf():
    gen = torch.Generator().manual_seed(6)
    w = torch.randn(1, 1, 8, 8, generator=gen)
    model = _Linear(w).eval()
    x = torch.rand(4, 1, 8, 8, generator=gen)
    res = M.region_perturbation(model, x, x * w[0], 0, patch_size=2, baseline="zeros")
    assert (res.aopc_morf > res.aopc_lerf).all()
    torch.testing.assert_close(res.abpc, res.aopc_morf - res.aopc_lerf)


def test_explainer_callable_gives_same_curve_as_its_attributions():
    from captum.attr import InputXGradient

    model = _small_cnn(3)
    x = torch.rand(3, 3, 8, 8)
    explain = M.captum_explainer(InputXGradient)
    a = explain(model, x, torch.tensor([0, 1, 2]))
    c1 = M.perturbation_curve(model, x, a, [0, 1, 2], patch_size=2)
    c2 = M.perturbation_curve(model, x, explain, [0, 1, 2], patch_size=2)
    torch.testing.assert_close(c1, c2)


def test_mean_baseline_is_per_image_per_channel_mean():
    x = torch.rand(2, 3, 5, 7)
    base = M.perturbation_baseline(x, "mean")
    np.testing.assert_allclose(base[1, 2, 4, 6].item(), x[1, 2].numpy().mean(), rtol=1e-6)
    assert base.shape == x.shape


def test_blur_baseline_keeps_constant_image_and_spreads_an_impulse():
    const = torch.full((1, 1, 9, 9), 0.7)
    torch.testing.assert_close(M.perturbation_baseline(const, "blur", blur_sigma=1.5), const)
    impulse = torch.zeros(1, 1, 21, 21)
    impulse[0, 0, 10, 10] = 1.0
    blurred = M.perturbation_baseline(impulse, "blur", blur_sigma=2.0)
    assert blurred[0, 0, 10, 10] < 0.1 and blurred[0, 0, 10, 12] > 0.01
    np.testing.assert_allclose(blurred.sum().item(), 1.0, rtol=1e-4)


def test_uniform_baseline_lies_in_each_images_range_and_is_seeded():
    x = torch.stack([torch.rand(1, 6, 6) * 0.1, 5 + torch.rand(1, 6, 6)])
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    b1 = M.perturbation_baseline(x, "uniform", generator=g1)
    assert b1[0].min() >= x[0].min() and b1[0].max() <= x[0].max()
    assert b1[1].min() >= x[1].min() and b1[1].max() <= x[1].max()
    torch.testing.assert_close(b1, M.perturbation_baseline(x, "uniform", generator=g2))


def test_given_value_and_tensor_baselines_are_used_verbatim():
    x = torch.rand(2, 3, 4, 4)
    assert (M.perturbation_baseline(x, 0.25) == 0.25).all()
    value = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)
    torch.testing.assert_close(M.perturbation_baseline(x, value)[1, :, 3, 3], torch.tensor([0.1, 0.2, 0.3]))


def test_unknown_baseline_name_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="zeros"):
        M.perturbation_baseline(torch.rand(1, 1, 4, 4), "gray")


def test_uniform_explanation_has_zero_selectivity():
    model = _small_cnn(3)
    x = torch.rand(4, 3, 8, 8)
    uniform = torch.ones_like(x)
    sel = M.selectivity(model, x, uniform, 0, patch_size=2, n_random=1)
    torch.testing.assert_close(sel, torch.zeros(4))


def test_exact_contributions_are_more_selective_than_random_order():
    gen = torch.Generator().manual_seed(8)
    w = torch.randn(1, 1, 8, 8, generator=gen)
    model = _Linear(w).eval()
    x = torch.rand(6, 1, 8, 8, generator=gen)
    sel = M.selectivity(model, x, x * w[0], 0, patch_size=2, baseline="zeros", n_random=3)
    assert (sel > 0).all()


def test_attributions_of_wrong_shape_are_rejected_naming_both_shapes():
    model = _small_cnn(3)
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\).*\(2, 3, 8, 8\)"):
        M.perturbation_curve(model, torch.rand(2, 3, 8, 8), torch.rand(2, 3, 4, 4), 0)


def test_curve_stays_on_the_device_and_dtype_of_the_inputs():
    model = _small_cnn(3).double()
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    curve = M.perturbation_curve(model, x, torch.rand_like(x), 0, patch_size=4)
    assert curve.dtype == torch.float64 and curve.device == x.device and curve.shape == (2, 5)
