"""Planted-pattern images whose relevant pixels are known, and a small CNN and ViT to classify them.

Each image is a textured background (smooth coloured noise plus an oriented grating) with two
small shapes pasted at random, non-overlapping positions:

* the *class pattern*, one of ``n_classes`` 5x5 stroke shapes (``+``, ``x``, ``T``, ``L``, ...):
  its shape alone decides the label;
* a *distractor*, a 5x5 hollow square drawn the same way (random colour), present in every
  image and independent of the label.

The ground-truth mask is the class pattern's 5x5 box grown by a one-pixel rim (the pattern's
edges against the background are part of the evidence a convolution sees), 7x7 pixels in all.
A model that is right for the right reason can only use pixels inside it, so an explanation
should put its positive relevance there. Everything is generated from a seed, in memory, in
well under a second; nothing is downloaded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["PATTERNS", "DISTRACTOR", "PlantedPatterns", "make_planted_patterns",
           "PlantedPatternCNN", "train_planted_cnn", "planted_pattern_vit", "train_planted_vit",
           "accuracy"]

# 5x5 stroke shapes; the class is the index into this list.
_SHAPES = {
    "plus": ["..#..", "..#..", "#####", "..#..", "..#.."],
    "cross": ["#...#", ".#.#.", "..#..", ".#.#.", "#...#"],
    "tee": ["#####", "..#..", "..#..", "..#..", "..#.."],
    "ell": ["#....", "#....", "#....", "#....", "#####"],
    "bar_v": ["..#..", "..#..", "..#..", "..#..", "..#.."],
    "zig": ["####.", "...#.", "..#..", ".#...", ".####"],
}
PATTERNS = list(_SHAPES)
DISTRACTOR = ["#####", "#...#", "#...#", "#...#", "#####"]
PATTERN_SIZE = 5
RIM = 1


def _shape_tensor(rows: list[str]) -> Tensor:
    return torch.tensor([[c == "#" for c in row] for row in rows], dtype=torch.float32)


@dataclass
class PlantedPatterns:
    """A generated data set.

    Attributes
    ----------
    images : Tensor
        ``(N, 3, H, W)`` float32 in [0, 1].
    labels : Tensor
        ``(N,)`` long, index into ``PATTERNS``.
    masks : Tensor
        ``(N, H, W)`` bool, the class pattern's box plus a one-pixel rim (ground truth).
    distractor_masks : Tensor
        ``(N, H, W)`` bool, the same for the distractor (evidence that must *not* matter).
    positions : Tensor
        ``(N, 2, 2)`` long, top-left ``(row, col)`` in pixels of pattern [:, 0] and distractor [:, 1].
    """

    images: Tensor
    labels: Tensor
    masks: Tensor
    distractor_masks: Tensor
    positions: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def mask_fraction(self) -> float:
        """Mean share of the image covered by the ground-truth mask."""
        return self.masks.float().mean().item()

    def subset(self, index) -> "PlantedPatterns":
        return PlantedPatterns(self.images[index], self.labels[index], self.masks[index],
                               self.distractor_masks[index], self.positions[index])


def _texture(n: int, size: int, gen: torch.Generator) -> Tensor:
    """Smooth coloured noise plus a random oriented grating, ``(n, 3, size, size)`` in ~[0.15, 0.85]."""
    coarse = torch.rand(n, 3, 6, 6, generator=gen)
    smooth = nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    theta = torch.rand(n, 1, 1, generator=gen) * math.pi
    period = 3.0 + 4.0 * torch.rand(n, 1, 1, generator=gen)
    phase = torch.rand(n, 1, 1, generator=gen) * 2 * math.pi
    grating = torch.sin(2 * math.pi * (xx * torch.cos(theta) + yy * torch.sin(theta)) / period + phase)
    fine = 0.06 * torch.rand(n, 3, size, size, generator=gen)
    img = 0.25 + 0.4 * smooth.clamp(0, 1) + 0.08 * grating.unsqueeze(1) + fine
    return img.clamp(0, 1)


def _positions(n: int, size: int, gen: torch.Generator) -> Tensor:
    """Top-left corners of pattern and distractor whose rimmed boxes do not overlap."""
    span = PATTERN_SIZE + 2 * RIM
    lo, hi = RIM, size - PATTERN_SIZE - RIM  # keep the rim inside the image
    if hi <= lo:
        raise ValueError(f"image size {size} is too small for {PATTERN_SIZE}x{PATTERN_SIZE} patterns")
    pos = torch.randint(lo, hi + 1, (n, 2, 2), generator=gen)
    for _ in range(100):
        clash = ((pos[:, 0] - pos[:, 1]).abs() < span).all(dim=1)
        if not clash.any():
            return pos
        pos[clash, 1] = torch.randint(lo, hi + 1, (int(clash.sum()), 2), generator=gen)
    raise ValueError(f"could not place two patterns without overlap in {size}x{size} images")


def make_planted_patterns(n: int, size: int = 32, n_classes: int = 4, seed: int = 0) -> PlantedPatterns:
    """Generate ``n`` planted-pattern images, balanced over classes.

    Parameters
    ----------
    n : int
        Number of images.
    size : int
        Image side in pixels (>= 16).
    n_classes : int
        2 to ``len(PATTERNS)``; uses the first ``n_classes`` shapes of ``PATTERNS``.
    seed : int
        Everything is drawn from ``torch.Generator().manual_seed(seed)``.

    Returns
    -------
    PlantedPatterns
    """
    if not 2 <= n_classes <= len(PATTERNS):
        raise ValueError(f"n_classes must be between 2 and {len(PATTERNS)}, got {n_classes}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    labels = labels[torch.randperm(n, generator=gen)]
    images = _texture(n, size, gen)
    pos = _positions(n, size, gen)
    shapes = torch.stack([_shape_tensor(_SHAPES[name]) for name in PATTERNS[:n_classes]])
    distractor = _shape_tensor(DISTRACTOR)
    # pattern and distractor colours: drawn from the same distribution, far from the background
    colours = torch.where(torch.rand(n, 2, 3, generator=gen) < 0.5,
                          0.0 + 0.1 * torch.rand(n, 2, 3, generator=gen),
                          0.9 + 0.1 * torch.rand(n, 2, 3, generator=gen))
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    dmasks = torch.zeros(n, size, size, dtype=torch.bool)
    p = PATTERN_SIZE
    for i in range(n):
        for j, (shape, m) in enumerate(((shapes[labels[i]], masks), (distractor, dmasks))):
            r, c = pos[i, j].tolist()
            patch = images[i, :, r:r + p, c:c + p]
            images[i, :, r:r + p, c:c + p] = torch.where(shape.bool(), colours[i, j].view(3, 1, 1), patch)
            m[i, r - RIM:r + p + RIM, c - RIM:c + p + RIM] = True
    return PlantedPatterns(images, labels, masks, dmasks, pos)


class PlantedPatternCNN(nn.Sequential):
    """Small all-module CNN for planted-pattern images ``(N, 3, H, W) -> (N, n_classes)``.

    conv-BN-ReLU-conv-BN-ReLU-maxpool-conv-BN-ReLU-maxpool-conv-BN-ReLU, global max pool (a
    ``MaxPool2d`` over the whole map: the pattern is small, averaging would drown it), two dense
    layers: convolutions at the bottom and dense layers on top, as the LRP composites expect.
    BatchNorm makes training converge in a few epochs (without it the loss sat at chance for 10
    epochs); LRP canonizers merge it into the convolutions.
    """

    def __init__(self, n_classes: int = 4, width: int = 16, image_size: int = 32):
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        w = width
        super().__init__(
            nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
            nn.MaxPool2d(image_size // 4), nn.Flatten(),
            nn.Linear(4 * w, 4 * w), nn.ReLU(),
            nn.Linear(4 * w, n_classes),
        )


def accuracy(model: nn.Module, data: PlantedPatterns, batch_size: int = 256) -> float:
    """Share of correctly classified images."""
    device = next(model.parameters()).device
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            x = data.images[start:start + batch_size].to(device)
            correct += (model(x).argmax(1).cpu() == data.labels[start:start + batch_size]).sum().item()
    return correct / max(1, len(data))


def train_planted_cnn(train: PlantedPatterns, n_classes: int = 4, width: int = 16, epochs: int = 8,
                      batch_size: int = 32, lr: float = 2e-3, seed: int = 0,
                      device: str | torch.device = "cpu") -> tuple[PlantedPatternCNN, list[float]]:
    """Train :class:`PlantedPatternCNN` with Adam and cross-entropy.

    Returns
    -------
    model : PlantedPatternCNN
        In eval mode, on ``device``.
    losses : list of float
        Mean training loss per epoch.
    """
    torch.manual_seed(seed)
    model = PlantedPatternCNN(n_classes, width, train.images.shape[-1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    return model, _fit(model, opt, None, train, epochs, batch_size, seed, device)


def _fit(model: nn.Module, opt: torch.optim.Optimizer, schedule, train: PlantedPatterns,
         epochs: int, batch_size: int, seed: int, device) -> list[float]:
    """Cross-entropy training in shuffled mini-batches; ``schedule`` (or None) steps per batch.

    Returns the mean training loss per epoch; leaves ``model`` in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen)
        total = 0.0
        for start in range(0, len(train), batch_size):
            idx = order[start:start + batch_size]
            x, y = train.images[idx].to(device), train.labels[idx].to(device)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if schedule is not None:
                schedule.step()
            total += loss.item() * len(idx)
        losses.append(total / len(train))
    model.eval()
    return losses


