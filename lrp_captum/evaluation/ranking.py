"""Choosing an explanation method by measured quality (seed 004: "try all parameters, and select
the one producing the best explanations").

:func:`rank_explainers` runs candidate explainers (LRP composites, a γ/ε grid, Captum methods)
on one model and one batch, measures them with :mod:`lrp_captum.evaluation.metrics`, and ranks them by AOPC
of the MoRF curve, with the other metrics beside it. The result gives a table
(:meth:`SelectionResult.table`, :meth:`SelectionResult.to_dataframe`), a figure of the mean
perturbation curves (:meth:`SelectionResult.figure`) and a report folder
(:meth:`SelectionResult.write_report`: ``report.md``, ``curves.png``, ``results.csv``,
``curves.csv``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from lrp_captum.csv_cells import write_csv_rows
from lrp_captum.evaluation import metrics as M

__all__ = ["lrp_explainer", "lrp_explainers", "captum_explainers", "CAPTUM_METHODS", "random_explainer", "lrp_grid",
           "rank_explainers", "SelectionResult", "METRIC_DIRECTIONS"]

# column -> True when higher is better (for the report's arrows)
METRIC_DIRECTIONS = {
    "aopc_morf": True, "aopc_lerf": False, "abpc": True, "selectivity": True,
    "conservation_error": False, "continuity": False, "randomisation_similarity": False,
    "mass_accuracy": True, "pointing_game": True,
}


# --------------------------------------------------------------------------------------------
# candidates
# --------------------------------------------------------------------------------------------
def lrp_explainer(composite, canonizers="auto", output_mode: str | None = None,
                  **composite_kwargs) -> M.Explainer:
    """An explainer running :class:`lrp_captum.LRP` with ``composite``.

    Parameters
    ----------
    composite : str or composite object
        A name of :func:`lrp_captum.core.composites.list_composites` (built with
        ``composite_kwargs``, e.g. ``low``/``high`` for box composites) or a composite.
    canonizers : str or list
        Passed to ``LRP``.
    output_mode : str, optional
        Passed to ``LRP.attribute`` (``"logit"`` by default there).
    """
    def explain(model: nn.Module, inputs: Tensor, target: Tensor) -> Tensor:
        from lrp_captum import LRP
        from lrp_captum.core.composites import get_composite

        comp = get_composite(composite, **composite_kwargs) if isinstance(composite, str) else composite
        kwargs = {} if output_mode is None else {"output_mode": output_mode}
        lrp = LRP(model, composite=comp, canonizers=canonizers)
        return lrp.attribute(inputs.detach().clone(), target=target, **kwargs).detach()

    explain.__name__ = f"lrp_{composite}" if isinstance(composite, str) else "lrp"
    return explain


def lrp_explainers(names: Sequence[str] = ("seeds", "epsilon_gamma_box", "epsilon_plus_flat",
                                           "epsilon", "zero"),
                   low: Tensor | None = None, high: Tensor | None = None) -> dict[str, M.Explainer]:
    """Explainers for registered LRP composites, by name.

    ``low``/``high`` (per-channel input bounds, see :func:`lrp_captum.core.rules.zbox_bounds`) are
    passed to the composites that need them (:func:`lrp_captum.composite_needs_bounds`).

    Raises
    ------
    UnknownCompositeError
        A name is not registered (a ``ValueError`` listing the registered names).
    ValueError
        A composite needs bounds and ``low``/``high`` are not given.
    """
    from lrp_captum.core.composites import composite_needs_bounds

    out = {}
    for name in names:
        if composite_needs_bounds(name):
            if low is None or high is None:
                raise ValueError(f"composite {name!r} needs input bounds low/high "
                                 "(e.g. lrp_captum.zbox_bounds(mean, std))")
            out[name] = lrp_explainer(name, low=low, high=high)
        else:
            out[name] = lrp_explainer(name)
    return out


def lrp_grid(gammas: Sequence[float] = (0.0, 0.1, 0.25, 1.0),
             epsilons: Sequence[float] = (1e-6, 0.25), low: Tensor | None = None,
             high: Tensor | None = None) -> dict[str, M.Explainer]:
    """Explainers over a γ × ε grid: γ on convolutions, ε on dense layers.

    With input bounds ``low``/``high`` this is the ``epsilon_gamma_box`` composite (z^B on the
    first convolution) at each ``(gamma, epsilon)``; without, ``epsilon_plus`` with its
    convolutions switched to the generalised γ rule.

    Returns
    -------
    dict
        ``"gamma=0.25,eps=1e-06" -> explainer``.
    """
    from lrp_captum.core.rules import EpsilonRule, GeneralizedGammaRule

    out = {}
    for g in gammas:
        for e in epsilons:
            if low is not None and high is not None:
                ex = lrp_explainer("epsilon_gamma_box", low=low, high=high, gamma=g, epsilon=e)
            else:
                conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
                layer_map = {c: GeneralizedGammaRule(g) for c in conv}
                layer_map[nn.Linear] = EpsilonRule(e)
                ex = lrp_explainer("epsilon_plus", layer_map=layer_map)
            out[f"gamma={g:g},eps={e:g}"] = ex
    return out


CAPTUM_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "occlusion")


def captum_explainers(names: Sequence[str] = CAPTUM_METHODS,
                      occlusion_window: int = 4) -> dict[str, M.Explainer]:
    """Captum's gradient and perturbation baselines as explainers.

    ``saliency`` is the signed gradient (``abs=False``: a relevance map, not a magnitude map),
    ``occlusion`` uses a ``occlusion_window``-pixel square window with that stride, zero
    baseline.
    """
    from captum.attr import InputXGradient, IntegratedGradients, Saliency

    table = {
        "saliency": lambda: M.captum_explainer(Saliency, abs=False),
        "input_x_gradient": lambda: M.captum_explainer(InputXGradient),
        "integrated_gradients": lambda: M.captum_explainer(IntegratedGradients, n_steps=32,
                                                           internal_batch_size=256),
        "occlusion": lambda: _occlusion(occlusion_window),
    }
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown Captum method(s) {unknown}; choose from {sorted(table)}")
    return {n: table[n]() for n in names}


def _occlusion(window: int) -> M.Explainer:
    from captum.attr import Occlusion

    def explain(model, inputs, target):
        c = inputs.shape[1]
        shape = (c,) + (window,) * (inputs.dim() - 2)
        stride = (c,) + (window,) * (inputs.dim() - 2)
        return Occlusion(model).attribute(inputs, sliding_window_shapes=shape, strides=stride,
                                          target=target, perturbations_per_eval=64).detach()

    return explain


def random_explainer(seed: int = 0) -> M.Explainer:
    """Gaussian noise as attributions: the chance reference every explanation must beat."""
    def explain(model, inputs, target):
        gen = torch.Generator(device=inputs.device).manual_seed(seed)
        return torch.randn(inputs.shape, generator=gen, device=inputs.device, dtype=inputs.dtype)

    return explain


# --------------------------------------------------------------------------------------------
# ranking
# --------------------------------------------------------------------------------------------
@dataclass
class SelectionResult:
    """Measured quality of each candidate, ranked by ``rank_by``.

    Attributes
    ----------
    rows : list of dict
        One dict per candidate, best first: ``name``, ``rank``, metric means (see
        ``METRIC_DIRECTIONS``), ``aopc_morf_sem`` and ``seconds``.
    per_example : dict
        ``name -> {metric -> (N,) tensor}`` (on CPU).
    curves : dict
        ``name -> {"morf": (L+1,), "lerf": (L+1,)}`` mean curves over the batch (on CPU).
    settings : dict
        The settings used (patch size, baseline, output, N...).
    """

    rows: list[dict]
    per_example: dict[str, dict[str, Tensor]]
    curves: dict[str, dict[str, Tensor]]
    settings: dict = field(default_factory=dict)

    @property
    def best(self) -> str:
        """Name of the top-ranked candidate."""
        return self.rows[0]["name"]

    def table(self) -> list[dict]:
        """The ranked rows (copies)."""
        return [dict(r) for r in self.rows]

    def to_dataframe(self):
        """The ranked rows as a pandas DataFrame indexed by name."""
        import pandas as pd

        return pd.DataFrame(self.rows).set_index("name")

    def to_markdown(self, digits: int = 3) -> str:
        """The ranked rows as a GitHub markdown table."""
        cols = [c for c in self.rows[0] if not c.endswith("_sem")]
        head = [c + (" ↑" if METRIC_DIRECTIONS.get(c) else " ↓" if c in METRIC_DIRECTIONS else "")
                for c in cols]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(cols)]
        for r in self.rows:
            cells = []
            for c in cols:
                v = r[c]
                if isinstance(v, float):
                    cells.append("n/a" if math.isnan(v) else f"{v:.{digits}g}" if abs(v) < 1e-2 and v != 0
                                 else f"{v:.{digits}f}")
                else:
                    cells.append(str(v))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def figure(self):
        """Mean MoRF and LeRF curves of every candidate (matplotlib Figure, two panels)."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        for name in [r["name"] for r in self.rows]:
            c = self.curves[name]
            x = torch.linspace(0, 1, c["morf"].numel())
            style = dict(ls="--", color="grey") if name == "random" else {}
            axes[0].plot(x, c["morf"], label=name, **style)
            axes[1].plot(x, c["lerf"], label=name, **style)
        out = self.settings.get("output", "logit")
        for ax, title in zip(axes, ("MoRF (most relevant first): steep fall = good",
                                    "LeRF (least relevant first): flat = good")):
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("fraction of patches replaced")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel(f"target {out} (mean over batch)")
        axes[1].legend(fontsize=8, loc="best")
        fig.tight_layout()
        return fig

    def write_report(self, directory: str | Path) -> Path:
        """Write ``report.md``, ``curves.png``, ``results.csv`` and ``curves.csv``.

        Returns
        -------
        Path
            The report file.
        """
        import matplotlib.pyplot as plt

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        fig = self.figure()
        fig.savefig(d / "curves.png", dpi=110)
        plt.close(fig)
        header = list(self.rows[0])
        write_csv_rows(d / "results.csv", header, ([r.get(k, "") for k in header] for r in self.rows))
        write_csv_rows(d / "curves.csv", ["name", "order", "step", "fraction", "output"],
                       ([name, order, k, k / max(c[order].numel() - 1, 1), v]
                        for name, c in self.curves.items() for order in ("morf", "lerf")
                        for k, v in enumerate(c[order].tolist())))
        s = self.settings
        lines = [
            "# Explanation quality report", "",
            f"Ranked by **{s.get('rank_by', 'aopc_morf')}** on {s.get('n')} inputs "
            f"({s.get('input_shape')}); perturbation: {s.get('patch_size')}-pixel patches "
            f"replaced by `{s.get('baseline')}`, tracked output: target {s.get('output')}.", "",
            f"Best: **{self.best}**", "",
            self.to_markdown(), "",
            "↑ higher is better, ↓ lower is better. Definitions: docs/evaluation.md of lrp-captum. "
            "`aopc_morf`: mean drop of the output while the most relevant patches are replaced; "
            "`aopc_lerf`: the same, least relevant first; `abpc`: area between the LeRF and MoRF "
            "curves; `selectivity`: AOPC gain over random orders; `conservation_error`: median "
            "|Σ R − f(x)| / |f(x)|; `continuity`: relative explanation change per relative input "
            "change (median); `randomisation_similarity`: Spearman correlation with the explanation "
            "of a model whose top layer was re-initialised (near 1 = red flag).", "",
            "![perturbation curves](curves.png)", "",
            "Files: `results.csv` (this table), `curves.csv` (mean curves).", "",
        ]
        path = d / "report.md"
        path.write_text("\n".join(lines))
        return path


