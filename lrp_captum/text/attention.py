"""Token scores read from attention probabilities: raw attention and attention rollout.

Both return, for every text, how much the first token (``[CLS]``, the one a BERT-style
classification head reads) attends to each token; they are the attention-based alternatives
that LRP is compared with (they are always non-negative and ignore the explained class).

References: Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020.
"""
from __future__ import annotations

import torch


def raw_attention(maps: list[torch.Tensor], layer: int = -1, query: int = 0) -> torch.Tensor:
    """Attention of one query token in one layer, averaged over heads.

    Parameters
    ----------
    maps : list of torch.Tensor
        Attention probabilities, one ``(N, heads, L, L)`` tensor per layer.
    layer : int
        Which layer (default the last).
    query : int
        Which token's row (default 0, ``[CLS]``).

    Returns
    -------
    torch.Tensor
        ``(N, L)``, each row sums to 1.
    """
    return maps[layer][:, :, query, :].mean(dim=1)


def attention_rollout(maps: list[torch.Tensor], query: int = 0,
                      residual: float = 0.5) -> torch.Tensor:
    """Attention rollout: attention propagated through the layers with the residual path.

    Per layer the head-averaged attention ``A`` becomes ``Â = residual·I + (1 − residual)·A``
    (rows renormalised), and the layers multiply: ``R = Â_L ⋯ Â_1``. Row ``query`` of ``R``
    is the share of each input token in that token's final representation.

    Parameters
    ----------
    maps : list of torch.Tensor
        One ``(N, heads, L, L)`` tensor per layer, first layer first.
    query : int
        Which token's row (default 0, ``[CLS]``).
    residual : float
        Weight of the identity (the skip connection); 0.5 as in Abnar & Zuidema.

    Returns
    -------
    torch.Tensor
        ``(N, L)``, each row sums to 1.
    """
    n, _, length, _ = maps[0].shape
    eye = torch.eye(length, dtype=maps[0].dtype, device=maps[0].device)
    rollout = eye.expand(n, length, length)
    for attention in maps:
        a = residual * eye + (1 - residual) * attention.mean(dim=1)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a @ rollout
    return rollout[:, query, :]
