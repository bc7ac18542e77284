"""Every CSV the project writes is data to a spreadsheet, never a formula: a text cell starting
with = + - @ (or a tab or carriage return before one) gets a leading ', through one helper
(lrp_captum.csv_cells) that every CSV writer uses; numbers stay numbers."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from lrp_captum import cli
from lrp_captum.csv_cells import FORMULA_PREFIXES, neutral_cell, original_cell
from test_wsi_support import tiny_model_config

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ['=HYPERLINK("http://host/x","open")', "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)*cmd",
           "\t=1+1", "\r=1+1"]


def _cells(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _is_formula(cell: str) -> bool:
    return cell.startswith(FORMULA_PREFIXES) and not re.fullmatch(r"[+-]?[\d.]+(e[+-]?\d+)?", cell)


@pytest.mark.parametrize("text", HOSTILE)
def test_a_text_cell_a_spreadsheet_would_run_gets_a_quote(text):
    assert neutral_cell(text) == "'" + text


@pytest.mark.parametrize("value", [-1, 2.5, -0.25, float("nan"), "-1.5", "+3", "1e-3", "tumour", "", None, "a=b"])
def test_numbers_and_plain_text_are_unchanged(value):
    assert neutral_cell(value) is value or neutral_cell(value) == value


@pytest.mark.parametrize("value", HOSTILE + ["'=x", "''=x", "'hello", "+ve", "-ve", "'", "-1.5", "plain"])
def test_the_project_reads_its_own_cells_back_as_they_were_given(value):
    assert original_cell(neutral_cell(value)) == value


def test_the_cohort_table_neutralises_a_label_from_the_input_csv(tmp_path):
    from lrp_captum.cohort.slides import SlideSpec
    from lrp_captum.cohort.table import cohort_table, read_cohort_table, write_cohort_table

    specs = [SlideSpec(f"s{i}", tmp_path / f"s{i}.tif", label=label) for i, label in enumerate(HOSTILE)]
    records = {s.slide_id: dict(status="done", n_tiles=10 + i, relevance_sum=-1.5 * i) for i, s in enumerate(specs)}
    write_cohort_table(tmp_path, cohort_table(specs, records))
    rows = _cells(tmp_path / "cohort.csv")
    assert [r["label"] for r in rows] == ["'" + h for h in HOSTILE]
    assert not any(_is_formula(cell) for r in rows for cell in r.values())
    assert [float(r["relevance_sum"]) for r in rows] == [-1.5 * i for i in range(len(HOSTILE))]  # numbers
    assert list(read_cohort_table(tmp_path)["label"]) == HOSTILE  # the Parquet table keeps the labels as given


def test_tiles_csv_neutralises_class_names(tmp_path):
    from lrp_captum.demos.sample_slide import write_sample_slide

    slide = write_sample_slide(tmp_path / "s.tif", 512, kind="tiff", seed=1)
    config = tiny_model_config(tmp_path / "model")
    hostile = dict(json.loads(config.read_text()), classes=["=HYPERLINK(\"http://host\")", "@cmd"])
    config.write_text(json.dumps(hostile))
    out = tmp_path / "out"
    assert cli.main(["slide", "explain", str(slide), "--model", str(config), "--out", str(out), "--quiet"]) == 0
    rows = _cells(out / "tiles.csv")
    assert rows and {r["prediction"] for r in rows} <= {"'" + c for c in hostile["classes"]}
    assert not any(_is_formula(cell) for r in rows for cell in list(r.values()) + list(r))
    float(rows[0]["relevance_sum"])  # numbers stay numbers
    from lrp_captum.viewer.results import load_result

    assert set(load_result(out, tmp_path).tiles["prediction"]) <= set(hostile["classes"])  # read back as named


def test_the_mil_cohort_csv_neutralises_its_cells(tmp_path):
    from lrp_captum.wsi.mil.labelled_cohort import write_cohort_csv

    write_cohort_csv(tmp_path, [dict(slide="=1+cmd.tif", label="@x", split="train", mask="", lesion_fraction=-0.5)])
    (row,) = _cells(tmp_path / "cohort.csv")
    assert row["slide"] == "'=1+cmd.tif" and row["label"] == "'@x" and row["lesion_fraction"] == "-0.5"


def test_the_ranking_report_neutralises_explainer_names(tmp_path):
    import torch

    from lrp_captum.evaluation import ranking

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    x = torch.rand(2, 3, 8, 8)
    res = ranking.rank_explainers(model, x, {"=cmd|calc": lambda m, inputs, target: inputs.abs()}, target=0,
                                  patch_size=2, include_random=False)
    res.write_report(tmp_path)
    assert [r["name"] for r in _cells(tmp_path / "results.csv")] == ["'=cmd|calc"]
    assert {r["name"] for r in _cells(tmp_path / "curves.csv")} == {"'=cmd|calc"}


def test_every_csv_writer_of_the_project_goes_through_the_one_helper():
    writers = re.compile(r"\.to_csv\(|csv\.writer\(|csv\.DictWriter\(")
    found = [f"{p.relative_to(ROOT)}:{n}" for folder in ("lrp_captum", "apps", "benchmarks")
             for p in sorted((ROOT / folder).rglob("*.py")) if p.name != "csv_cells.py"
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if writers.search(line)]
    assert not found, f"CSV written without lrp_captum.csv_cells: {found}"