def planted_pattern_vit(n_classes: int = 4, image_size: int = 32, patch_size: int = 4,
                        num_layers: int = 4, num_heads: int = 4, hidden_dim: int = 64,
                        mlp_dim: int = 128, stem_channels: int = 32) -> nn.Module:
    """Small Vision Transformer for planted-pattern images ``(N, 3, H, W) -> (N, n_classes)``.

    torchvision's ``VisionTransformer`` with a class token and learned position embeddings,
    and its convolutional stem option (Xiao et al., NeurIPS 2021, "Early convolutions help
    transformers see better"): two 3×3 stride-2 convolutions with BatchNorm and ReLU, then a
    1×1 convolution to the token width, in place of the linear 4×4 patch embedding. Each token
    still stands for one 4×4 patch (receptive field 7×7 pixels). The stem is needed here: with
    the linear patch embedding the training loss stayed at chance (ln 4) for 12 epochs in
    every setting tried (class token or average pooling, learning rates 3e-4 to 2e-3): a
    pattern's colour is random per channel, so a linear embedding cannot tell its strokes from
    the background without a nonlinearity first (see docs/transformers.md).

    ``patch_size`` must be 4 (two stride-2 convolutions).
    """
    from torchvision.models import VisionTransformer
    from torchvision.models.vision_transformer import ConvStemConfig

    if patch_size != 4:
        raise ValueError(f"the convolutional stem makes 4x4 patches; got patch_size={patch_size}")
    stem = [ConvStemConfig(stem_channels, 3, 2), ConvStemConfig(2 * stem_channels, 3, 2)]
    return VisionTransformer(image_size=image_size, patch_size=patch_size, num_layers=num_layers,
                             num_heads=num_heads, hidden_dim=hidden_dim, mlp_dim=mlp_dim,
                             num_classes=n_classes, conv_stem_configs=stem)


