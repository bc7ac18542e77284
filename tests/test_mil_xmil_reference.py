"""xMIL-LRP of the gated attention-MIL head, written out by hand in float64 (matrix form).

The reference treats the attention weights as constants in the pooling (the AH rule of Ali et
al. 2022, used by xMIL-LRP) and applies LRP-ε to the linear layers; ReLU passes relevance on.
As in the authors' code, the biases are left out of every denominator by default (their
``no_bias=True``: the logit, bias included, is shared among the tiles); the variant that keeps
them (``no_bias=False``) is checked too. The reference is checked against independent facts,
then used as the oracle for the core engine's ``xmil`` and ``xmil_bias_kept`` composites.
"""
import pytest
import torch

from lrp_captum import list_composites
from lrp_captum.wsi.mil.evidence import XMIL_COMPOSITE, MethodUnavailableError, xmil_lrp
from lrp_captum.wsi.mil.heads import GatedAttentionMIL


def _stab(z, eps):
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z)


def reference_abmil_xmil(head: GatedAttentionMIL, X: torch.Tensor, target: int, eps: float = 0.0,
                         bias_in_denominator: bool = False):
    """(N, D) relevance of every embedding entry for logit ``target``; float64 throughout."""
    lin1 = head.project[0]
    W1, b1 = lin1.weight.double(), lin1.bias.double()
    Wc, bc = head.classifier.weight.double(), head.classifier.bias.double()
    X = X.double()
    kept = 1.0 if bias_in_denominator else 0.0
    with torch.no_grad():
        A = X @ W1.T + b1                      # (N, H) pre-activations
        Hm = A.clamp(min=0)                    # (N, H) pooled vectors
        alpha = head._attention(Hm.unsqueeze(0).to(lin1.weight.dtype))[0].double()  # (N,)
        z = alpha @ Hm                         # (H,)
        y = Wc @ z + bc                        # (C,)
        R_y = y[target]                        # the logit, bias included
        d_y = Wc[target] @ z + kept * bc[target]
        R_z = z * Wc[target] / _stab(d_y, eps) * R_y                             # ε on the classifier
        R_H = alpha[:, None] * Hm / _stab(z, eps)[None, :] * R_z[None, :]       # α held constant
        R_A = R_H                                                                 # ReLU passes it on
        R_X = X * ((R_A / _stab(A - (1 - kept) * b1, eps)) @ W1)                 # ε on the projection
    return R_X, y


def _gradient_times_input_attention_constant(head, X, target):
    """Autograd through the head with the attention weights detached (computed independently)."""
    lin1 = head.project[0]
    X = X.double().clone().requires_grad_(True)
    A = X @ lin1.weight.double().T + lin1.bias.double()
    Hm = A.clamp(min=0)
    alpha = head._attention(Hm.detach().unsqueeze(0))[0].detach()
    y = head.classifier.weight.double() @ (alpha @ Hm) + head.classifier.bias.double()
    (g,) = torch.autograd.grad(y[target], X)
    return (g * X).detach()


@pytest.fixture
def head_and_bag():
    torch.manual_seed(4)
    head = GatedAttentionMIL(in_dim=12, num_classes=2, hidden=8, attention_dim=6).double().eval()
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.5)
    return head, torch.randn(15, 12, dtype=torch.float64)


def test_reference_without_epsilon_is_gradient_times_input_with_attention_held_constant(head_and_bag):
    head, X = head_and_bag
    for target in (0, 1):
        R, _ = reference_abmil_xmil(head, X, target, eps=0.0, bias_in_denominator=True)
        torch.testing.assert_close(R, _gradient_times_input_attention_constant(head, X, target),
                                   rtol=1e-10, atol=1e-12)


def test_reference_conserves_the_logit_when_the_head_has_no_biases(head_and_bag):
    head, X = head_and_bag
    with torch.no_grad():
        head.project[0].bias.zero_()
        head.classifier.bias.zero_()
    for kept in (False, True):
        R, y = reference_abmil_xmil(head, X, 1, eps=1e-12, bias_in_denominator=kept)
        assert float(R.sum()) == pytest.approx(float(y[1]), rel=1e-9)


def test_reference_shares_the_whole_logit_bias_included_among_the_tiles(head_and_bag):
    head, X = head_and_bag
    R, y = reference_abmil_xmil(head, X, 1, eps=1e-12)
    assert float(R.sum()) == pytest.approx(float(y[1]), rel=1e-9)
    kept, _ = reference_abmil_xmil(head, X, 1, eps=1e-12, bias_in_denominator=True)
    assert abs(float(kept.sum()) - float(y[1])) > 1e-3 * abs(float(y[1]))  # biases absorbed


def test_reference_is_not_plain_gradient_times_input(head_and_bag):
    """Holding the attention constant matters: the full gradient also flows through the softmax."""
    head, X = head_and_bag
    x = X.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(head(x.unsqueeze(0))[0, 1], x)
    R, _ = reference_abmil_xmil(head, X, 1)
    assert not torch.allclose(R, g * X, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("composite,bias_in_denominator", [("xmil", False), ("xmil_bias_kept", True)])
def test_engine_xmil_composites_match_the_float64_reference(head_and_bag, composite, bias_in_denominator):
    assert XMIL_COMPOSITE == "xmil" and composite in list_composites()
    head, X = head_and_bag
    for target in (0, 1):
        engine = xmil_lrp(head, X, target, composite=composite).per_dimension
        R, _ = reference_abmil_xmil(head, X, target, eps=1e-8, bias_in_denominator=bias_in_denominator)
        torch.testing.assert_close(engine.double(), R, rtol=1e-4, atol=1e-6 * float(R.abs().max()))
        assert engine.sum(-1).shape == (len(X),)


def test_xmil_tile_evidence_sums_to_the_slide_logit_bias_included(head_and_bag):
    head, X = head_and_bag
    for target in (0, 1):
        evidence = xmil_lrp(head, X, target).per_dimension.double().sum()
        with torch.no_grad():
            logit = float(head(X.unsqueeze(0))[0, target])
        assert float(evidence) == pytest.approx(logit, rel=1e-5, abs=1e-7)


def test_xmil_lrp_with_an_unknown_composite_says_what_is_missing_and_what_to_use(head_and_bag):
    head, X = head_and_bag
    with pytest.raises(MethodUnavailableError, match=r"composite 'no_such'.*gradient or integrated_gradients"):
        xmil_lrp(head, X, 1, composite="no_such")
