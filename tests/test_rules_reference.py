"""Every rule declaration against a textbook reference written out in matrix form.

A linear layer ``z = W x + b`` is reduced to a dense matrix ``W`` (out × in, over the flattened
output and input; the jacobian of the layer with its bias removed) and a bias vector
``b = layer(0)``. Each rule is then written in numpy float64 over the per-edge contributions
``z_jk = x_j W_kj`` (stored as ``Z[k, j]``), independently of how the package evaluates layers,
and compared with every path the engine compiles the declaration into:

1. ``captum``: ``rule.relevance(module, (x,), module(x), R_out)``, the path Captum's ``LRP``
   uses (term by term);
2. ``hooks``: ``lrp_captum.LRP(nn.Sequential(layer), composite=..., canonizers=None)``, which
   propagates relevance per unit of value as the gradient through hooks on the layer;
3. ``fused``: the same with ``canonizers="auto"``: the layer runs as one fused autograd
   function wherever its type allows it (Linear, Conv1d/2d), else through hooks.

Each on signed inputs and on non-negative ones (a ReLU network's hidden layers, where the
sign-aware rules take their stacked / fused evaluations). Stabilisers move a denominator ``d``
to ``d + s·sign(d)`` with ``sign(0) = +1``. A rule declared by a user (``AbsGamma`` below, a
weight modifier ``w + γ|w|`` the package does not know) is in the grid too.
"""
import copy

import numpy as np
import pytest
import torch
from torch import nn

import lrp_captum
from lrp_captum.core.rules import (AlphaBetaRule, EpsilonRule, FlatRule, GammaRule,
                                   GeneralizedGammaRule, Group, Input, PassRule, ProportionalRule,
                                   Term, TermRule, WSquareRule, ZBoxRule, ZeroRule, ZPlusRule,
                                   zbox_bounds)

RTOL = 1e-5
DEFAULT_STABILIZER = 1e-6
# z^B bounds: scalars, and per channel (distinct per channel so broadcasting errors show)
LOW, HIGH = -4.0, 4.0
X_LIMIT = 3.5  # inputs are clipped to [-3.5, 3.5], inside every box below


def _channel_bounds(channels):
    c = np.arange(channels, dtype=np.float64)
    return -4.0 - 0.25 * c, 3.5 + 0.5 * c


# ---------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------
LAYERS = {
    # name: (factory(bias), input shape without batch, has a bias parameter)
    "linear": (lambda bias: nn.Linear(7, 5, bias=bias), (7,), True),
    "conv1d_s2_p1": (lambda bias: nn.Conv1d(3, 4, 3, stride=2, padding=1, bias=bias),
                     (3, 9), True),
    "conv2d_s2_p2_d2": (lambda bias: nn.Conv2d(3, 4, 3, stride=2, padding=2, dilation=2,
                                               bias=bias), (3, 8, 8), True),
    "conv2d_groups2": (lambda bias: nn.Conv2d(4, 6, 3, stride=1, padding=1, groups=2,
                                              bias=bias), (4, 6, 6), True),
    "conv2d_depthwise": (lambda bias: nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=4,
                                                bias=bias), (4, 7, 7), True),
    "convtranspose2d": (lambda bias: nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1,
                                                        output_padding=1, bias=bias),
                        (4, 4, 4), True),
    "avgpool2d": (lambda bias: nn.AvgPool2d(3, stride=2, padding=1), (3, 7, 7), False),
    "adaptiveavgpool2d_5to3": (lambda bias: nn.AdaptiveAvgPool2d(3), (3, 5, 5), False),
}

LAYER_CASES = [pytest.param(name, bias, id=f"{name}-{'bias' if bias else 'nobias'}")
               for name, (_, _, has_bias) in LAYERS.items()
               for bias in ((True, False) if has_bias else (False,))]

_CASE_CACHE: dict = {}


