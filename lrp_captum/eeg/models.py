"""Small EEG classifiers whose every operation is an ``nn.Module`` the LRP core can explain.

Both networks take epochs shaped ``(N, C, T)`` (channels x time samples, µV) and return logits
``(N, n_classes)``. They follow the published designs in spirit, not line by line:

- :class:`ShallowConvNet` (Schirrmeister et al. 2017): temporal conv -> spatial conv ->
  BatchNorm -> square -> average pool -> log -> dropout -> linear. A learned filter-bank
  log-power model, suited to oscillatory (motor imagery) effects.
- :class:`EEGNet` (Lawhern et al. 2018): temporal conv -> BatchNorm -> depthwise spatial conv ->
  BatchNorm -> ELU -> average pool -> dropout -> separable conv -> BatchNorm -> ELU ->
  average pool -> dropout -> linear. Compact; suited to evoked (ERP) effects.

LRP rules for the EEG-specific non-linearities (see :func:`eeg_layer_map`): :class:`Square` and
:class:`SafeLog` act element-wise (each output depends on exactly one input), so relevance is
passed through unchanged, as for ReLU/ELU -- the linear layers around them do the
redistribution. The input reshape is an ``nn.Unflatten``, which the core passes through.
"""
from __future__ import annotations

import torch
from torch import nn

ARCHITECTURES = ("shallow", "eegnet")


class Square(nn.Module):
    """Element-wise square, ``x ** 2`` (signal power)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * x


class SafeLog(nn.Module):
    """Element-wise ``log(max(x, eps))``; the clamp keeps log-power finite for silent inputs."""

    def __init__(self, eps: float = 1e-6):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.clamp(x, min=self.eps))

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


class ShallowConvNet(nn.Module):
    """ShallowConvNet-style log-power classifier.

    Parameters
    ----------
    n_channels, n_times : int
        Input shape ``(C, T)``.
    n_classes : int
        Number of output logits.
    n_filters : int
        Temporal and spatial filters.
    temporal_kernel : int
        Temporal conv length in samples (25 at 100 Hz = 250 ms).
    pool_size, pool_stride : int
        Average-pooling window and stride in samples over the squared signal.
    dropout : float
        Dropout probability before the classifier.
    """

    def __init__(self, n_channels: int, n_times: int, n_classes: int = 2, n_filters: int = 16,
                 temporal_kernel: int = 25, pool_size: int = 30, pool_stride: int = 10,
                 dropout: float = 0.5):
        super().__init__()
        # (N, C, T) -> (N, 1, C, T): epochs become one-feature-map images for Conv2d.
        self.to_image = nn.Unflatten(1, (1, n_channels))
        self.temporal = nn.Conv2d(1, n_filters, (1, temporal_kernel))
        self.spatial = nn.Conv2d(n_filters, n_filters, (n_channels, 1), bias=False)
        self.bn = nn.BatchNorm2d(n_filters)
        self.square = Square()
        self.pool = nn.AvgPool2d((1, pool_size), stride=(1, pool_stride))
        self.log = SafeLog()
        self.dropout = nn.Dropout(dropout)
        self.flatten = nn.Flatten()
        n_pooled = (n_times - temporal_kernel + 1 - pool_size) // pool_stride + 1
        if n_pooled < 1:
            raise ValueError(f"n_times={n_times} is too short for temporal_kernel="
                             f"{temporal_kernel} and pool_size={pool_size}.")
        self.classifier = nn.Linear(n_filters * n_pooled, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.to_image(x)
        x = self.bn(self.spatial(self.temporal(x)))
        x = self.log(self.pool(self.square(x)))
        return self.classifier(self.flatten(self.dropout(x)))


class EEGNet(nn.Module):
    """EEGNet-style compact convolutional classifier.

    Parameters
    ----------
    n_channels, n_times : int
        Input shape ``(C, T)``.
    n_classes : int
        Number of output logits.
    f1 : int
        Temporal filters.
    depth : int
        Spatial filters per temporal filter (depthwise multiplier).
    f2 : int
        Pointwise filters of the separable conv.
    temporal_kernel : int
        Temporal conv length in samples (odd; ``same`` padding).
    pool1, pool2 : int
        Average-pooling factors in time after the spatial and separable blocks.
    dropout : float
        Dropout probability.
    """

    def __init__(self, n_channels: int, n_times: int, n_classes: int = 2, f1: int = 8,
                 depth: int = 2, f2: int = 16, temporal_kernel: int = 25, pool1: int = 4,
                 pool2: int = 5, dropout: float = 0.25):
        super().__init__()
        f_d = f1 * depth
        # (N, C, T) -> (N, 1, C, T): epochs become one-feature-map images for Conv2d.
        self.to_image = nn.Unflatten(1, (1, n_channels))
        self.temporal = nn.Conv2d(1, f1, (1, temporal_kernel),
                                  padding=(0, temporal_kernel // 2), bias=False)
        self.bn1 = nn.BatchNorm2d(f1)
        self.spatial = nn.Conv2d(f1, f_d, (n_channels, 1), groups=f1, bias=False)
        self.bn2 = nn.BatchNorm2d(f_d)
        self.act1 = nn.ELU()
        self.pool1 = nn.AvgPool2d((1, pool1))
        self.drop1 = nn.Dropout(dropout)
        self.separable_depth = nn.Conv2d(f_d, f_d, (1, 15), padding=(0, 7), groups=f_d,
                                         bias=False)
        self.separable_point = nn.Conv2d(f_d, f2, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(f2)
        self.act2 = nn.ELU()
        self.pool2 = nn.AvgPool2d((1, pool2))
        self.drop2 = nn.Dropout(dropout)
        self.flatten = nn.Flatten()
        n_pooled = (n_times // pool1) // pool2
        if n_pooled < 1:
            raise ValueError(f"n_times={n_times} is too short for pooling {pool1}x{pool2}.")
        self.classifier = nn.Linear(f2 * n_pooled, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.to_image(x)
        x = self.bn1(self.temporal(x))
        x = self.drop1(self.pool1(self.act1(self.bn2(self.spatial(x)))))
        x = self.bn3(self.separable_point(self.separable_depth(x)))
        x = self.drop2(self.pool2(self.act2(x)))
        return self.classifier(self.flatten(x))


def build_model(architecture: str, n_channels: int, n_times: int, n_classes: int = 2,
                **kwargs) -> nn.Module:
    """Instantiate ``"shallow"`` (:class:`ShallowConvNet`) or ``"eegnet"`` (:class:`EEGNet`)."""
    if architecture == "shallow":
        return ShallowConvNet(n_channels, n_times, n_classes, **kwargs)
    if architecture == "eegnet":
        return EEGNet(n_channels, n_times, n_classes, **kwargs)
    raise ValueError(f"Unknown architecture {architecture!r}; choose one of {ARCHITECTURES}.")


def eeg_layer_map() -> dict:
    """LRP rules for the EEG-specific modules, to pass as ``get_composite(..., layer_map=...)``.

    Both act element-wise, so relevance passes through them unchanged (``R_in = R_out``).
    """
    from lrp_captum.core.rules import PassRule

    return {Square: PassRule(), SafeLog: PassRule()}
