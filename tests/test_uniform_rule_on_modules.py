"""``UniformRule`` on a module that multiplies two relevance-carrying inputs (AttnLRP's uniform
rule): each factor receives half of the product's relevance, checked against the matrix form
in float64 on the hook path and on the canonized model."""
import numpy as np
import pytest
import torch
from torch import nn

from lrp_captum import LRP, get_composite
from lrp_captum.core.rules import UniformRule


class Product(nn.Module):
    def forward(self, a, b):
        return a * b


class Bilinear(nn.Module):
    """``head(left(x) ⊙ right(x))``, no biases (LRP-0 then conserves everywhere)."""

    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Linear(4, 3, bias=False), nn.Linear(4, 3, bias=False)
        self.product = Product()
        self.head = nn.Linear(3, 2, bias=False)

    def forward(self, x):
        return self.head(self.product(self.left(x), self.right(x)))


def _reference(model: Bilinear, x: np.ndarray, target: int) -> np.ndarray:
    wl, wr, wh = (m.weight.detach().numpy() for m in (model.left, model.right, model.head))
    a, b = x @ wl.T, x @ wr.T
    r_product = (a * b) * wh[target]              # LRP-0 at the head: R_j = p_j w_j
    r_a = r_b = r_product / 2                     # the uniform rule: an equal share per factor

    def lrp0(w, z, r):                            # R_i = Σ_j x_i w_ji / z_j · R_j
        return x * ((r / z) @ w)

    return lrp0(wl, a, r_a) + lrp0(wr, b, r_b)


@pytest.mark.parametrize("canonizers", [None, "default"])
def test_each_factor_of_a_product_module_gets_half_of_its_relevance(canonizers):
    torch.manual_seed(0)
    model = Bilinear().double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    composite = get_composite("zero", layer_map={Product: UniformRule()})
    relevance = LRP(model, composite=composite, canonizers=canonizers).attribute(x, target=1)
    np.testing.assert_allclose(relevance.numpy(), _reference(model, x.numpy(), 1), rtol=1e-10,
                               atol=1e-12)


class Product3(nn.Module):
    def forward(self, a, b, c):
        return a * b * c


class Trilinear(nn.Module):
    """``head(u(x) ⊙ v(x) ⊙ w(x))``: three factors, each to get a third."""

    def __init__(self):
        super().__init__()
        self.u, self.v, self.w = (nn.Linear(4, 3, bias=False) for _ in range(3))
        self.product = Product3()
        self.head = nn.Linear(3, 2, bias=False)

    def forward(self, x):
        return self.head(self.product(self.u(x), self.v(x), self.w(x)))


@pytest.mark.parametrize("canonizers", [None, "default"])
def test_each_of_three_factors_gets_a_third_of_the_relevance(canonizers):
    torch.manual_seed(1)
    model = Trilinear().double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    composite = get_composite("zero", layer_map={Product3: UniformRule()})
    relevance = LRP(model, composite=composite, canonizers=canonizers).attribute(x, target=0)
    xs = x.numpy()
    ws = [m.weight.detach().numpy() for m in (model.u, model.v, model.w)]
    zs = [xs @ w.T for w in ws]
    r_product = zs[0] * zs[1] * zs[2] * model.head.weight.detach().numpy()[0]
    expected = sum(xs * ((r_product / 3 / z) @ w) for w, z in zip(ws, zs))
    np.testing.assert_allclose(relevance.numpy(), expected, rtol=1e-10, atol=1e-12)