def _case(name, bias, nonnegative=False):
    """Layer (float64, random bias), input, output relevance, and its matrix form.

    ``nonnegative``: the input is ``|x|`` (a ReLU network's hidden layers), where the
    sign-aware rules take their fused path in the fast engine.
    """
    key = (name, bias, nonnegative)
    if key in _CASE_CACHE:
        return _CASE_CACHE[key]
    factory, shape, _ = LAYERS[name]
    seed = sorted(LAYERS).index(name) * 2 + int(bias)
    torch.manual_seed(seed)
    layer = factory(bias).double().eval()
    if getattr(layer, "bias", None) is not None:
        with torch.no_grad():  # default init gives tiny biases; make them matter, both signs
            layer.bias.copy_(torch.randn_like(layer.bias) * 0.5)
    x = torch.randn((1,) + shape, dtype=torch.float64).clamp(-X_LIMIT, X_LIMIT)
    if nonnegative:
        x = x.abs()
    with torch.no_grad():
        out = layer(x)
    relevance_out = torch.randn_like(out)

    unbiased = copy.deepcopy(layer)
    if getattr(unbiased, "bias", None) is not None:
        with torch.no_grad():
            unbiased.bias.zero_()
    W = torch.autograd.functional.jacobian(
        lambda v: unbiased(v.reshape(x.shape)).flatten(), x.flatten()).numpy()
    with torch.no_grad():
        b = layer(torch.zeros_like(x)).flatten().numpy()
    matrix = dict(W=W, b=b, x=x.flatten().numpy(), R=relevance_out.flatten().numpy(),
                  shape=tuple(x.shape))
    # the matrix form reproduces the layer: a check of the reference itself
    np.testing.assert_allclose(W @ matrix["x"] + b, out.flatten().numpy(), rtol=1e-10,
                               atol=1e-12)
    _CASE_CACHE[key] = (layer, x, relevance_out, matrix)
    return _CASE_CACHE[key]


# ---------------------------------------------------------------------------------------------
# textbook references (numpy, float64); Z[k, j] = x_j W_kj, relevance out R[k], returns R[j]
# ---------------------------------------------------------------------------------------------
def _sign(d):
    return np.where(d >= 0, 1.0, -1.0)


def _stab(d, s):
    return d + s * _sign(d)


def _redistribute(numerator, denominator, R):
    """R_j = Σ_k numerator[k, j] / denominator[k] · R_k."""
    return (numerator / denominator[:, None] * R[:, None]).sum(0)


def ref_zero(m):
    Z = m["x"][None, :] * m["W"]
    z = Z.sum(1) + m["b"]
    safe = np.where(z == 0, 1.0, z)
    return (Z / safe[:, None] * np.where(z == 0, 0.0, m["R"])[:, None]).sum(0)


def ref_epsilon(eps, relative=False):
    def ref(m):
        Z = m["x"][None, :] * m["W"]
        z = Z.sum(1) + m["b"]
        e = eps * np.sqrt(np.mean(z ** 2)) if relative else eps
        return _redistribute(Z, _stab(z, e), m["R"])
    return ref


def ref_epsilon_without_bias(eps):
    """The bias left out of the denominator: z'_k = Σ_j x_j W_kj."""
    def ref(m):
        Z = m["x"][None, :] * m["W"]
        return _redistribute(Z, _stab(Z.sum(1), eps), m["R"])
    return ref


def ref_gamma(gamma, modify_bias=True, s=DEFAULT_STABILIZER):
    def ref(m):
        W, b = m["W"], m["b"]
        W_rho = W + gamma * np.maximum(W, 0)
        b_rho = b + gamma * np.maximum(b, 0) if modify_bias else b
        Z = m["x"][None, :] * W_rho
        return _redistribute(Z, _stab(Z.sum(1) + b_rho, s), m["R"])
    return ref


def ref_generalized_gamma(gamma, s=DEFAULT_STABILIZER):
    def ref(m):
        W, b, R = m["W"], m["b"], m["R"]
        Z = m["x"][None, :] * W
        z = Z.sum(1) + b
        up = Z + gamma * np.maximum(Z, 0)
        down = Z + gamma * np.minimum(Z, 0)
        den_up = _stab(up.sum(1) + b + gamma * np.maximum(b, 0), s)
        den_down = _stab(down.sum(1) + b + gamma * np.minimum(b, 0), s)
        out = np.zeros_like(m["x"])
        for k in range(len(z)):
            if z[k] > 0:
                out += up[k] / den_up[k] * R[k]
            elif z[k] < 0:
                out += down[k] / den_down[k] * R[k]
        return out
    return ref