def _predicted(model: nn.Module, inputs: Tensor, batch_size: int = 256) -> Tensor:
    with torch.no_grad():
        return torch.cat([model(inputs[i:i + batch_size]).argmax(1)
                          for i in range(0, inputs.shape[0], batch_size)])


def rank_explainers(model: nn.Module, inputs: Tensor, candidates: Mapping[str, M.Explainer],
                    target=None, patch_size: int = 8, baseline="mean", output: str = "logit",
                    n_steps: int | None = None, masks: Tensor | None = None,
                    include_random: bool = True, conservation: bool = True,
                    continuity_samples: int = 0, randomisation_layers: int = 0,
                    selectivity_orders: int = 2, rank_by: str = "aopc_morf",
                    batch_size: int = 256, seed: int = 0) -> SelectionResult:
    """Measure every candidate explainer on one batch and rank them.

    Parameters
    ----------
    model : nn.Module
        Classifier in eval mode; never modified (randomisation works on a copy).
    inputs : Tensor
        ``(N, C, L)`` or ``(N, C, H, W)`` on the model's device.
    candidates : mapping
        ``name -> explain(model, inputs, target)``; see :func:`lrp_explainer`,
        :func:`lrp_grid`, :func:`captum_explainers`.
    target : int, sequence or Tensor, optional
        Explained class; default: the model's prediction.
    patch_size, baseline, output, n_steps
        Perturbation settings, see :func:`lrp_captum.evaluation.metrics.perturbation_curve`.
    masks : Tensor, optional
        ``(N, *S)`` ground-truth masks: adds ``mass_accuracy`` and ``pointing_game``.
    include_random : bool
        Add the ``random`` reference explainer (Gaussian noise).
    conservation : bool
        Add ``conservation_error`` (median relative error).
    continuity_samples : int
        If > 0, add ``continuity`` (median over the batch) with that many noise samples.
    randomisation_layers : int
        If > 0, add ``randomisation_similarity`` (mean Spearman) after re-initialising that many
        top layers.
    selectivity_orders : int
        Random orders for ``selectivity`` (0 = skip).
    rank_by : str
        Column to rank by; higher is better for ``aopc_morf``, ``abpc``, ``selectivity``,
        ``mass_accuracy``, ``pointing_game``, lower for the others.

    Returns
    -------
    SelectionResult
    """
    if not candidates:
        raise ValueError("no candidates to rank; pass e.g. {'epsilon_plus': lrp_explainer('epsilon_plus')}")
    model.eval()
    t = _predicted(model, inputs, batch_size) if target is None else M._as_target(target, inputs.shape[0], inputs.device)
    cands = dict(candidates)
    if include_random and "random" not in cands:
        cands["random"] = random_explainer(seed)
    pert = dict(patch_size=patch_size, baseline=baseline, output=output, n_steps=n_steps,
                batch_size=batch_size)
    chance = (M.random_order_aopc(model, inputs, t, selectivity_orders, **pert)
              if selectivity_orders > 0 else None)
    rows, per_example, curves = [], {}, {}
    for name, explain in cands.items():
        t0 = time.perf_counter()
        try:
            a = explain(model, inputs, t).detach()
        except Exception as exc:  # one broken candidate must not hide the others' results
            raise RuntimeError(f"candidate {name!r} failed to explain: {exc}") from exc
        seconds = time.perf_counter() - t0
        # seed 0 everywhere: ties are then broken like random order 0 of the chance level
        res = M.region_perturbation(model, inputs, a, t, seed=0, **pert)
        ex = {"aopc_morf": res.aopc_morf, "aopc_lerf": res.aopc_lerf, "abpc": res.abpc}
        if chance is not None:
            ex["selectivity"] = res.aopc_morf - chance
        if conservation:
            ex["conservation_error"] = M.conservation_error(model, inputs, a, t, output="logit",
                                                            relative=True)
        if continuity_samples > 0:
            ex["continuity"] = M.continuity(model, explain, inputs, t, n_samples=continuity_samples,
                                            seed=seed)
        if randomisation_layers > 0 and name != "random":
            ex["randomisation_similarity"] = M.model_randomisation(
                model, explain, inputs, t, layers=randomisation_layers, seed=seed)
        if masks is not None:
            ex["mass_accuracy"] = M.relevance_mass_accuracy(a, masks)
            ex["pointing_game"] = M.pointing_game(a, masks)
        ex = {k: v.detach().float().cpu() for k, v in ex.items()}
        row = {"name": name}
        for k, v in ex.items():
            robust = k in ("conservation_error", "continuity")  # heavy-tailed: median
            row[k] = float(v.median() if robust else v.mean())
            if k == "aopc_morf":
                row["aopc_morf_sem"] = float(v.std() / math.sqrt(max(1, v.numel())))
        row["seconds"] = seconds
        rows.append(row)
        per_example[name] = ex
        curves[name] = {"morf": res.morf.mean(0).cpu(), "lerf": res.lerf.mean(0).cpu()}
    columns = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k, float("nan")) for k in columns} for r in rows]
    if rank_by not in rows[0]:
        raise ValueError(f"cannot rank by {rank_by!r}; measured columns are {list(rows[0])[1:]}")
    higher = METRIC_DIRECTIONS.get(rank_by, True)
    rows.sort(key=lambda r: (math.isnan(r[rank_by]), -r[rank_by] if higher else r[rank_by]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    rows = [{"name": r["name"], "rank": r["rank"], **{k: v for k, v in r.items() if k not in ("name", "rank")}}
            for r in rows]
    settings = dict(rank_by=rank_by, n=inputs.shape[0], input_shape=tuple(inputs.shape[1:]),
                    patch_size=patch_size, baseline=baseline, output=output)
    return SelectionResult(rows, per_example, curves, settings)
