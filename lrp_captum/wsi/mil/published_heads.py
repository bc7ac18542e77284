"""The MIL heads pathology groups train, rebuilt so that their checkpoints load with ``strict=True``.

Written from the papers and the parameter layouts of the public code (names of modules and
state_dict keys are kept, so a checkpoint trained there loads here); every head takes a bag
(B, N, D) and returns slide logits (B, C), as the heads of :mod:`lrp_captum.wsi.mil.heads`, and
runs through :func:`lrp_captum.wsi.mil.evidence.tile_evidence`:

=============== ===========================================================================
``abmil``        attention-MIL (Ilse et al. 2018), gated or not, in MIL-Lab's layout
                 (``patch_embed``, ``global_attn``, ``classifier``; one or more heads)
``clam_sb``      CLAM single-branch (Lu et al. 2021): one attention map, ``classifiers``
                 Linear(512, C), ``instance_classifiers`` (unused at inference)
``clam_mb``      CLAM multi-branch: one attention row and one Linear(512, 1) per class
``transmil``     TransMIL (Shao et al. 2021): projection, class token, two Nyström-attention
                 layers with the PPEG positional convolutions between them, LayerNorm, Linear
``xmil``         the xMIL repository's AttnMIL (Hense et al. 2024), from its ``args.json``
=============== ===========================================================================

:func:`load_published_head` infers each architecture's sizes from the checkpoint's shapes
(CLAM's dropout-dependent key indices, ``module.`` keys of multi-GPU runs, ``model.`` keys of
Lightning or Hugging Face wrappers), builds it and loads the weights strictly. Checkpoints are
read with ``torch.load(weights_only=True)`` and numpy scalars allowed (:func:`read_checkpoint`).

xMIL-LRP (the ``xmil`` composite) shares the slide logit among the tiles exactly on the
attention heads (ABMIL, CLAM-SB/-MB per class, AttnMIL). On TransMIL the learned class token
and the LayerNorm offsets are not tiles: the tile evidence sums to the logit less their share.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from lrp_captum.model_files import build_from_factory, read_checkpoint

__all__ = ["AttentionScores", "ABMIL", "CLAM", "TransMIL", "NystromAttention", "XMILAttentionMIL",
           "PublishedHead", "load_published_head", "load_xmil_head", "checkpoint_state_dict", "ARCHITECTURES"]


class AttentionScores(nn.Module):
    """Attention scores (B, N, K) of tile vectors (B, N, L), K scores per tile.

    Gated (Ilse et al. 2018): ``attention_c(tanh(attention_a(h)) ⊙ sigmoid(attention_b(h)))``;
    ungated: ``module`` = Linear → tanh [→ Dropout] → Linear, the last Linear at
    ``final_index`` (2, or 3 with a dropout in between), as CLAM and MIL-Lab name them.
    """

    def __init__(self, L: int, D: int, K: int = 1, *, gated: bool = True, dropout: float = 0.0,
                 final_index: int = 2):
        super().__init__()
        self.gated = gated
        drop = [nn.Dropout(dropout)] if dropout else []
        if gated:
            self.attention_a = nn.Sequential(nn.Linear(L, D), nn.Tanh(), *drop)
            self.attention_b = nn.Sequential(nn.Linear(L, D), nn.Sigmoid(), *drop)
            self.attention_c = nn.Linear(D, K)
        else:
            self.module = nn.Sequential(nn.Linear(L, D), nn.Tanh(), *[nn.Dropout(dropout)] * (final_index - 2),
                                        nn.Linear(D, K))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.gated:
            return self.attention_c(self.attention_a(h) * self.attention_b(h))
        return self.module(h)


def _attention_pool(scores: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over the tiles of (B, N, K) scores -> weights (B, K, N) and pooled (B, K, L)."""
    weights = torch.softmax(scores.transpose(1, 2), dim=-1)
    return weights, weights @ h


