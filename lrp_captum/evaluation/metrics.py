"""Explanation-quality metrics: perturbation curves, conservation, continuity, randomisation.

Every metric is batched and device-agnostic: tensors in, tensors out (one value or one curve per
example, on the device of the inputs). The explanations can come from any Captum attribution
method, not only LRP. Where a metric must *recompute* explanations (continuity, model
randomisation, or a perturbation metric given no precomputed attributions) it takes an
*explainer*: a callable ``explain(model, inputs, target) -> attributions``. Build one for a
Captum method with :func:`captum_explainer`::

    explain = captum_explainer(captum.attr.Saliency, abs=False)
    explain = captum_explainer(lrp_captum.LRP, composite="epsilon_plus")

Inputs are ``(N, C, *S)`` with one or two spatial dimensions ``S`` (``(N, C, L)`` signals,
``(N, C, H, W)`` images). Attributions are ``(N, C, *S)`` or ``(N, 1, *S)``; where a metric needs
one score per location it sums over channels.

References: Samek et al. 2017 (region perturbation, AOPC), Montavon et al. 2018 (continuity,
selectivity), Adebayo et al. 2018 (model randomisation), Arras et al. 2022 (relevance mass
accuracy), Zhang et al. 2018 (pointing game).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
from torch import Tensor, nn

__all__ = [
    "Explainer",
    "captum_explainer",
    "target_output",
    "perturbation_baseline",
    "patch_grid",
    "patch_scores",
    "perturbation_order",
    "perturbation_curve",
    "aopc",
    "PerturbationResult",
    "region_perturbation",
    "selectivity",
    "random_order_aopc",
    "conservation_error",
    "continuity",
    "model_randomisation",
    "relevance_mass_accuracy",
    "pointing_game",
]

Explainer = Callable[[nn.Module, Tensor, Tensor], Tensor]
AttributionsOrExplainer = Union[Tensor, Explainer]
OutputSpec = Union[str, Callable[[Tensor], Tensor]]

BASELINES = ("zeros", "mean", "blur", "uniform")
ORDERS = ("morf", "lerf", "random")


# --------------------------------------------------------------------------------------------
# explainers and model outputs
# --------------------------------------------------------------------------------------------
def captum_explainer(method: type, **kwargs) -> Explainer:
    """Wrap a Captum attribution class into ``explain(model, inputs, target)``.

    Parameters
    ----------
    method : type
        A Captum attribution class whose constructor takes the model as first argument
        (``Saliency``, ``InputXGradient``, ``IntegratedGradients``, ``Occlusion``,
        ``lrp_captum.LRP``...).
    **kwargs
        Keyword arguments. Those the constructor accepts (e.g. ``composite`` for ``LRP``) go to
        the constructor, the others to ``attribute`` (e.g. ``sliding_window_shapes``).

    Returns
    -------
    callable
        ``explain(model, inputs, target) -> Tensor`` of the shape of ``inputs``, detached.
    """
    import inspect

    init_params = set(inspect.signature(method.__init__).parameters) - {"self", "forward_func", "model"}
    init_kwargs = {k: v for k, v in kwargs.items() if k in init_params}
    attr_kwargs = {k: v for k, v in kwargs.items() if k not in init_params}

    def explain(model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        attributor = method(model, **init_kwargs)
        inputs = inputs.detach().clone().requires_grad_(True)
        return attributor.attribute(inputs, target=target, **attr_kwargs).detach()

    explain.__name__ = getattr(method, "__name__", "explain")
    return explain


def _as_target(target, n: int, device) -> Tensor:
    """Targets as a long tensor ``(N,)``."""
    if isinstance(target, int):
        return torch.full((n,), target, dtype=torch.long, device=device)
    t = torch.as_tensor(target, device=device).long().reshape(-1)
    if t.numel() == 1:
        return t.expand(n).clone()
    if t.numel() != n:
        raise ValueError(f"target has {t.numel()} entries but there are {n} inputs; "
                         "give one class index per example or a single int")
    return t


def target_output(model: nn.Module, inputs: Tensor, target, output: OutputSpec = "logit",
                  batch_size: int = 256) -> Tensor:
    """The explained model output for each example, without gradients.

    Parameters
    ----------
    model : nn.Module
        Maps ``(N, ...)`` to ``(N, K)`` class scores.
    inputs : Tensor
        ``(N, ...)``.
    target : int or sequence or Tensor
        Class index, one for all or one per example.
    output : {"logit", "probability"} or callable
        ``"logit"``: the raw score; ``"probability"``: softmax over classes; a callable maps the
        ``(N, K)`` output to ``(N, K)``.
    batch_size : int
        Examples per forward pass.

    Returns
    -------
    Tensor
        ``(N,)``.
    """
    n = inputs.shape[0]
    t = _as_target(target, n, inputs.device)
    outs = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            y = model(inputs[start:start + batch_size])
            if output == "probability":
                y = torch.softmax(y, dim=1)
            elif callable(output):
                y = output(y)
            elif output != "logit":
                raise ValueError(f"output must be 'logit', 'probability' or a callable, got {output!r}")
            outs.append(y.gather(1, t[start:start + batch_size, None])[:, 0])
    return torch.cat(outs)


def _resolve_attributions(attributions: AttributionsOrExplainer, model, inputs, target) -> Tensor:
    if isinstance(attributions, Tensor):
        a = attributions.detach().to(inputs.device)
    elif callable(attributions):
        a = attributions(model, inputs, _as_target(target, inputs.shape[0], inputs.device)).detach()
    else:
        raise TypeError("attributions must be a tensor (N, C, ...) or a callable "
                        "explain(model, inputs, target); see captum_explainer()")
    if a.dim() != inputs.dim() or a.shape[0] != inputs.shape[0] or a.shape[2:] != inputs.shape[2:]:
        raise ValueError(f"attributions of shape {tuple(a.shape)} do not match inputs "
                         f"{tuple(inputs.shape)}; expected (N, C, *S) or (N, 1, *S)")
    return a


def _check_spatial(inputs: Tensor) -> None:
    if inputs.dim() not in (3, 4):
        raise ValueError(f"inputs must be (N, C, L) or (N, C, H, W), got shape {tuple(inputs.shape)}")


# --------------------------------------------------------------------------------------------
# perturbation baselines
# --------------------------------------------------------------------------------------------
def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur over the spatial dims of ``(N, C, *S)``, reflect padding."""
    radius = max(1, int(math.ceil(3 * sigma)))
    k = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = k / k.sum()
    out = x
    n, c = x.shape[:2]
    for d in range(2, x.dim()):
        moved = out.movedim(d, -1)
        shape = moved.shape
        flat = moved.reshape(-1, 1, shape[-1])
        pad = min(radius, shape[-1] - 1)
        if pad > 0:
            flat = nn.functional.pad(flat, (pad, pad), mode="reflect")
        if pad < radius:  # signal shorter than the kernel: replicate the rest
            flat = nn.functional.pad(flat, (radius - pad, radius - pad), mode="replicate")
        flat = nn.functional.conv1d(flat, k.view(1, 1, -1))
        out = flat.reshape(shape).movedim(-1, d)
    return out