def ref_alpha_beta(alpha, beta, s=DEFAULT_STABILIZER):
    def ref(m):
        b, R = m["b"], m["R"]
        Z = m["x"][None, :] * m["W"]
        Zp, Zn = np.maximum(Z, 0), np.minimum(Z, 0)
        den_p = _stab(Zp.sum(1) + np.maximum(b, 0), s)
        den_n = _stab(Zn.sum(1) + np.minimum(b, 0), s)
        return alpha * _redistribute(Zp, den_p, R) - beta * _redistribute(Zn, den_n, R)
    return ref


def ref_zbox(per_channel, s=DEFAULT_STABILIZER):
    def ref(m):
        W, x = m["W"], m["x"]
        if per_channel:
            full = m["shape"]  # (1, C, ...): bound c applies to every element of channel c
            low_c, high_c = _channel_bounds(full[1])
            per = (1, full[1]) + (1,) * (len(full) - 2)
            low = np.broadcast_to(low_c.reshape(per), full).flatten()
            high = np.broadcast_to(high_c.reshape(per), full).flatten()
        else:
            low, high = np.full_like(x, LOW), np.full_like(x, HIGH)
        N = x[None, :] * W - low[None, :] * np.maximum(W, 0) - high[None, :] * np.minimum(W, 0)
        return _redistribute(N, _stab(N.sum(1), s), m["R"])
    return ref


def ref_flat(s=DEFAULT_STABILIZER):
    def ref(m):
        N = (m["W"] != 0).astype(np.float64)
        return _redistribute(N, _stab(N.sum(1), s), m["R"])
    return ref


def ref_wsquare(s=DEFAULT_STABILIZER):
    def ref(m):
        N = m["W"] ** 2
        return _redistribute(N, _stab(N.sum(1), s), m["R"])
    return ref


def ref_abs_gamma(gamma, s=DEFAULT_STABILIZER):
    """ρ(w) = w + γ|w| on weights and bias (a user's rule)."""
    def ref(m):
        W_rho = m["W"] + gamma * np.abs(m["W"])
        b_rho = m["b"] + gamma * np.abs(m["b"])
        Z = m["x"][None, :] * W_rho
        return _redistribute(Z, _stab(Z.sum(1) + b_rho, s), m["R"])
    return ref


class AbsGamma(TermRule):
    """A rule declared the way a user would: one term, a weight modifier of one's own."""

    def __init__(self, gamma=0.5, stabilizer=1e-6):
        super().__init__(stabilizer)
        self.gamma = gamma

    def groups(self):
        def rho(w):
            return w + self.gamma * w.abs()
        return (Group((Term(Input.X, rho, rho),)),)


def _zbox_rule(per_channel, stabilizer=DEFAULT_STABILIZER):
    def make(name):
        if not per_channel:
            return ZBoxRule(LOW, HIGH, stabilizer=stabilizer)
        low, high = _channel_bounds(LAYERS[name][1][0])
        return ZBoxRule(torch.tensor(low), torch.tensor(high), stabilizer=stabilizer)
    return make


