"""A CNN over word embeddings (Kim 2014; explained with LRP by Arras et al. 2017).

Every layer is an ``nn.Module`` of a type the LRP core knows (Embedding, Conv1d, ReLU,
AdaptiveMaxPool1d, Flatten, Dropout, Linear) and ``forward`` has no data-dependent control
flow, so the core can trace it and ``LayerLRP`` at ``model.embedding`` explains it without
extra rules.
"""
from __future__ import annotations

import torch
from torch import nn


class WordCNN(nn.Module):
    """Sentence classifier: embeddings -> parallel 1-D convolutions -> max over time -> linear.

    Parameters
    ----------
    vocab_size, embed_dim : int
        Size of the embedding table (30522 x 384 for MiniLM).
    widths : tuple of int
        Filter widths in tokens; one convolution per width.
    n_filters : int
        Filters per width.
    n_classes : int
        Output logits.
    pad_id : int
        Token id of padding. Its embedding row is set to zero, so padding a text that is
        shorter than the widest filter (to ``min_length`` tokens) adds nothing to any window
        and receives no relevance. Batches should hold texts of equal length (see
        :func:`lrp_captum.text.encoding.length_batches`): padding a longer batch would create
        windows that reach into padding.
    dropout : float
        Dropout before the output layer (training only).
    embedding_weights : torch.Tensor, optional
        ``(vocab_size, embed_dim)`` initial table, e.g. from
        :func:`lrp_captum.text.embeddings.load_word_embeddings`.
    freeze_embedding : bool
        Keep the table fixed during training (the default; it is a pretrained table).

    Shapes
    ------
    input ``(N, L)`` token ids with ``L >= min_length`` -> output ``(N, n_classes)`` logits.
    """

    def __init__(self, vocab_size: int = 30522, embed_dim: int = 384,
                 widths: tuple[int, ...] = (1, 2, 3), n_filters: int = 32, n_classes: int = 2,
                 pad_id: int = 0, dropout: float = 0.2,
                 embedding_weights: torch.Tensor | None = None, freeze_embedding: bool = True):
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        self.pad_id = int(pad_id)
        self.min_length = max(self.widths)
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=self.pad_id)
        if embedding_weights is not None:
            if tuple(embedding_weights.shape) != (vocab_size, embed_dim):
                raise ValueError(f"embedding_weights has shape {tuple(embedding_weights.shape)}, "
                                 f"expected ({vocab_size}, {embed_dim})")
            with torch.no_grad():
                self.embedding.weight.copy_(embedding_weights)
        with torch.no_grad():
            self.embedding.weight[self.pad_id].zero_()
        self.embedding.weight.requires_grad_(not freeze_embedding)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, n_filters, w) for w in self.widths)
        self.activations = nn.ModuleList(nn.ReLU() for _ in self.widths)
        self.pools = nn.ModuleList(nn.AdaptiveMaxPool1d(1) for _ in self.widths)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(n_filters * len(self.widths), n_classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(input_ids).transpose(1, 2).contiguous()  # (N, E, L)
        pooled = [pool(act(conv(x)))  # (N, F, 1): strongest window per filter
                  for conv, act, pool in zip(self.convs, self.activations, self.pools)]
        z = self.flatten(torch.cat(pooled, dim=1))  # (N, F * len(widths))
        return self.classifier(self.dropout(z))

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable) to rebuild this architecture."""
        return {"vocab_size": self.embedding.num_embeddings,
                "embed_dim": self.embedding.embedding_dim, "widths": list(self.widths),
                "n_filters": self.convs[0].out_channels,
                "n_classes": self.classifier.out_features, "pad_id": self.pad_id,
                "dropout": self.dropout.p}