def perturbation_baseline(inputs: Tensor, baseline: Union[str, float, Tensor] = "zeros",
                          blur_sigma: float = 4.0, uniform_range: tuple[float, float] | None = None,
                          generator: torch.Generator | None = None) -> Tensor:
    """The values that replace perturbed locations.

    Parameters
    ----------
    inputs : Tensor
        ``(N, C, *S)``.
    baseline : {"zeros", "mean", "blur", "uniform"}, float or Tensor
        ``"zeros"``: 0; ``"mean"``: per-image, per-channel mean of the unperturbed input;
        ``"blur"``: the input blurred by a Gaussian of std ``blur_sigma`` pixels; ``"uniform"``:
        noise drawn once per example, uniform in ``uniform_range`` (default: the example's own
        min and max); a float or a tensor broadcastable to ``inputs``: that value.
    blur_sigma : float
        Gaussian std in pixels for ``"blur"``.
    uniform_range : (low, high), optional
        Range for ``"uniform"``.
    generator : torch.Generator, optional
        Random source for ``"uniform"`` (on the inputs' device); default seeded with 0.

    Returns
    -------
    Tensor
        Same shape as ``inputs``.
    """
    if isinstance(baseline, Tensor):
        return baseline.to(inputs.device, inputs.dtype).expand_as(inputs).clone()
    if isinstance(baseline, (int, float)):
        return torch.full_like(inputs, float(baseline))
    if baseline == "zeros":
        return torch.zeros_like(inputs)
    if baseline == "mean":
        dims = tuple(range(2, inputs.dim()))
        return inputs.mean(dim=dims, keepdim=True).expand_as(inputs).clone()
    if baseline == "blur":
        return _gaussian_blur(inputs, blur_sigma)
    if baseline == "uniform":
        if generator is None:
            generator = torch.Generator(device=inputs.device).manual_seed(0)
        u = torch.rand(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
        if uniform_range is None:
            flat = inputs.reshape(inputs.shape[0], -1)
            shape = (-1,) + (1,) * (inputs.dim() - 1)
            low, high = flat.min(1).values.view(shape), flat.max(1).values.view(shape)
        else:
            low, high = uniform_range
        return low + (high - low) * u
    raise ValueError(f"unknown baseline {baseline!r}; use one of {BASELINES}, a number or a tensor")


# --------------------------------------------------------------------------------------------
# patches and orders
# --------------------------------------------------------------------------------------------
def patch_grid(spatial_shape: Sequence[int], patch_size: int | Sequence[int],
               device=None) -> tuple[Tensor, int]:
    """Patch index of every location of a non-overlapping grid.

    Where a side is not a multiple of the patch size the grid is centred (the border patches on
    both sides are cut), as quantus does by padding.

    Returns
    -------
    ids : Tensor
        ``spatial_shape``, long, patch index per location (row-major over patches).
    n_patches : int
    """
    spatial_shape = tuple(int(s) for s in spatial_shape)
    if isinstance(patch_size, int):
        patch_size = (patch_size,) * len(spatial_shape)
    if len(patch_size) != len(spatial_shape):
        raise ValueError(f"patch_size {patch_size} does not match spatial shape {spatial_shape}")
    coords, counts = [], []
    for size, p in zip(spatial_shape, patch_size):
        if p < 1:
            raise ValueError(f"patch_size must be >= 1, got {p}")
        pad = (-size) % p
        before = pad // 2
        coords.append((torch.arange(size, device=device) + before) // p)
        counts.append((size + pad) // p)
    ids = torch.zeros(spatial_shape, dtype=torch.long, device=device)
    stride = 1
    for d in reversed(range(len(spatial_shape))):
        view = [1] * len(spatial_shape)
        view[d] = spatial_shape[d]
        ids = ids + coords[d].view(view) * stride
        stride *= counts[d]
    return ids, stride


def patch_scores(attributions: Tensor, patch_size: int | Sequence[int]) -> Tensor:
    """Relevance per patch: attributions summed over channels and over each patch.

    Parameters
    ----------
    attributions : Tensor
        ``(N, C, *S)``.

    Returns
    -------
    Tensor
        ``(N, P)`` with ``P`` patches in row-major order.
    """
    ids, n_patches = patch_grid(attributions.shape[2:], patch_size, attributions.device)
    per_loc = attributions.sum(1).reshape(attributions.shape[0], -1)
    out = torch.zeros(attributions.shape[0], n_patches, dtype=per_loc.dtype, device=per_loc.device)
    return out.index_add_(1, ids.reshape(-1), per_loc)


def perturbation_order(scores: Tensor, order: str = "morf", seed: int = 0) -> Tensor:
    """Order in which patches are perturbed.

    Ties are broken at random (seeded), so that an explanation giving every patch the same score
    is perturbed exactly in the order ``order="random"`` uses with the same seed.

    Parameters
    ----------
    scores : Tensor
        ``(N, P)`` patch relevance.
    order : {"morf", "lerf", "random"}
        Most relevant first, least relevant first, or a random permutation.

    Returns
    -------
    Tensor
        ``(N, P)`` patch indices, first perturbed first.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    n, p = scores.shape
    gen = torch.Generator().manual_seed(seed)
    perm = torch.stack([torch.randperm(p, generator=gen) for _ in range(n)]).to(scores.device)
    if order == "random":
        return perm
    key = scores.gather(1, perm)
    key = -key if order == "morf" else key
    idx = torch.argsort(key, dim=1, stable=True)
    return perm.gather(1, idx)


# --------------------------------------------------------------------------------------------
# perturbation curves
# --------------------------------------------------------------------------------------------
def perturbation_curve(model: nn.Module, inputs: Tensor, attributions: AttributionsOrExplainer,
                       target, patch_size: int | Sequence[int] = 8, order: str = "morf",
                       baseline: Union[str, float, Tensor] = "zeros", n_steps: int | None = None,
                       patches_per_step: int = 1, output: OutputSpec = "logit",
                       batch_size: int = 256, seed: int = 0, blur_sigma: float = 4.0,
                       uniform_range: tuple[float, float] | None = None,
                       noise_seed: int = 0) -> Tensor:
    """Model output while patches are replaced, in the order given by the attributions.

    Region perturbation (Samek et al. 2017); with ``patch_size=1`` this is pixel flipping (a
    pixel = all channels at one location). Perturbations accumulate: step ``k`` has the first
    ``k * patches_per_step`` patches of the order replaced by the baseline.

    Parameters
    ----------
    model : nn.Module
        Classifier ``(N, C, *S) -> (N, K)``, in eval mode.
    inputs : Tensor
        ``(N, C, L)`` or ``(N, C, H, W)``.
    attributions : Tensor or callable
        ``(N, C|1, *S)`` attributions, or an explainer ``explain(model, inputs, target)``.
    target : int or sequence or Tensor
        Explained class, one for all or one per example.
    patch_size : int or tuple
        Side of the square (or 1-D) patches, in pixels/samples.
    order : {"morf", "lerf", "random"}
        Most relevant first, least relevant first, random.
    baseline : str, float or Tensor
        Replacement values, see :func:`perturbation_baseline`.
    n_steps : int, optional
        Number of perturbation steps; default: until every patch is replaced.
    patches_per_step : int
        Patches replaced per step.
    output : {"logit", "probability"} or callable
        Which output is tracked, see :func:`target_output`.
    batch_size : int
        Perturbed inputs per forward pass.
    seed : int
        Seeds tie-breaking and the ``"random"`` order.
    blur_sigma, uniform_range
        See :func:`perturbation_baseline`.
    noise_seed : int
        Seeds the ``"uniform"`` noise image (the same for every order, so curves compare).

    Returns
    -------
    Tensor
        ``(N, n_steps + 1)``: column 0 is the unperturbed output ``f(x)``, column ``k`` the output
        after ``k`` steps.
    """
    _check_spatial(inputs)
    a = _resolve_attributions(attributions, model, inputs, target)
    n = inputs.shape[0]
    t = _as_target(target, n, inputs.device)
    ids, n_patches = patch_grid(inputs.shape[2:], patch_size, inputs.device)
    scores = patch_scores(a, patch_size)
    perm = perturbation_order(scores, order, seed)
    # rank[n, p]: the step-count position at which patch p of example n gets replaced
    rank = torch.empty_like(perm)
    rank.scatter_(1, perm, torch.arange(n_patches, device=perm.device).expand(n, -1).contiguous())
    rank_map = rank[:, ids.reshape(-1)].reshape((n,) + tuple(inputs.shape[2:])).unsqueeze(1)
    max_steps = math.ceil(n_patches / patches_per_step)
    n_steps = max_steps if n_steps is None else min(int(n_steps), max_steps)
    gen = torch.Generator(device=inputs.device).manual_seed(noise_seed)
    base = perturbation_baseline(inputs, baseline, blur_sigma=blur_sigma,
                                 uniform_range=uniform_range, generator=gen)

    steps = torch.arange(n_steps + 1, device=inputs.device)
    per_chunk = max(1, batch_size // n)
    curve = []
    for start in range(0, n_steps + 1, per_chunk):
        k = steps[start:start + per_chunk]
        # (k, N, 1, *S) mask of replaced locations at each step of the chunk
        mask = rank_map.unsqueeze(0) < (k * patches_per_step).view((-1,) + (1,) * rank_map.dim())
        x = torch.where(mask, base.unsqueeze(0), inputs.unsqueeze(0))
        y = target_output(model, x.reshape((-1,) + tuple(inputs.shape[1:])), t.repeat(len(k)),
                          output, batch_size=max(batch_size, n))
        curve.append(y.view(len(k), n).T)
    return torch.cat(curve, dim=1)


def aopc(curve: Tensor) -> Tensor:
    """Area over the perturbation curve (Samek et al. 2017).

    ``AOPC = 1/(L+1) * sum_{k=0..L} (f(x^(0)) - f(x^(k)))``.

    Parameters
    ----------
    curve : Tensor
        ``(N, L + 1)`` from :func:`perturbation_curve` (column 0 unperturbed).

    Returns
    -------
    Tensor
        ``(N,)``, in units of the tracked output. High for MoRF = the explanation found what
        matters; low for LeRF = what it called irrelevant is irrelevant.
    """
    return (curve[:, :1] - curve).mean(dim=1)


@dataclass
class PerturbationResult:
    """MoRF and LeRF curves with their summaries; every field is per example.

    Attributes
    ----------
    morf, lerf : Tensor
        ``(N, L + 1)`` outputs, most / least relevant patches first.
    aopc_morf, aopc_lerf : Tensor
        ``(N,)`` AOPC of each curve.
    abpc : Tensor
        ``(N,)`` area between the curves, ``mean_k (lerf_k - morf_k)``; equals
        ``aopc_morf - aopc_lerf``. High = the explanation separates relevant from irrelevant.
    """

    morf: Tensor
    lerf: Tensor
    aopc_morf: Tensor
    aopc_lerf: Tensor
    abpc: Tensor


def region_perturbation(model: nn.Module, inputs: Tensor, attributions: AttributionsOrExplainer,
                        target, **kwargs) -> PerturbationResult:
    """MoRF and LeRF perturbation curves, their AOPC and the area between them.

    Takes the keyword arguments of :func:`perturbation_curve` except ``order``.
    """
    a = _resolve_attributions(attributions, model, inputs, target)
    morf = perturbation_curve(model, inputs, a, target, order="morf", **kwargs)
    lerf = perturbation_curve(model, inputs, a, target, order="lerf", **kwargs)
    return PerturbationResult(morf=morf, lerf=lerf, aopc_morf=aopc(morf), aopc_lerf=aopc(lerf),
                              abpc=(lerf - morf).mean(dim=1))


def random_order_aopc(model: nn.Module, inputs: Tensor, target, n_random: int = 4,
                      **kwargs) -> Tensor:
    """AOPC of random perturbation orders, the chance level of :func:`selectivity`.

    It does not depend on any explanation, so one computation serves all candidates.
    Takes the keyword arguments of :func:`perturbation_curve` except ``order`` and ``seed``;
    random order ``s`` uses ``seed=s``.

    Returns
    -------
    Tensor
        ``(N,)`` mean AOPC over ``n_random`` random orders.
    """
    kwargs.pop("seed", None)
    dummy = torch.zeros((inputs.shape[0], 1) + tuple(inputs.shape[2:]), device=inputs.device,
                        dtype=inputs.dtype)
    return torch.stack([aopc(perturbation_curve(model, inputs, dummy, target, order="random",
                                                seed=s, **kwargs))
                        for s in range(n_random)]).mean(0)


def selectivity(model: nn.Module, inputs: Tensor, attributions: AttributionsOrExplainer, target,
                n_random: int = 4, chance: Tensor | None = None, **kwargs) -> Tensor:
    """How much faster the output falls in the explanation's order than in a random order.

    ``AOPC_MoRF(explanation) - mean_r AOPC(random order r)``. Zero in expectation for an
    explanation that does not discriminate between locations (e.g. relevance spread uniformly,
    which is conservative and continuous but uninformative, seed 004); exactly zero with
    ``n_random=1``, because ties are broken like random order 0. Positive = better than chance.

    Parameters
    ----------
    chance : Tensor, optional
        ``(N,)`` precomputed :func:`random_order_aopc` (same settings), to reuse across
        explanations.

    Takes the keyword arguments of :func:`perturbation_curve` except ``order`` and ``seed``.

    Returns
    -------
    Tensor
        ``(N,)``, in units of the tracked output.
    """
    a = _resolve_attributions(attributions, model, inputs, target)
    kwargs.pop("seed", None)
    morf = aopc(perturbation_curve(model, inputs, a, target, order="morf", seed=0, **kwargs))
    if chance is None:
        chance = random_order_aopc(model, inputs, target, n_random, **kwargs)
    return morf - chance


# --------------------------------------------------------------------------------------------
# conservation, continuity, randomisation
# --------------------------------------------------------------------------------------------
def conservation_error(model: nn.Module, inputs: Tensor, attributions: AttributionsOrExplainer,
                       target, output: OutputSpec = "logit", explained_output: Tensor | None = None,
                       relative: bool = False) -> Tensor:
    """Per example: total relevance minus the explained output.

    Parameters
    ----------
    attributions : Tensor or callable
        ``(N, ...)`` or an explainer.
    output : {"logit", "probability"} or callable
        The output the explanation started from (ignored if ``explained_output`` is given).
    explained_output : Tensor, optional
        ``(N,)`` the relevance that was put on the output, e.g. for a contrastive start.
    relative : bool
        Divide by ``|f(x)|``.

    Returns
    -------
    Tensor
        ``(N,)`` ``|sum_i R_i - f(x)|`` (divided by ``|f(x)|`` if ``relative``); 0 = conservative.
    """
    a = _resolve_attributions(attributions, model, inputs, target)
    f = explained_output if explained_output is not None else target_output(model, inputs, target, output)
    f = f.to(a.device, a.dtype).reshape(-1)
    err = (a.reshape(a.shape[0], -1).sum(1) - f).abs()
    return err / f.abs().clamp_min(1e-12) if relative else err


def _shift(x: Tensor, shift: int) -> Tensor:
    """Translate the last spatial dim by ``shift`` samples, replicating the border."""
    if shift == 0:
        return x
    flat = x.reshape(-1, 1, x.shape[-1])
    if shift > 0:
        out = nn.functional.pad(flat, (shift, 0), mode="replicate")[..., :x.shape[-1]]
    else:
        out = nn.functional.pad(flat, (0, -shift), mode="replicate")[..., -shift:]
    return out.reshape(x.shape)


def continuity(model: nn.Module, explain: Explainer, inputs: Tensor, target,
               perturbation: str = "noise", scale: float = 0.02, n_samples: int = 4,
               seed: int = 0) -> Tensor:
    """Input-shift stability: relative change of the explanation per relative change of input.

    For perturbed inputs ``x'`` (Montavon et al. 2018, seed 004 "explanations must be continuous
    in the input domain") it computes
    ``(||R(x') - R(x)|| / ||R(x)||) / (||x' - x|| / ||x||)`` and returns the largest value over
    the samples (a local Lipschitz estimate that does not depend on the explanation's scale).

    Parameters
    ----------
    explain : callable
        ``explain(model, inputs, target) -> (N, ...)`` attributions.
    perturbation : {"noise", "shift"}
        ``"noise"``: add Gaussian noise of std ``scale`` times the example's value range;
        ``"shift"``: translate along the last axis by 1..``n_samples`` samples (alternating
        direction), replicating the border.
    n_samples : int
        Perturbed copies per example.

    Returns
    -------
    Tensor
        ``(N,)``; lower = more continuous. The target is kept at the unperturbed class.
    """
    n = inputs.shape[0]
    t = _as_target(target, n, inputs.device)
    r0 = explain(model, inputs, t).detach().reshape(n, -1)
    x_flat = inputs.reshape(n, -1)
    x_norm = x_flat.norm(dim=1).clamp_min(1e-12)
    r_norm = r0.norm(dim=1).clamp_min(1e-12)
    gen = torch.Generator(device=inputs.device).manual_seed(seed)
    span = (x_flat.max(1).values - x_flat.min(1).values).clamp_min(1e-12)
    worst = torch.zeros(n, device=inputs.device, dtype=r0.dtype)
    for s in range(n_samples):
        if perturbation == "noise":
            noise = torch.randn(inputs.shape, generator=gen, device=inputs.device, dtype=inputs.dtype)
            xp = inputs + scale * span.view((-1,) + (1,) * (inputs.dim() - 1)) * noise
        elif perturbation == "shift":
            k = (s // 2 + 1) * (1 if s % 2 == 0 else -1)
            xp = _shift(inputs, k)
        else:
            raise ValueError(f"perturbation must be 'noise' or 'shift', got {perturbation!r}")
        rp = explain(model, xp, t).detach().reshape(n, -1)
        dx = (xp.reshape(n, -1) - x_flat).norm(dim=1) / x_norm
        dr = (rp - r0).norm(dim=1) / r_norm
        worst = torch.maximum(worst, dr / dx.clamp_min(1e-12))
    return worst


def _ranks(x: Tensor) -> Tensor:
    return torch.argsort(torch.argsort(x, dim=1), dim=1).to(x.dtype)


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


def _parametrised_leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules()
            if len(list(m.children())) == 0 and any(True for _ in m.parameters(recurse=False))]


def model_randomisation(model: nn.Module, explain: Explainer, inputs: Tensor, target,
                        layers: int | Sequence[str] = 1, similarity: str = "spearman",
                        absolute: bool = False, seed: int = 0) -> Tensor:
    """Sanity check: similarity of explanations before and after re-initialising upper layers.

    Adebayo et al. 2018: an explanation that barely changes when the model's top layers are
    randomised does not explain the model. The check runs on a deep copy; ``model`` is never
    modified. A high similarity (near 1) is the red flag.

    Parameters
    ----------
    explain : callable
        ``explain(model, inputs, target)``; called on ``model`` and on the randomised copy.
    layers : int or sequence of str
        The last ``layers`` parametrised leaf modules (in registration order), or module names
        (as in ``model.named_modules()``), whose ``reset_parameters()`` is called (modules
        without one get each parameter redrawn from a normal of its own mean and std).
    similarity : {"spearman", "pearson"}
        Correlation between the channel-summed explanations of each example.
    absolute : bool
        Compare absolute values (ignores sign flips).
    seed : int
        Seeds the re-initialisation (the global RNG state is restored afterwards).

    Returns
    -------
    Tensor
        ``(N,)`` correlation in [-1, 1].
    """
    n = inputs.shape[0]
    t = _as_target(target, n, inputs.device)
    randomised = copy.deepcopy(model)
    leaves = _parametrised_leaves(randomised)
    if isinstance(layers, int):
        if not 1 <= layers <= len(leaves):
            raise ValueError(f"layers={layers}: the model has {len(leaves)} parametrised layers")
        chosen = leaves[-layers:]
    else:
        named = dict(randomised.named_modules())
        missing = [name for name in layers if name not in named]
        if missing:
            raise ValueError(f"no module named {missing} in the model; names are those of "
                             "model.named_modules(), e.g. " + ", ".join(n for n, _ in leaves[-3:]))
        chosen = [(name, named[name]) for name in layers]
    devices = [inputs.device] if inputs.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for name, module in chosen:
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
                continue
            # custom layer: redraw each parameter from a normal with its own mean and std
            with torch.no_grad():
                for param in module.parameters(recurse=False):
                    std = param.std().item() if param.numel() > 1 else 0.0
                    param.normal_(param.mean().item(), std if std > 0 else 1.0)
    a = explain(model, inputs, t).detach().reshape(n, -1)
    b = explain(randomised, inputs, t).detach().reshape(n, -1)
    if absolute:
        a, b = a.abs(), b.abs()
    if similarity == "spearman":
        return _pearson(_ranks(a), _ranks(b))
    if similarity == "pearson":
        return _pearson(a, b)
    raise ValueError(f"similarity must be 'spearman' or 'pearson', got {similarity!r}")


# --------------------------------------------------------------------------------------------
# ground-truth localisation
# --------------------------------------------------------------------------------------------
def _location_relevance(attributions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    if mask.dim() == attributions.dim() and mask.shape[1] == 1:
        mask = mask[:, 0]
    r = attributions.sum(1) if attributions.dim() == mask.dim() + 1 else attributions
    if r.shape != mask.shape:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not match attributions "
                         f"{tuple(attributions.shape)}; expected (N, *S) or (N, 1, *S)")
    return r.reshape(r.shape[0], -1), mask.reshape(mask.shape[0], -1).to(r.device).bool()


def relevance_mass_accuracy(attributions: Tensor, mask: Tensor) -> Tensor:
    """Share of positive relevance inside the ground-truth mask (Arras et al. 2022).

    Parameters
    ----------
    attributions : Tensor
        ``(N, C, *S)`` (summed over channels first) or ``(N, *S)``.
    mask : Tensor
        ``(N, *S)`` or ``(N, 1, *S)``, true where the evidence is.

    Returns
    -------
    Tensor
        ``(N,)`` in [0, 1]; a random attribution scores about the mask's area fraction.
    """
    r, m = _location_relevance(attributions, mask)
    pos = r.clamp_min(0)
    return (pos * m).sum(1) / pos.sum(1).clamp_min(1e-30)


def pointing_game(attributions: Tensor, mask: Tensor) -> Tensor:
    """Whether the location of maximal relevance lies in the ground-truth mask.

    Returns
    -------
    Tensor
        ``(N,)`` float, 1.0 for a hit, 0.0 for a miss.
    """
    r, m = _location_relevance(attributions, mask)
    return m.gather(1, r.argmax(1, keepdim=True))[:, 0].to(r.dtype)
