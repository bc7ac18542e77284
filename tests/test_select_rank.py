"""rank_explainers: ranking, table, figure and report folder."""
import csv

import torch
from torch import nn

from lrp_captum.evaluation import metrics as M
from lrp_captum.evaluation import ranking as S


class _Linear(nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x):
        return torch.einsum("nchw,kchw->nk", x, self.weight)


def _setup():
    gen = torch.Generator().manual_seed(0)
    model = _Linear(torch.randn(2, 1, 8, 8, generator=gen)).eval()
    x = torch.rand(6, 1, 8, 8, generator=gen)
    exact = lambda m, inp, t: inp * m.weight[t]  # noqa: E731  exact contributions
    reversed_ = lambda m, inp, t: -inp * m.weight[t]  # noqa: E731  the worst possible order
    return model, x, {"exact": exact, "reversed": reversed_}


def test_exact_contributions_rank_first_and_reversed_order_last():
    model, x, cands = _setup()
    res = S.rank_explainers(model, x, cands, target=0, patch_size=2, baseline="zeros")
    assert [r["name"] for r in res.rows] == ["exact", "random", "reversed"]
    assert [r["rank"] for r in res.rows] == [1, 2, 3]
    assert res.best == "exact"


def test_table_values_are_batch_means_of_the_metric_functions():
    model, x, cands = _setup()
    res = S.rank_explainers(model, x, cands, target=0, patch_size=2, baseline="zeros")
    a = cands["exact"](model, x, torch.zeros(6, dtype=torch.long))
    ref = M.region_perturbation(model, x, a, 0, patch_size=2, baseline="zeros")
    row = next(r for r in res.rows if r["name"] == "exact")
    assert abs(row["aopc_morf"] - ref.aopc_morf.mean().item()) < 1e-5
    assert abs(row["abpc"] - ref.abpc.mean().item()) < 1e-5
    assert row["conservation_error"] < 1e-5  # exact contributions of a bias-free model


def test_ranking_by_a_lower_is_better_column_puts_smallest_first():
    model, x, cands = _setup()
    res = S.rank_explainers(model, x, cands, target=0, patch_size=2, rank_by="aopc_lerf")
    values = [r["aopc_lerf"] for r in res.rows]
    assert values == sorted(values)


def test_masks_add_localisation_columns():
    model, x, cands = _setup()
    masks = torch.zeros(6, 8, 8, dtype=torch.bool)
    masks[:, :4] = True
    res = S.rank_explainers(model, x, cands, target=0, patch_size=2, masks=masks)
    assert {"mass_accuracy", "pointing_game"} <= set(res.rows[0])


def test_write_report_writes_markdown_png_and_csv_matching_the_table(tmp_path):
    model, x, cands = _setup()
    res = S.rank_explainers(model, x, cands, target=0, patch_size=2, randomisation_layers=1)
    report = res.write_report(tmp_path / "rep")
    text = report.read_text()
    assert "| exact |" in text and "curves.png" in text
    assert (tmp_path / "rep" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "rep" / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == [r["name"] for r in res.rows]
    assert abs(float(rows[0]["aopc_morf"]) - res.rows[0]["aopc_morf"]) < 1e-9
    with open(tmp_path / "rep" / "curves.csv") as fh:
        curve_rows = list(csv.DictReader(fh))
    assert len(curve_rows) == 3 * 2 * 17  # 3 candidates x (MoRF, LeRF) x (16 patches + 1)


def test_figure_has_morf_and_lerf_panels_with_one_line_per_candidate():
    import matplotlib.pyplot as plt

    model, x, cands = _setup()
    fig = S.rank_explainers(model, x, cands, target=0, patch_size=4).figure()
    assert len(fig.axes) == 2 and all(len(ax.lines) == 3 for ax in fig.axes)
    plt.close(fig)


def test_dataframe_is_indexed_by_candidate_name():
    model, x, cands = _setup()
    df = S.rank_explainers(model, x, cands, target=0, patch_size=4).to_dataframe()
    assert list(df.index) == ["exact", "random", "reversed"]


def test_gamma_epsilon_grid_names_every_combination_and_runs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    grid = S.lrp_grid(gammas=(0.0, 0.5), epsilons=(1e-6, 0.25), low=torch.zeros(3), high=torch.ones(3))
    assert sorted(grid) == ["gamma=0,eps=0.25", "gamma=0,eps=1e-06", "gamma=0.5,eps=0.25", "gamma=0.5,eps=1e-06"]
    res = S.rank_explainers(model, torch.rand(3, 3, 8, 8), grid, patch_size=4)
    assert len(res.rows) == 5


def test_gamma_changes_the_explanation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    x = torch.rand(2, 3, 8, 8)
    grid = S.lrp_grid(gammas=(0.0, 1.0), epsilons=(1e-6,))
    a0 = grid["gamma=0,eps=1e-06"](model, x, torch.tensor([0, 1]))
    a1 = grid["gamma=1,eps=1e-06"](model, x, torch.tensor([0, 1]))
    assert not torch.allclose(a0, a1)