# (id, rule factory taking the layer name, reference)
RULES = [
    ("zero", lambda n: ZeroRule(), ref_zero),
    ("epsilon0.1", lambda n: EpsilonRule(0.1), ref_epsilon(0.1)),
    ("epsilon0.1_relative", lambda n: EpsilonRule(0.1, relative=True),
     ref_epsilon(0.1, relative=True)),
    ("epsilon0.1_without_bias", lambda n: EpsilonRule(0.1, bias=False),
     ref_epsilon_without_bias(0.1)),
    ("epsilon1e-8_without_bias", lambda n: EpsilonRule(1e-8, bias=False),
     ref_epsilon_without_bias(1e-8)),
    ("proportional", lambda n: ProportionalRule(), ref_epsilon(DEFAULT_STABILIZER)),
    ("proportional_s0.1", lambda n: ProportionalRule(0.1), ref_epsilon(0.1)),
    ("gamma0.25", lambda n: GammaRule(0.25), ref_gamma(0.25)),
    ("gamma0.25_unmodified_bias", lambda n: GammaRule(0.25, modify_bias=False),
     ref_gamma(0.25, modify_bias=False)),
    ("gamma1_s0.1", lambda n: GammaRule(1.0, stabilizer=0.1), ref_gamma(1.0, s=0.1)),
    ("generalized_gamma0.25", lambda n: GeneralizedGammaRule(0.25),
     ref_generalized_gamma(0.25)),
    ("generalized_gamma1_s0.1", lambda n: GeneralizedGammaRule(1.0, stabilizer=0.1),
     ref_generalized_gamma(1.0, s=0.1)),
    ("alpha2_beta1", lambda n: AlphaBetaRule(2.0, 1.0), ref_alpha_beta(2.0, 1.0)),
    ("alpha3_beta2_s0.1", lambda n: AlphaBetaRule(3.0, 2.0, stabilizer=0.1),
     ref_alpha_beta(3.0, 2.0, s=0.1)),
    ("alpha1_beta0", lambda n: AlphaBetaRule(1.0, 0.0), ref_alpha_beta(1.0, 0.0)),
    ("zplus", lambda n: ZPlusRule(), ref_alpha_beta(1.0, 0.0)),
    ("zbox_scalar", _zbox_rule(False), ref_zbox(False)),
    ("zbox_per_channel", _zbox_rule(True), ref_zbox(True)),
    ("zbox_scalar_s0.1", _zbox_rule(False, 0.1), ref_zbox(False, s=0.1)),
    ("flat", lambda n: FlatRule(), ref_flat()),
    ("flat_s0.5", lambda n: FlatRule(stabilizer=0.5), ref_flat(s=0.5)),
    ("wsquare", lambda n: WSquareRule(), ref_wsquare()),
    ("wsquare_s0.1", lambda n: WSquareRule(stabilizer=0.1), ref_wsquare(s=0.1)),
    ("user_abs_gamma0.5", lambda n: AbsGamma(0.5), ref_abs_gamma(0.5)),
]


def _reference(ref, name, bias, nonnegative=False):
    return ref(_case(name, bias, nonnegative)[3])


class _ReentryGuard:
    """Fail fast if the engine calls the layer (with its hooks) over and over.

    A rule that re-evaluates a hooked layer through ``module(...)`` re-enters its own hook;
    unguarded that recursion exhausts threads or memory instead of failing.
    """

    LIMIT = 50

    def __init__(self, layer):
        self.calls = 0
        self.handle = layer.register_forward_hook(self)

    def __call__(self, module, inputs, output):
        self.calls += 1
        if self.calls > self.LIMIT:
            raise RuntimeError(
                f"{type(module).__name__} was called {self.calls} times during one "
                "attribute(): the rule re-enters the layer's forward hook")


#: layer types with a fused kernel (dense kernels: Linear and zero-padded convolutions)
FUSED_LAYERS = {"linear", "conv1d_s2_p1", "conv2d_s2_p2_d2", "conv2d_groups2", "conv2d_depthwise"}


def _expected_path(rule_id, name):
    """How the plan runs the layer: fused wherever a dense kernel exists, except LRP-0 (whose
    rule the plain gradient already is)."""
    return "fused" if name in FUSED_LAYERS and rule_id != "zero" else "hooks"


def _lrp(layer, rule, x, relevance_out, canonizers=None):
    model = nn.Sequential(layer).eval()
    composite = lrp_captum.Composite([((type(layer),), rule)])
    # (a layer with a user hook is never fused: guard the hook engine only)
    guard = _ReentryGuard(layer) if canonizers is None else None
    try:
        lrp = lrp_captum.LRP(model, composite=composite, canonizers=canonizers)
        relevance = lrp.attribute(x, output_mode=relevance_out)
    finally:
        if guard is not None:
            guard.handle.remove()
    return relevance, lrp.rule_table(x).paths["0"]


def _relevance(path, layer, rule, x, relevance_out):
    if path == "captum":
        (relevance,) = rule.relevance(layer, (x,), layer(x), relevance_out)
        return relevance, None
    return _lrp(layer, rule, x, relevance_out, canonizers="auto" if path == "fused" else None)