class _AttentionPooling(nn.Module):
    """What attention-MIL heads share: tile vectors h (B, N, L), K attention scores per tile,
    a softmax over the tiles per score, K pooled vectors (B, K, L), logits from them."""

    def _vectors(self, bag: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _scores(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _logits(self, pooled: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attention_and_values(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention (B, K, N), each row summing to 1 over the tiles, and the pooled vectors (B, 1, N, L)."""
        h = self._vectors(bag)
        return _attention_pool(self._scores(h), h)[0], h.unsqueeze(1)

    def forward(self, bag: torch.Tensor) -> torch.Tensor:
        """(B, N, D) features -> (B, C) logits."""
        h = self._vectors(bag)
        return self._logits(_attention_pool(self._scores(h), h)[1])


class ABMIL(_AttentionPooling):
    """Attention-MIL in MIL-Lab's layout: ``patch_embed`` (Linear → ReLU [→ Dropout], repeated),
    ``global_attn`` (:class:`AttentionScores`, K heads), ``classifier`` Linear(K·E, C).

    Parameters
    ----------
    in_dim : feature size D; embed_dim : E; attn_dim : attention width; num_classes : C;
    num_heads : K attention maps, their pooled vectors concatenated; gated : gated attention;
    linear_indices : positions of the Linear layers in ``patch_embed`` (``(0,)`` for one layer).
    """

    def __init__(self, in_dim: int = 1024, embed_dim: int = 512, attn_dim: int = 384, num_classes: int = 2,
                 num_heads: int = 1, gated: bool = True, linear_indices: tuple = (0,), dropout: float = 0.25):
        super().__init__()
        self.in_dim, self.num_classes = in_dim, num_classes
        self.patch_embed = _mlp(in_dim, embed_dim, linear_indices, dropout)
        self.global_attn = AttentionScores(embed_dim, attn_dim, num_heads, gated=gated, dropout=dropout,
                                           final_index=3)
        self.classifier = nn.Linear(embed_dim * num_heads, num_classes)

    def _vectors(self, bag):
        return self.patch_embed(bag)

    def _scores(self, h):
        return self.global_attn(h)

    def _logits(self, pooled):
        return self.classifier(pooled.flatten(1))


def _mlp(in_dim: int, width: int, linear_indices: tuple, dropout: float) -> nn.Sequential:
    """Linear layers at ``linear_indices`` of a Sequential, each followed by ReLU (and Dropout in
    the remaining slots): the index layout of the checkpoint fixes where the Linears sit."""
    layers, dim = [], in_dim
    ends = list(linear_indices[1:]) + [linear_indices[-1] + 3]
    for start, end in zip(linear_indices, ends):
        layers += [nn.Linear(dim, width), nn.ReLU()] + [nn.Dropout(dropout) for _ in range(end - start - 2)]
        dim = width
    return nn.Sequential(*layers)


class CLAM(_AttentionPooling):
    """CLAM (Lu et al. 2021) at inference, single- or multi-branch, in CLAM's layout.

    ``attention_net`` = Linear(D, hidden) → ReLU [→ Dropout] → :class:`AttentionScores` (K = 1
    for SB, C for MB); SB: ``classifiers`` Linear(hidden, C) on the one pooled vector; MB:
    ``classifiers[c]`` Linear(hidden, 1) on the vector pooled by attention row c.
    ``instance_classifiers`` (the clustering branch used in training) are kept so that the
    checkpoint loads strictly; they do not change the logits.

    Parameters
    ----------
    in_dim : D; num_classes : C; multi_branch : CLAM-MB; gated : gated attention;
    hidden : 512 in CLAM; attn_dim : 256 ("small") or 384 ("big"); fc_dropout : a Dropout after
    the first ReLU (attention module at index 3, else 2); branch_dropout : dropouts inside the
    attention branches (ungated final Linear at index 3, else 2).
    """

    def __init__(self, in_dim: int = 1024, num_classes: int = 2, *, multi_branch: bool = False, gated: bool = True,
                 hidden: int = 512, attn_dim: int = 256, fc_dropout: bool = True, branch_dropout: bool = False):
        super().__init__()
        self.in_dim, self.num_classes, self.multi_branch = in_dim, num_classes, multi_branch
        fc = [nn.Linear(in_dim, hidden), nn.ReLU()] + ([nn.Dropout(0.25)] if fc_dropout else [])
        attention = AttentionScores(hidden, attn_dim, num_classes if multi_branch else 1, gated=gated,
                                    dropout=0.25 if branch_dropout else 0.0, final_index=3 if branch_dropout else 2)
        self.attention_net = nn.Sequential(*fc, attention)
        self.classifiers = nn.ModuleList([nn.Linear(hidden, 1) for _ in range(num_classes)]) if multi_branch \
            else nn.Linear(hidden, num_classes)
        self.instance_classifiers = nn.ModuleList([nn.Linear(hidden, 2) for _ in range(num_classes)])

    def _vectors(self, bag):
        return self.attention_net[:-1](bag)

    def _scores(self, h):
        return self.attention_net[-1](h)  # (B, N, K): K = 1 for SB, one per class for MB

    def _logits(self, pooled):
        if not self.multi_branch:
            return self.classifiers(pooled[:, 0])
        return torch.cat([clf(pooled[:, c]) for c, clf in enumerate(self.classifiers)], dim=-1)


class XMILAttentionMIL(_AttentionPooling):
    """The xMIL repository's AttnMIL: ``linear_layers`` (Linear → ReLU blocks, the first with a
    bias, the others with ``bias``), ungated ``attention`` Linear → tanh → Linear(1), softmax
    over the tiles, ``out_layers`` (Linear → ReLU blocks) and ``linear_head``.

    Parameters follow the repository's ``args.json``: input_dim, features_dim,
    inner_attention_dim, head_dim (number of outputs), num_layers, n_out_layers, bias
    (``not no_bias``).
    """

    def __init__(self, input_dim: int, features_dim: int = 256, inner_attention_dim: int = 128, head_dim: int = 2,
                 num_layers: int = 1, n_out_layers: int = 0, bias: bool = True):
        super().__init__()
        self.in_dim, self.num_classes = input_dim, head_dim
        self.linear_layers = nn.Sequential(*[
            nn.Sequential(nn.Linear(input_dim if i == 0 else features_dim, features_dim, bias=bias or i == 0), nn.ReLU())
            for i in range(num_layers)])
        self.attention = nn.Sequential(nn.Linear(features_dim, inner_attention_dim), nn.Tanh(),
                                       nn.Linear(inner_attention_dim, 1))
        self.out_layers = nn.Sequential(*[nn.Sequential(nn.Linear(features_dim, features_dim, bias=bias), nn.ReLU())
                                          for _ in range(n_out_layers)])
        self.linear_head = nn.Linear(features_dim, head_dim, bias=bias)

    def _vectors(self, bag):
        return self.linear_layers(bag)

    def _scores(self, h):
        return self.attention(h)

    def _logits(self, pooled):
        return self.linear_head(self.out_layers(pooled[:, 0]))


class NystromAttention(nn.Module):
    """Nyström self-attention (Xiong et al. 2021) as TransMIL uses it, with TransMIL's names.

    ``to_qkv`` (no bias), ``to_out`` = Linear [→ Dropout], ``res_conv`` a depthwise (33, 1)
    convolution of the values along the sequence added to the output. The sequence is
    zero-padded at the front to a multiple of ``num_landmarks``; landmarks are segment means of
    queries and keys; the landmark kernel is inverted by ``pinv_iterations`` steps of the
    iterative Moore-Penrose scheme (initial scale per bag, so a batch of bags gives each bag
    the result it gets alone).
    """

    def __init__(self, dim: int, heads: int = 8, dim_head: Optional[int] = None, num_landmarks: Optional[int] = None,
                 pinv_iterations: int = 6, conv_kernel: int = 33, dropout: float = 0.1):
        super().__init__()
        dim_head = dim_head or dim // heads
        self.heads, self.dim_head = heads, dim_head
        self.num_landmarks = num_landmarks or dim // 2
        self.pinv_iterations = pinv_iterations
        self.to_qkv = nn.Linear(dim, 3 * heads * dim_head, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(dropout))
        self.res_conv = nn.Conv2d(heads, heads, (conv_kernel, 1), padding=(conv_kernel // 2, 0), groups=heads,
                                  bias=False)

    def _pinv(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.abs().sum(-1).amax(-1) * x.abs().sum(-2).amax(-1)  # (B, H): max row sum × max column sum
        z = x.transpose(-1, -2) / scale[..., None, None]
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        for _ in range(self.pinv_iterations):
            xz = x @ z
            z = 0.25 * z @ (13 * eye - xz @ (15 * eye - xz @ (7 * eye - xz)))
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, n, _ = x.shape
        m = self.num_landmarks
        pad = (-n) % m
        x = F.pad(x, (0, 0, pad, 0))
        q, k, v = (t.reshape(B, n + pad, self.heads, self.dim_head).transpose(1, 2)
                   for t in self.to_qkv(x).chunk(3, dim=-1))  # (B, H, n', dh)
        q = q * self.dim_head ** -0.5
        seg = (n + pad) // m
        q_land = q.reshape(B, self.heads, m, seg, self.dim_head).mean(3)
        k_land = k.reshape(B, self.heads, m, seg, self.dim_head).mean(3)
        kernel1 = torch.softmax(q @ k_land.transpose(-1, -2), dim=-1)
        kernel2 = torch.softmax(q_land @ k_land.transpose(-1, -2), dim=-1)
        kernel3 = torch.softmax(q_land @ k.transpose(-1, -2), dim=-1)
        out = (kernel1 @ self._pinv(kernel2)) @ (kernel3 @ v) + self.res_conv(v)
        out = self.to_out(out.transpose(1, 2).reshape(B, n + pad, self.heads * self.dim_head))
        return out[:, -n:]


class _TransLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = NystromAttention(dim, heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x))


class _PPEG(nn.Module):
    """TransMIL's pyramid position encoding: three depthwise convolutions (7, 5, 3) of the tile
    tokens laid out row-major on an H × W square, added to them; the class token passes."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.proj1 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.proj2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, _, C = x.shape
        grid = x[:, 1:].transpose(1, 2).reshape(B, C, H, W)
        grid = self.proj(grid) + grid + self.proj1(grid) + self.proj2(grid)
        return torch.cat([x[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)


class TransMIL(nn.Module):
    """TransMIL (Shao et al. 2021) in its authors' layout: ``_fc1`` Linear(D, dim) → ReLU; the
    tokens repeated at the end up to a square H·W; ``cls_token`` in front; ``layer1``; ``pos_layer``
    (PPEG); ``layer2``; ``norm``; ``_fc2`` on the class token. Each layer is ``x + Nyström(LN(x))``.

    Parameters
    ----------
    in_dim : D (1024 in the original); num_classes : C; dim : token size (512);
    heads : attention heads (8; ``dim_head = dim // heads``, ``num_landmarks = dim // 2``).
    """

    def __init__(self, in_dim: int = 1024, num_classes: int = 2, dim: int = 512, heads: int = 8):
        super().__init__()
        self.in_dim, self.num_classes = in_dim, num_classes
        self.pos_layer = _PPEG(dim)
        self._fc1 = nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU())
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.layer1 = _TransLayer(dim, heads)
        self.layer2 = _TransLayer(dim, heads)
        self.norm = nn.LayerNorm(dim)
        self._fc2 = nn.Linear(dim, num_classes)

    def forward(self, bag: torch.Tensor) -> torch.Tensor:
        """(B, N, D) features -> (B, C) logits (tiles are read in the given order: PPEG is not
        invariant to it)."""
        h = self._fc1(bag)
        n = h.shape[1]
        side = math.ceil(math.sqrt(n))
        h = torch.cat([h, h[:, :side * side - n]], dim=1)
        h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1)
        h = self.layer2(self.pos_layer(self.layer1(h), side, side))
        return self._fc2(self.norm(h)[:, 0])


# --------------------------------------------------------------------------------------------
# loading


ARCHITECTURES = ("abmil", "clam_sb", "clam_mb", "transmil", "xmil")


@dataclass
class PublishedHead:
    """A head rebuilt from its checkpoint.

    Attributes
    ----------
    model : the head in eval mode with gradients off, (B, N, in_dim) -> (B, num_classes).
    arch : the architecture name (:data:`ARCHITECTURES`) or the ``package.module:factory`` given.
    in_dim, num_classes : its input feature size D and number of logits.
    options : the constructor arguments, inferred from the weights or read from ``args.json``.
    path : the checkpoint file.
    """

    model: nn.Module
    arch: str
    in_dim: int
    num_classes: int
    options: dict = field(default_factory=dict)
    path: str = ""


def checkpoint_state_dict(path, *, what: str = "MIL head checkpoint") -> dict:
    """The state_dict of a checkpoint file, with wrappers' key prefixes removed.

    Accepts a bare state_dict, ``{"model_state_dict": ...}`` (xMIL and most training scripts,
    numpy scalars allowed next to it), ``{"state_dict": ...}`` (Lightning; its ``model.``
    prefix removed) and ``{"model": ...}``. A leading ``module.`` (DataParallel) and a
    Hugging Face ``model.`` prefix are removed; CLAM's ``attention_net.module.`` (its
    multi-GPU ``relocate``) becomes ``attention_net.``; ``instance_loss_fn.*`` is dropped.
    """
    obj = read_checkpoint(path, what=what)
    if isinstance(obj, dict) and not all(torch.is_tensor(v) for v in obj.values()):
        inner = next((obj[k] for k in ("model_state_dict", "state_dict", "model") if isinstance(obj.get(k), dict)), None)
        if inner is None:
            raise ValueError(f"{what} {path} holds a dict with keys {sorted(map(str, obj))[:8]} but no state_dict "
                             f"(expected the tensors themselves or under 'model_state_dict' / 'state_dict')")
        obj = inner
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError(f"{what} {path} holds a {type(obj).__name__}, not a state_dict (a dict of tensors)")
    state = dict(obj)
    for prefix in ("module.", "model."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return {k.replace("attention_net.module.", "attention_net."): v for k, v in state.items()
            if not k.startswith("instance_loss_fn.")}


def _indices(state: dict, prefix: str) -> list[int]:
    """Sorted i of the keys ``<prefix><i>.weight``."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    return sorted({int(m.group(1)) for k in state if (m := pat.match(k))})


def _need(state: dict, key: str, arch: str, path) -> torch.Tensor:
    if key not in state:
        raise ValueError(f"{path} is not a {arch} checkpoint: no parameter {key!r} (found: {sorted(state)[:8]} ...); "
                         f"name the architecture it was trained with ({', '.join(ARCHITECTURES)})")
    return state[key]


def _clam_options(state: dict, arch: str, path) -> dict:
    fc = _need(state, "attention_net.0.weight", arch, path)
    att = [i for i in (2, 3) if any(k.startswith(f"attention_net.{i}.") for k in state)]
    if len(att) != 1:
        raise ValueError(f"{path}: no CLAM attention module at attention_net.2 or attention_net.3")
    pre = f"attention_net.{att[0]}."
    gated = f"{pre}attention_a.0.weight" in state
    first = state[f"{pre}attention_a.0.weight" if gated else f"{pre}module.0.weight"]
    final = None if gated else _indices(state, f"{pre}module.")[-1]
    multi = "classifiers.0.weight" in state
    if multi != (arch == "clam_mb"):
        raise ValueError(f"{path} is a CLAM-{'MB' if multi else 'SB'} checkpoint ('classifiers"
                         f"{'.0' if multi else ''}.weight'), not {arch}; load it as {'clam_mb' if multi else 'clam_sb'}")
    n_classes = len(_indices(state, "classifiers.")) if multi else state["classifiers.weight"].shape[0]
    return dict(in_dim=fc.shape[1], num_classes=n_classes, multi_branch=multi, gated=gated, hidden=fc.shape[0],
                attn_dim=first.shape[0], fc_dropout=att[0] == 3, branch_dropout=final == 3)


def _abmil_options(state: dict, arch: str, path) -> dict:
    linears = _indices(state, "patch_embed.")
    first = _need(state, f"patch_embed.{linears[0] if linears else 0}.weight", arch, path)
    gated = "global_attn.attention_a.0.weight" in state
    attn = state["global_attn.attention_a.0.weight" if gated else "global_attn.module.0.weight"]
    heads = state["global_attn.attention_c.weight" if gated else "global_attn.module.3.weight"].shape[0]
    clf = _need(state, "classifier.weight", arch, path)
    return dict(in_dim=first.shape[1], embed_dim=first.shape[0], attn_dim=attn.shape[0], num_classes=clf.shape[0],
                num_heads=heads, gated=gated, linear_indices=tuple(linears))


def _transmil_options(state: dict, arch: str, path) -> dict:
    fc1 = _need(state, "_fc1.0.weight", arch, path)
    heads = _need(state, "layer1.attn.res_conv.weight", arch, path).shape[0]
    return dict(in_dim=fc1.shape[1], dim=fc1.shape[0], heads=heads,
                num_classes=_need(state, "_fc2.weight", arch, path).shape[0])


_BUILDERS = {
    "abmil": (_abmil_options, ABMIL),
    "clam_sb": (_clam_options, CLAM),
    "clam_mb": (_clam_options, CLAM),
    "transmil": (_transmil_options, TransMIL),
}


def _load_strict(model: nn.Module, state: dict, arch: str, path) -> None:
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{path} does not fit {arch}: missing {result.missing_keys[:10]}, unexpected "
                         f"{result.unexpected_keys[:10]}; name the architecture it was trained with "
                         f"({', '.join(ARCHITECTURES)}) or pass a 'package.module:factory' that builds it")


def _finished(model: nn.Module, arch: str, path, options: dict) -> PublishedHead:
    model.eval().requires_grad_(False)
    in_dim = getattr(model, "in_dim", None) or next(
        (m.in_features for m in model.modules() if isinstance(m, nn.Linear)), None)
    n_out = getattr(model, "num_classes", None)
    if n_out is None and in_dim is not None:  # a user's module: ask it
        with torch.no_grad():
            n_out = int(model(torch.zeros(1, 2, in_dim)).shape[-1])
    return PublishedHead(model=model, arch=arch, in_dim=in_dim, num_classes=n_out, options=options, path=str(path))


def load_published_head(checkpoint, arch: str, **factory_kwargs) -> PublishedHead:
    """Rebuild a trained MIL head from its checkpoint.

    Parameters
    ----------
    checkpoint : the weights file (bare state_dict, ``{"model_state_dict": ..., "epoch": ...,
        "auc_val": numpy.float64(...)}``, Lightning ``{"state_dict": ...}``), or for ``"xmil"``
        the run folder holding ``args.json`` and ``best_model.pt``.
    arch : ``"abmil"``, ``"clam_sb"``, ``"clam_mb"``, ``"transmil"``, ``"xmil"``, or
        ``"package.module:factory"``: a callable returning the user's ``nn.Module`` (B, N, D) ->
        (B, C), called with ``factory_kwargs``, its weights loaded from ``checkpoint``.

    Returns
    -------
    :class:`PublishedHead`; the sizes of a named architecture are inferred from the weights'
    shapes and the weights loaded with ``strict=True``.

    Raises
    ------
    ValueError naming the file: a pickled object or any non-tensor that is not a number or numpy
    scalar (``weights_only=True``), weights of another architecture (the missing and unexpected
    keys), an unknown architecture.
    """
    if arch == "xmil":
        return load_xmil_head(checkpoint)
    if ":" in arch:
        model = build_from_factory(arch, "MIL head factory", **factory_kwargs)
        _load_strict(model, checkpoint_state_dict(checkpoint), arch, checkpoint)
        return _finished(model, arch, checkpoint, dict(factory_kwargs))
    if arch not in _BUILDERS:
        raise ValueError(f"unknown MIL head architecture {arch!r}; choose from {', '.join(ARCHITECTURES)} or "
                         f"pass 'package.module:factory'")
    state = checkpoint_state_dict(checkpoint)
    infer, cls = _BUILDERS[arch]
    options = infer(state, arch, checkpoint)
    model = cls(**options)
    _load_strict(model, state, arch, checkpoint)
    return _finished(model, arch, checkpoint, options)


def load_xmil_head(run_dir, checkpoint: str = "best") -> PublishedHead:
    """The xMIL repository's AttnMIL from its run folder: ``args.json`` and ``<checkpoint>_model.pt``
    (``best`` or ``last``), the weights under ``model_state_dict``.

    Raises ``ValueError`` for a TransMIL run, a survival head or several encoders (not
    explainable here), and as :func:`load_published_head`.
    """
    run = Path(run_dir)
    args_path, weights = run / "args.json", run / f"{checkpoint}_model.pt"
    for p in (args_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"xMIL run folder {run}: {p.name} does not exist (an xMIL run folder holds "
                                    f"args.json and best_model.pt)")
    try:
        args = json.loads(args_path.read_text())
    except ValueError as exc:
        raise ValueError(f"{args_path} is not valid JSON: {exc}") from None
    model_kind = args.get("aggregation_model")
    if model_kind != "attention_mil":
        raise ValueError(f"{args_path}: aggregation_model {model_kind!r}; only xMIL's 'attention_mil' (AttnMIL) is "
                         f"read from a run folder (a TransMIL of the original layout loads with arch='transmil')")
    if args.get("head_type", "classification") != "classification" or int(args.get("num_encoders") or 1) != 1:
        raise ValueError(f"{args_path}: head_type {args.get('head_type')!r} with {args.get('num_encoders') or 1} "
                         f"encoder(s); only classification heads on one encoder are explained")
    head_dim = args.get("head_dim", args.get("num_classes", args.get("n_out")))
    try:
        options = dict(input_dim=int(args["input_dim"]), features_dim=int(args.get("features_dim", 256)),
                       inner_attention_dim=int(args.get("inner_attention_dim", 128)), head_dim=int(head_dim),
                       num_layers=int(args.get("num_layers", 1)), n_out_layers=int(args.get("n_out_layers") or 0),
                       bias=not args.get("no_bias", False))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{args_path}: cannot build AttnMIL from it ({type(exc).__name__}: {exc}); it needs "
                         f"input_dim and head_dim") from None
    model = XMILAttentionMIL(**options)
    _load_strict(model, checkpoint_state_dict(weights), "xMIL AttnMIL", weights)
    return _finished(model, "xmil", weights, options)
