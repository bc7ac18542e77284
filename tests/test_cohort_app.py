"""The app's cohort page and its library side (lrp_captum.viewer.cohort_results), with Streamlit's AppTest
(no browser): real slide files and result folders, a cohort table written by the cohort's writer."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lrp_captum.cohort import SlideSpec
from lrp_captum.cohort.table import cohort_table, write_cohort_table
from lrp_captum.viewer.cohort_results import (NO_PREDICTION, filter_cohort, find_cohorts, load_cohort, prediction_labels,
                                              sort_cohort)
from test_app_fixtures import make_fixture_dirs, write_fixture_result

PAGES = Path(__file__).resolve().parents[1] / "apps" / "views"


def _record(prediction, frac_positive, n_tiles, **extra):
    return dict(status="done", error="", prediction=prediction, frac_positive=frac_positive,
                frac_negative=1 - frac_positive, n_tiles=n_tiles, seconds=1.0, device="cpu", key="k", **extra)


@pytest.fixture
def dirs(tmp_path):
    """Slides case_0, case_1 (explained), new_0 (failed) in --slides; 'outside' elsewhere; the cohort
    table in --results, as `lrp-captum slide cohort SLIDES --out RESULTS` leaves it."""
    slides, results = make_fixture_dirs(tmp_path, n_explained=2, n_plain=1)
    elsewhere = tmp_path / "elsewhere" / "outside.tif"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes((slides / "new_0.tif").read_bytes())
    write_fixture_result(results / "outside")
    specs = [SlideSpec("case_0", slides / "case_0.tif", "A"), SlideSpec("case_1", slides / "case_1.tif", "B"),
             SlideSpec("new_0", slides / "new_0.tif"), SlideSpec("outside", elsewhere)]
    records = {"case_0": _record("positive", 0.75, 40), "case_1": _record("negative", 0.1, 30),
               "new_0": dict(status="failed", error="EmptyTissueError: slide new_0.tif: no tissue tiles", key="k"),
               "outside": _record("negative", 0.2, 10)}
    write_cohort_table(results, cohort_table(specs, records))
    return slides, results


def test_cohorts_are_found_in_the_results_folder_and_below(dirs, tmp_path):
    slides, results = dirs
    nested = results / "study2"
    write_cohort_table(nested, cohort_table([SlideSpec("x", slides / "case_0.tif")], {}))
    write_cohort_table(results / ".hidden", cohort_table([SlideSpec("x", slides / "case_0.tif")], {}))
    assert find_cohorts(results) == [".", "study2"]
    assert find_cohorts(tmp_path / "nothing") == []


def test_slides_link_to_the_viewer_only_where_it_shows_the_cohort_result(dirs):
    slides, results = dirs
    table = load_cohort(results, slides, results).set_index("slide_id")
    assert table["viewer"].dropna().to_dict() == {"case_0": "case_0.tif", "case_1": "case_1.tif",
                                                  "new_0": "new_0.tif"}
    assert table["viewer"].isna().tolist() == [False, False, False, True]  # 'outside' is not in --slides
    # a cohort in a subfolder of --results: the viewer would look in results/case_0, not results/sub/case_0
    write_cohort_table(results / "sub", cohort_table([SlideSpec("case_0", slides / "case_0.tif")], {}))
    assert load_cohort(results / "sub", slides, results)["viewer"].isna().all()


def test_filter_by_status_and_prediction_and_sort_with_missing_values_last(dirs):
    slides, results = dirs
    table = load_cohort(results, slides, results)
    assert prediction_labels(table) == [NO_PREDICTION, "negative", "positive"]
    assert filter_cohort(table, statuses=["failed"])["slide_id"].tolist() == ["new_0"]
    assert filter_cohort(table, predictions=[NO_PREDICTION])["slide_id"].tolist() == ["new_0"]
    assert filter_cohort(table, ["done"], ["negative"])["slide_id"].tolist() == ["case_1", "outside"]
    assert sort_cohort(table, "frac_positive", descending=True)["slide_id"].tolist() == [
        "case_0", "outside", "case_1", "new_0"]


def _page(pages_dir: str, slides: str, results: str):
    # runs as a standalone script inside AppTest: imports must be local
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    import streamlit as st

    spec = importlib.util.spec_from_file_location("cohort_page", pages_dir + "/cohort_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.render_cohort_page(st, SimpleNamespace(slides_dir=Path(slides), results_dir=Path(results)))


def _run(dirs) -> AppTest:
    slides, results = dirs
    return AppTest.from_function(_page, args=(str(PAGES), str(slides), str(results)), default_timeout=60).run()


def test_page_lists_the_cohort_with_counts_and_viewer_links(dirs):
    at = _run(dirs)
    assert not at.exception
    assert [m.value for m in at.metric] == ["4", "3", "1", "0"]
    shown = at.dataframe[0].value
    assert shown["slide_id"].tolist() == ["case_0", "case_1", "new_0", "outside"]
    assert shown["viewer"].iloc[:3].tolist() == ["./?slide=case_0.tif", "./?slide=case_1.tif",
                                                 "./?slide=new_0.tif"]
    assert shown["viewer"].isna().iloc[3]
    assert "EmptyTissueError" in shown.set_index("slide_id").loc["new_0", "error"]
    assert any("1 slide cannot be opened in the viewer: its file" in c.value for c in at.caption)


def test_page_opens_a_chosen_slide_in_the_viewer(dirs):
    at = _run(dirs)
    assert at.selectbox(key="cohort_open").options == ["case_0", "case_1", "new_0"]  # 'outside' has no viewer
    at.selectbox(key="cohort_open").set_value("case_1").run()
    assert [b.proto.url for b in at.get("link_button")] == ["./?slide=case_1.tif"]


def test_page_filters_by_status_and_prediction_and_sorts(dirs):
    at = _run(dirs)
    at.multiselect(key="cohort_status").set_value(["done"]).run()
    assert at.dataframe[0].value["slide_id"].tolist() == ["case_0", "case_1", "outside"]
    at.multiselect(key="cohort_prediction").set_value(["negative"]).run()
    assert at.dataframe[0].value["slide_id"].tolist() == ["case_1", "outside"]
    at.selectbox(key="cohort_sort").set_value("n_tiles").run()
    assert at.dataframe[0].value["slide_id"].tolist() == ["outside", "case_1"]
    at.toggle(key="cohort_descending").set_value(True).run()
    assert at.dataframe[0].value["slide_id"].tolist() == ["case_1", "outside"]
    assert not at.exception


def test_page_without_a_cohort_says_how_to_make_one(tmp_path):
    slides, results = make_fixture_dirs(tmp_path, n_explained=1, n_plain=0)
    at = AppTest.from_function(_page, args=(str(PAGES), str(slides), str(results))).run()
    assert any("lrp-captum slide cohort" in i.value for i in at.info) and not at.exception


def test_page_with_a_damaged_table_names_the_file(dirs):
    slides, results = dirs
    (results / "cohort.parquet").write_bytes(b"PAR1 not really")
    at = _run(dirs)
    assert any("cohort.parquet cannot be read" in e.value for e in at.error) and not at.exception



def test_a_cohort_table_linked_outside_the_results_folder_is_refused(dirs, tmp_path):
    slides, results = dirs
    elsewhere = tmp_path / "elsewhere_cohort"
    write_cohort_table(elsewhere, cohort_table([SlideSpec("secret", slides / "case_0.tif", "SECRET-LABEL")], {}))
    (results / "c2").mkdir()
    for name in ("cohort.csv", "cohort.parquet"):
        if (elsewhere / name).exists():
            (results / "c2" / name).symlink_to(elsewhere / name)
    at = _run(dirs)
    at.selectbox(key="cohort").set_value("c2").run()
    assert not at.exception and not at.dataframe
    assert any("outside the results folder" in e.value for e in at.error)
    assert not [e for e in at.error if "SECRET-LABEL" in e.value]


def test_cohort_page_messages_carry_no_absolute_path(dirs, tmp_path):
    slides, results = dirs
    (results / "cohort.parquet").write_bytes(b"PAR1 not really")
    shown = [e.value for e in _run(dirs).error]
    empty = tmp_path / "empty"
    empty.mkdir()
    at = AppTest.from_function(_page, args=(str(PAGES), str(slides), str(empty))).run()
    shown += [i.value for i in at.info]
    assert len(shown) == 2 and not [s for s in shown if str(tmp_path) in s]
