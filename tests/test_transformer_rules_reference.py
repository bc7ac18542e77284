"""The transformer rules (AttnLRP, CP-LRP) on one attention block against a hand-written
reference in matrix form (numpy, float64).

The block is written the way users write attention: ``torch.matmul`` / ``@``, ``softmax``,
``nn.LayerNorm``, ``nn.GELU``, two heads; the same block through
``F.scaled_dot_product_attention`` and through ``nn.MultiheadAttention`` must give the same
relevances. The reference redistributes relevance explicitly, layer by layer, in the form the
papers write the rules (not as gradients):

* linear layers ``y = W h + b``: LRP-ε, ``R_h[j] = Σ_i h_j W_ij / (y_i ± ε) R_y[i]``;
* the residual sum ``r = x + y``: in proportion to the summands;
* ``o = A v`` and ``S = q kᵀ / √d``: the contributions ``A_ts v_si`` (``q_ti k_si / √d``) share
  ``R_o[t, i]`` (``R_S[t, s]``) in proportion; CP-LRP gives all of it to ``v`` (``A`` is a
  constant), AttnLRP half to each factor (uniform rule);
* softmax (AttnLRP): ``R_S[t, s] = S_ts (R_A[t, s] − A_ts Σ_s' R_A[t, s'])``;
* LayerNorm with the scale ``1/σ_t`` constant: the linear map ``M_t = diag(w)(I − 1/n)/σ_t``,
  ``R_x[t, j] = Σ_i x_tj M_t[i, j] / h_ti · R_h[t, i]``;
* GELU: identity, ``R_in = R_out``.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrp_captum import LRP, get_composite

D, HEADS, TOKENS, EPS = 8, 2, 5, 1e-6


class Block(nn.Module):
    """Pre-LN attention block with an MLP, and a linear head on token 0."""

    def __init__(self, attention: str = "matmul"):
        super().__init__()
        self.attention = attention
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.fc1, self.act, self.fc2 = nn.Linear(D, 2 * D), nn.GELU(), nn.Linear(2 * D, D)
        self.head = nn.Linear(D, 3)

    def heads(self, t):
        return t.reshape(t.shape[0], t.shape[1], HEADS, D // HEADS).transpose(1, 2)

    def forward(self, x):
        h = self.ln1(x)
        q, k, v = self.heads(self.q(h)), self.heads(self.k(h)), self.heads(self.v(h))
        if self.attention == "matmul":
            a = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(D // HEADS), -1)
            o = a @ v
        else:
            o = F.scaled_dot_product_attention(q, k, v)
        x = x + self.o(o.transpose(1, 2).reshape(x.shape))
        x = x + self.fc2(self.act(self.fc1(self.ln2(x))))
        return self.head(x[:, 0])


class MHABlock(Block):
    """The same block through nn.MultiheadAttention (its weights copied from ``block``)."""

    def __init__(self, block: Block):
        super().__init__()
        self.load_state_dict(block.state_dict())
        self.mha = nn.MultiheadAttention(D, HEADS, batch_first=True)
        with torch.no_grad():
            self.mha.in_proj_weight.copy_(torch.cat([block.q.weight, block.k.weight,
                                                     block.v.weight]))
            self.mha.in_proj_bias.copy_(torch.cat([block.q.bias, block.k.bias, block.v.bias]))
            self.mha.out_proj.weight.copy_(block.o.weight)
            self.mha.out_proj.bias.copy_(block.o.bias)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.mha(h, h, h, need_weights=False)[0]
        x = x + self.fc2(self.act(self.fc1(self.ln2(x))))
        return self.head(x[:, 0])


@pytest.fixture(scope="module")
def block():
    torch.manual_seed(0)
    model = Block().double().eval()
    with torch.no_grad():
        for m in model.modules():  # LayerNorm affine parameters that matter
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
    return model


# ---------------------------------------------------------------------------------------------
# the reference
# ---------------------------------------------------------------------------------------------
def _p(t):
    return t.detach().numpy().astype(np.float64)


def _stab(d, s):
    return d + s * np.where(d >= 0, 1.0, -1.0)


def _linear(h, layer, R_y, eps=EPS):
    """LRP-ε through y = h Wᵀ + b (rows: tokens)."""
    W, b = _p(layer.weight), _p(layer.bias)
    y = h @ W.T + b
    return h * ((R_y / _stab(y, eps)) @ W), y


def _layer_norm(x, ln, R_h):
    """LRP-0 through the LayerNorm seen as a linear map with its scale constant."""
    w, b, n = _p(ln.weight), _p(ln.bias), x.shape[-1]
    sigma = np.sqrt(x.var(-1, keepdims=True) + ln.eps)
    h = (x - x.mean(-1, keepdims=True)) / sigma * w + b
    R_x = np.zeros_like(x)
    for t in range(x.shape[0]):
        M = np.diag(w) @ (np.eye(n) - 1.0 / n) / sigma[t]
        R_x[t] = (x[t][None, :] * M / h[t][:, None] * R_h[t][:, None]).sum(0)
    return R_x, h


def _gelu(z):
    return 0.5 * z * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))


def reference(model: Block, x: torch.Tensor, target: int, rule: str) -> np.ndarray:
    """Input relevance of one example ``x`` (T, D) for logit ``target``."""
    x0 = _p(x)
    d = D // HEADS
    # forward
    _, h1 = _layer_norm(x0, model.ln1, np.zeros_like(x0))
    q, k, v = (h1 @ _p(m.weight).T + _p(m.bias) for m in (model.q, model.k, model.v))
    S = np.zeros((HEADS, TOKENS, TOKENS))
    A = np.zeros_like(S)
    o = np.zeros((TOKENS, D))
    for a in range(HEADS):
        sl = slice(a * d, (a + 1) * d)
        S[a] = q[:, sl] @ k[:, sl].T / math.sqrt(d)
        A[a] = np.exp(S[a] - S[a].max(-1, keepdims=True))
        A[a] /= A[a].sum(-1, keepdims=True)
        o[:, sl] = A[a] @ v[:, sl]
    y = o @ _p(model.o.weight).T + _p(model.o.bias)
    r1 = x0 + y
    _, h2 = _layer_norm(r1, model.ln2, np.zeros_like(r1))
    u = h2 @ _p(model.fc1.weight).T + _p(model.fc1.bias)
    g = _gelu(u)
    m = g @ _p(model.fc2.weight).T + _p(model.fc2.bias)
    r2 = r1 + m
    # backward: relevance
    W, b = _p(model.head.weight), _p(model.head.bias)
    z = r2[0] @ W.T + b
    R_z = np.zeros_like(z)
    R_z[target] = z[target]
    R_r2 = np.zeros_like(r2)
    R_r2[0] = r2[0] * ((R_z / _stab(z, EPS)) @ W)
    R_r1, R_m = r1 / r2 * R_r2, m / r2 * R_r2  # residual: proportional
    R_g, _ = _linear(g, model.fc2, R_m)
    R_u = R_g  # GELU: identity
    R_h2, _ = _linear(h2, model.fc1, R_u)
    R_r1_ln, _ = _layer_norm(r1, model.ln2, R_h2)
    R_r1 = R_r1 + R_r1_ln
    R_x, R_y = x0 / r1 * R_r1, y / r1 * R_r1
    R_o, _ = _linear(o, model.o, R_y)
    R_q, R_k, R_v = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for a in range(HEADS):
        sl = slice(a * d, (a + 1) * d)
        # o[t, i] = Σ_s A[t, s] v[s, i]: contributions C[t, s, i]
        C = A[a][:, :, None] * v[:, sl][None, :, :]
        share = C / o[:, sl][:, None, :] * R_o[:, sl][:, None, :]
        if rule == "cp_lrp":
            R_v[:, sl] = share.sum(0)
            continue
        R_v[:, sl] = 0.5 * share.sum(0)
        R_A = 0.5 * share.sum(2)
        R_S = S[a] * (R_A - A[a] * R_A.sum(-1, keepdims=True))
        # S[t, s] = Σ_i q[t, i] k[s, i] / √d
        Cq = q[:, sl][:, None, :] * k[:, sl][None, :, :] / math.sqrt(d)
        share = Cq / S[a][:, :, None] * R_S[:, :, None]
        R_q[:, sl] = 0.5 * share.sum(1)
        R_k[:, sl] = 0.5 * share.sum(0)
    R_h1 = sum(_linear(h1, layer, R)[0] for layer, R in ((model.q, R_q), (model.k, R_k),
                                                          (model.v, R_v)))
    R_x_ln, _ = _layer_norm(x0, model.ln1, R_h1)
    return R_x + R_x_ln


# ---------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("attention", ["matmul", "sdpa", "multihead"])
@pytest.mark.parametrize("rule", ["cp_lrp", "attnlrp"])
def test_attention_block_matches_matrix_reference(block, rule, attention):
    torch.manual_seed(1)
    x = torch.randn(2, TOKENS, D, dtype=torch.float64)
    if attention == "multihead":
        model = MHABlock(block).double().eval()
    else:
        model = Block(attention).double().eval()
        model.load_state_dict(block.state_dict())
    torch.testing.assert_close(model(x), block(x))
    composite = get_composite(rule, epsilon=EPS)
    relevance = LRP(model, composite=composite).attribute(x, target=2)
    for i in range(2):
        expected = reference(block, x[i], 2, rule)
        np.testing.assert_allclose(relevance[i].numpy(), expected, rtol=1e-6,
                                   atol=1e-9 * np.abs(expected).max())


def test_references_of_the_two_rules_differ(block):
    x = torch.randn(TOKENS, D, dtype=torch.float64)
    assert not np.allclose(reference(block, x, 0, "cp_lrp"), reference(block, x, 0, "attnlrp"),
                           rtol=1e-3)


def test_cp_lrp_conserves_with_biases_zeroed(block):
    model = Block().double().eval()
    model.load_state_dict(block.state_dict())
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.zero_()
    x = torch.randn(3, TOKENS, D, dtype=torch.float64)
    relevance = LRP(model, composite="cp_lrp").attribute(x, target=1)
    torch.testing.assert_close(relevance.flatten(1).sum(1), model(x)[:, 1], rtol=1e-10,
                               atol=1e-12)