def train_planted_vit(train: PlantedPatterns, n_classes: int = 4, epochs: int = 20,
                      batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.05,
                      seed: int = 0, device: str | torch.device = "cpu",
                      **architecture) -> tuple[nn.Module, list[float]]:
    """Train :func:`planted_pattern_vit` with AdamW, a one-cycle learning rate and cross-entropy.

    Parameters
    ----------
    train : PlantedPatterns
        Training images (their side is the ViT's ``image_size``).
    **architecture
        Passed to :func:`planted_pattern_vit` (``num_layers``, ``hidden_dim``, ...).

    Returns
    -------
    model : nn.Module
        In eval mode, on ``device``.
    losses : list of float
        Mean training loss per epoch.
    """
    torch.manual_seed(seed)
    model = planted_pattern_vit(n_classes, image_size=train.images.shape[-1],
                                **architecture).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-len(train) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                   pct_start=0.15)
    return model, _fit(model, opt, schedule, train, epochs, batch_size, seed, device)


def plot_explanations(path, data: PlantedPatterns, maps: dict, n: int = 6, cell: float = 1.5) -> None:
    """Save a grid: the first ``n`` images of ``data`` with their pattern's box (lime), then one
    column per explanation in ``maps`` (``{name: (N, H, W) or (N, C, H, W)}``, channels summed),
    each map on a symmetric blue–white–red scale of its own maximum."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(n, len(maps) + 1, figsize=(cell * (len(maps) + 1), cell * n))
    for i in range(n):
        axes[i, 0].imshow(data.images[i].permute(1, 2, 0).numpy())
        r, c = data.positions[i, 0].tolist()
        axes[i, 0].add_patch(plt.Rectangle((c - 1.5, r - 1.5), 7, 7, fill=False, ec="lime", lw=1))
    for j, (name, a) in enumerate(maps.items(), 1):
        a = (a.sum(1) if a.dim() == 4 else a).detach().cpu()
        for i in range(n):
            lim = a[i].abs().max().item() or 1.0
            axes[i, j].imshow(a[i].numpy(), cmap="bwr", vmin=-lim, vmax=lim)
        axes[0, j].set_title(name, fontsize=7)
    axes[0, 0].set_title("input (mask)", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