@pytest.mark.parametrize("nonnegative", [False, True], ids=["signed_x", "nonnegative_x"])
@pytest.mark.parametrize("path", ["captum", "hooks", "fused"])
@pytest.mark.parametrize("name,bias", LAYER_CASES)
@pytest.mark.parametrize("rule_id,make_rule,ref", [pytest.param(*r, id=r[0]) for r in RULES])
def test_declaration_matches_textbook_reference(rule_id, make_rule, ref, name, bias, path,
                                                nonnegative):
    layer, x, relevance_out, _ = _case(name, bias, nonnegative)
    expected = _reference(ref, name, bias, nonnegative)
    relevance_in, runs = _relevance(path, layer, make_rule(name), x, relevance_out)
    assert relevance_in.shape == x.shape and relevance_in.dtype == torch.float64
    np.testing.assert_allclose(relevance_in.flatten().numpy(), expected, rtol=RTOL,
                               atol=1e-10 * np.abs(expected).max())
    if path == "fused":
        assert runs == _expected_path(rule_id, name)
    elif path == "hooks":
        assert runs == "hooks"


# ---------------------------------------------------------------------------------------------
# sanity of the references: the settings chosen make each variant differ from its neighbour
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("first,second", [
    (ref_epsilon(0.1), ref_zero),
    (ref_epsilon(0.1, relative=True), ref_epsilon(0.1)),
    (ref_gamma(0.25), ref_gamma(0.25, modify_bias=False)),
    (ref_generalized_gamma(0.25), ref_gamma(0.25)),
    (ref_alpha_beta(2.0, 1.0), ref_alpha_beta(1.0, 0.0)),
    (ref_zbox(True), ref_zbox(False)),
    (ref_flat(0.5), ref_flat()),
], ids=["epsilon", "relative", "gamma_bias", "generalized", "alpha_beta", "zbox_channels",
        "stabilizer"])
def test_reference_variants_differ_on_conv_with_bias(first, second):
    a = _reference(first, "conv2d_s2_p2_d2", True)
    b = _reference(second, "conv2d_s2_p2_d2", True)
    assert not np.allclose(a, b, rtol=1e-3)


# ---------------------------------------------------------------------------------------------
# elementwise layers, αβ validation, z^B bounds
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", [nn.ELU(), nn.SiLU(), nn.Tanh(), nn.GELU()],
                         ids=lambda m: type(m).__name__)
def test_pass_rule_returns_output_relevance_unchanged(activation):
    torch.manual_seed(3)
    x = torch.randn(1, 3, 5, 5, dtype=torch.float64)
    relevance_out = torch.randn_like(x)
    (captum_path,) = PassRule().relevance(activation, (x,), activation(x), relevance_out)
    assert torch.equal(captum_path, relevance_out)
    engine, _ = _lrp(activation, PassRule(), x, relevance_out)
    np.testing.assert_allclose(engine.numpy(), relevance_out.numpy(), rtol=RTOL)


@pytest.mark.parametrize("alpha,beta", [(1.5, 1.0), (2.0, 2.0), (0.5, 0.0), (-1.0, -2.0),
                                        (1.0, -0.0001)])
def test_alpha_beta_rejects_non_conservative_or_negative_parameters(alpha, beta):
    with pytest.raises(ValueError):
        AlphaBetaRule(alpha, beta)


@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (2.0, 1.0), (3.5, 2.5)])
def test_alpha_beta_accepts_conservative_parameters(alpha, beta):
    rule = AlphaBetaRule(alpha, beta)
    assert (rule.alpha, rule.beta) == (alpha, beta)


@pytest.mark.parametrize("pixel_range", [(0.0, 1.0), (0.0, 255.0), (-1.0, 1.0)])
def test_zbox_bounds_are_normalised_pixel_extremes(pixel_range):
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    low, high = zbox_bounds(tuple(mean), tuple(std), pixel_range)
    assert low.shape == high.shape == (3,)
    np.testing.assert_allclose(low.numpy(), (pixel_range[0] - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(high.numpy(), (pixel_range[1] - mean) / std, rtol=1e-6)


def test_zbox_bounds_reject_non_positive_std_and_empty_range():
    with pytest.raises(ValueError):
        zbox_bounds((0.5,), (0.0,))
    with pytest.raises(ValueError):
        zbox_bounds((0.5,), (0.2,), (1.0, 0.0))
