"""MIL aggregation heads: a bag of tile embeddings (B, N, D) -> slide logits (B, C).

Both heads are plain PyTorch, written as a user's CLAM/ABMIL/TransMIL-like head would be
(``nn.Linear``, ``torch.tanh``/``sigmoid``, ``torch.softmax``, ``@``, ``nn.LayerNorm``); nothing
in them is specific to an explanation method. Besides ``forward`` each exposes
``attention_and_values(bag)``, the attention weights over the tiles and the vectors they pool,
which the attention baselines of :mod:`lrp_captum.wsi.mil.evidence` read.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class GatedAttentionMIL(nn.Module):
    """Gated attention-MIL (Ilse et al. 2018, "ABMIL").

    ``h_i = ReLU(W x_i + b)``; ``a_i = w·(tanh(V h_i) ⊙ sigmoid(U h_i))``;
    ``α = softmax(a)`` over the tiles; slide vector ``z = Σ_i α_i h_i``; logits ``= C z + c``.

    Parameters
    ----------
    in_dim : embedding size D of the tile encoder.
    num_classes : number of slide classes.
    hidden : size of ``h_i``.
    attention_dim : size of the gated attention branch.
    """

    def __init__(self, in_dim: int, num_classes: int = 2, hidden: int = 64, attention_dim: int = 32):
        super().__init__()
        self.in_dim = in_dim
        self.project = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU())
        self.attention_v = nn.Linear(hidden, attention_dim)
        self.attention_u = nn.Linear(hidden, attention_dim)
        self.attention_w = nn.Linear(attention_dim, 1)
        self.classifier = nn.Linear(hidden, num_classes)

    def _attention(self, h: torch.Tensor) -> torch.Tensor:
        scores = self.attention_w(torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h)))
        return torch.softmax(scores.squeeze(-1), dim=1)  # (B, N)

    def forward(self, bag: torch.Tensor) -> torch.Tensor:
        """(B, N, D) embeddings -> (B, C) logits."""
        h = self.project(bag)
        alpha = self._attention(h)
        z = (alpha.unsqueeze(1) @ h).squeeze(1)  # (B, hidden)
        return self.classifier(z)

    def attention_and_values(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention (B, 1, N) (one head, sums to 1 over N) and pooled vectors ``h`` (B, 1, N, hidden)."""
        h = self.project(bag)
        return self._attention(h).unsqueeze(1), h.unsqueeze(1)


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over the tokens of a bag."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, dh)
        return q, k, v

    def weights_and_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention weights (B, H, T, T) and value vectors (B, H, T, dh)."""
        q, k, v = self._split(x)
        attn = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1]), dim=-1)
        return attn, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn, v = self.weights_and_values(x)
        y = attn @ v  # (B, H, T, dh)
        return self.out(y.transpose(1, 2).flatten(2))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))`` with GELU."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int = 2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerMIL(nn.Module):
    """A small TransMIL-like aggregator: projection, class token, transformer blocks, linear head.

    Unlike TransMIL it has no positional convolution and uses full (not Nyström) attention, so
    it is invariant to the order of the tiles. Input (B, N, D), output (B, C) logits read from
    the class token.

    Parameters
    ----------
    in_dim : embedding size D; num_classes : slide classes; dim : token size; heads : attention
    heads; layers : transformer blocks; mlp_ratio : MLP width / dim.
    """

    def __init__(self, in_dim: int, num_classes: int = 2, dim: int = 64, heads: int = 4, layers: int = 2,
                 mlp_ratio: int = 2):
        super().__init__()
        self.in_dim = in_dim
        self.project = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU())
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.blocks = nn.ModuleList([TransformerBlock(dim, heads, mlp_ratio) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def _tokens(self, bag: torch.Tensor) -> torch.Tensor:
        x = self.project(bag)
        return torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)

    def forward(self, bag: torch.Tensor) -> torch.Tensor:
        """(B, N, D) embeddings -> (B, C) logits."""
        x = self._tokens(bag)
        for block in self.blocks:
            x = block(x)
        return self.classifier(self.norm(x[:, 0]))

    def attention_and_values(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class-token attention of the last block over the tiles (B, H, N) and the tiles' value
        vectors there (B, H, N, dh). The weights of one head sum to 1 over the class token and
        the tiles, so slightly less than 1 over the tiles."""
        x = self._tokens(bag)
        for block in self.blocks[:-1]:
            x = block(x)
        last = self.blocks[-1]
        attn, v = last.attn.weights_and_values(last.norm1(x))
        return attn[:, :, 0, 1:], v[:, :, 1:]


HEADS = {"abmil": GatedAttentionMIL, "transmil": TransformerMIL}


def make_head(name: str, in_dim: int, num_classes: int = 2, **kwargs) -> nn.Module:
    """A new head by name: ``"abmil"`` (:class:`GatedAttentionMIL`) or ``"transmil"`` (:class:`TransformerMIL`)."""
    if name not in HEADS:
        raise ValueError(f"unknown MIL head {name!r}; choose from {sorted(HEADS)}")
    return HEADS[name](in_dim, num_classes, **kwargs)
