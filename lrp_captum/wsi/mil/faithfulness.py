"""How good is tile evidence? Localisation against lesion masks and patch-dropping faithfulness.

- :func:`tile_auroc`: AUROC of the evidence for telling lesion tiles from the others of one slide
  (a tile is a lesion tile when at least ``positive_at`` of its area is lesion; tiles with some
  lesion but less are left out, as neither clearly lesion nor clearly not).
- :func:`patch_dropping_curve` / :func:`~lrp_captum.evaluation.metrics.aopc`: remove the top-k tiles by
  evidence from the bag, k = 0, 1, ..., and follow the target logit; AOPC is the mean drop. A
  faithful explanation puts first the tiles whose removal lowers the logit most.
- :func:`compare_methods`: both measures for several evidence methods over several bags.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence, Union

import numpy as np
import torch
from torch import Tensor, nn

from lrp_captum.evaluation.metrics import aopc
from lrp_captum.core.model_mode import evaluation_mode
from lrp_captum.wsi.mil.evidence import MethodUnavailableError, tile_evidence


def tile_auroc(scores, lesion_fraction, positive_at: float = 0.5) -> float:
    """AUROC of ``scores`` (N,) separating lesion tiles from lesion-free tiles (NaN if one side is empty).

    Parameters
    ----------
    scores : (N,) evidence per tile (higher = more lesion).
    lesion_fraction : (N,) share of each tile's area that is lesion (0..1).
    positive_at : a tile with at least this share is a lesion tile; tiles with a share in
        (0, positive_at) are left out.

    Ties count one half (the Mann-Whitney statistic).
    """
    from scipy.stats import rankdata

    s = np.asarray(scores, np.float64)
    f = np.asarray(lesion_fraction, np.float64)
    pos, neg = f >= positive_at, f == 0
    if not pos.any() or not neg.any():
        return float("nan")
    r = rankdata(np.concatenate([s[pos], s[neg]]))
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    return float((r[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def patch_dropping_curve(head: nn.Module, bag: Tensor, scores, target: int, max_drop: int = 20) -> Tensor:
    """Target logit after removing the top-k tiles by ``scores``, for k = 0 .. min(max_drop, N-1).

    Parameters
    ----------
    head : MIL head, (B, N, D) -> (B, C).
    bag : (N, D) embeddings.
    scores : (N,) evidence; ties are broken by tile order.
    target : class index.
    max_drop : largest number of removed tiles (at least one tile always remains).

    Returns
    -------
    (K + 1,) float64 logits; element 0 is the unperturbed bag.
    """
    order = torch.from_numpy(np.argsort(-np.asarray(scores, np.float64), kind="stable").copy())
    k_max = min(int(max_drop), len(bag) - 1)
    out = []
    with torch.no_grad(), evaluation_mode(head):
        for k in range(k_max + 1):
            kept = torch.sort(order[k:]).values  # keep the bag order: heads need not be order-invariant
            out.append(head(bag[kept].unsqueeze(0))[0, target].double())
    return torch.stack(out)


def random_scores(n: int, seed: int = 0) -> np.ndarray:
    """(n,) standard normal scores: the chance baseline of the comparison."""
    return np.random.default_rng(seed).standard_normal(n)


def compare_methods(head: nn.Module, bags: Sequence[Tensor], methods: Sequence[Union[str, Callable]], *,
                    targets: Sequence[int], lesion_fractions: Sequence = None, max_drop: int = 20,
                    positive_at: float = 0.5, names: Sequence[str] | None = None, random_seeds: int = 3):
    """Per (bag, method): tile AUROC, AOPC of patch dropping, and the seconds the method took.

    Parameters
    ----------
    head : MIL head.
    bags : (N_i, D) embeddings, one per slide.
    methods : evidence method names or callables (:mod:`lrp_captum.wsi.mil.evidence`);
        a method that raises :class:`MethodUnavailableError` gets rows with NaN and
        ``available=False``. A ``"random"`` row (mean over ``random_seeds`` orders) is added.
    targets : explained class index per bag.
    lesion_fractions : (N_i,) lesion share per tile, per bag (None: no AUROC).
    max_drop, positive_at : see :func:`patch_dropping_curve`, :func:`tile_auroc`.
    names : display names of ``methods`` (default their names).

    Returns
    -------
    pandas.DataFrame with columns slide, method, available, auroc, aopc, seconds, n_tiles.
    """
    import pandas as pd

    names = list(names or [m if isinstance(m, str) else getattr(m, "__name__", repr(m)) for m in methods])
    rows = []
    for s, (bag, target) in enumerate(zip(bags, targets)):
        frac = None if lesion_fractions is None else lesion_fractions[s]
        for name, method in zip(names, methods):
            t0 = time.perf_counter()
            try:
                scores = tile_evidence(method, head, bag, target).scores.double().numpy()
            except MethodUnavailableError:
                rows.append(dict(slide=s, method=name, available=False, auroc=np.nan, aopc=np.nan,
                                 seconds=np.nan, n_tiles=len(bag)))
                continue
            seconds = time.perf_counter() - t0
            curve = patch_dropping_curve(head, bag, scores, target, max_drop)
            rows.append(dict(slide=s, method=name, available=True,
                             auroc=tile_auroc(scores, frac, positive_at) if frac is not None else np.nan,
                             aopc=float(aopc(curve.unsqueeze(0))[0]), seconds=seconds, n_tiles=len(bag)))
        rand = [random_scores(len(bag), seed) for seed in range(random_seeds)]
        aurocs = [tile_auroc(r, frac, positive_at) for r in rand] if frac is not None else [np.nan]
        rows.append(dict(slide=s, method="random", available=True,
                         auroc=float(np.mean(aurocs)),  # NaN for all seeds alike when no lesion tile
                         aopc=float(np.mean([float(aopc(patch_dropping_curve(head, bag, r, target, max_drop)
                                                         .unsqueeze(0))[0]) for r in rand])),
                         seconds=0.0, n_tiles=len(bag)))
    return pd.DataFrame(rows)


DEFAULT_METHODS = ("xmil_lrp", "xmil_lrp_bias_kept", "attention", "attention_norm", "gradient",
                   "integrated_gradients", "single", "leave_one_out")


def compare_on_cohort(head, cohort, *, split: str = "test", methods=DEFAULT_METHODS, embeddings_dir=None,
                      target: str | int = "lesion", max_drop: int = 20, positive_at: float = 0.5):
    """:func:`compare_methods` on the held-out slides of a cohort with lesion masks.

    Parameters
    ----------
    head : a loaded :class:`~lrp_captum.wsi.mil.head_files.MILHead` or its JSON path.
    cohort : cohort folder (``cohort.csv`` with a ``mask`` column).
    split : which slides (default the held-out ``test`` split).
    methods : evidence methods (names or callables).
    embeddings_dir : embedding cache (default ``<cohort>/embeddings``).
    target : the explained class (name or index) on every slide; AUROC uses the slides that
        hold a lesion, AOPC all slides of the split.

    Returns
    -------
    pandas.DataFrame as :func:`compare_methods`, plus columns ``slide_name`` and ``label``.
    """
    from lrp_captum.demos.mil_cohort import tile_lesion_fraction
    from lrp_captum.wsi.mil.encoders import build_encoder
    from lrp_captum.wsi.mil.head_files import MILHead, load_head
    from lrp_captum.wsi.mil.training import cohort_bags

    head = head if isinstance(head, MILHead) else load_head(head)
    encoder = build_encoder(head.encoder_spec)
    head.check_encoder(encoder)
    entries, bags = cohort_bags(cohort, encoder, embeddings_dir, splits=(split,))
    if not entries:
        raise ValueError(f"cohort {cohort} has no slides in split {split!r}")
    t = head.class_index(target)
    fractions = [tile_lesion_fraction(e.mask, b.tiles) if e.mask is not None else np.zeros(len(b))
                 for e, b in zip(entries, bags)]
    table = compare_methods(head.model, [head.bag_input(b.features) for b in bags], list(methods), targets=[t] * len(bags),
                            lesion_fractions=fractions, max_drop=max_drop, positive_at=positive_at)
    table["slide_name"] = [entries[i].slide.name for i in table["slide"]]
    table["label"] = [entries[i].label for i in table["slide"]]
    return table
