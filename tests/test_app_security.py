"""What an attacker could try on the app, and what a changed file system must not fool it into:
hostile slide names, symbolic links out of ``--results``, a replaced slide file, foreign ``Host``
headers and absolute paths in messages. Real files, real HTTP, Streamlit's AppTest.
(The browser-side check of hostile names is in test_app_browser.py; the Streamlit port's Host
check in test_app_cli.py.)"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest
from streamlit.testing.v1 import AppTest

from lrp_captum.viewer.escaping import json_for_script, markdown_literal
from lrp_captum.viewer.loopback import is_loopback_host
from lrp_captum.viewer.paths import UnsafePathError, resolve_under
from lrp_captum.viewer.results import list_slides
from lrp_captum.viewer.tile_server import TileServer
from test_app_fixtures import http_get, make_fixture_dirs, visible, write_fixture_result, write_fixture_slide

APP = str(Path(__file__).resolve().parents[1] / "apps" / "streamlit_app.py")
HOSTILE = "x</script><script>alert(document.domain)</script>.svs"  # three nested folders on disk


def get(server, path, host=None) -> tuple[int, bytes]:
    status, _, body = http_get(server.port, path, host)
    return status, body


def inline_script(page: str) -> str:
    return re.search(r"<script>(.*?)</script>", page, re.S).group(1)


# --- 1. values are escaped for where they are written --------------------------------------------
@pytest.mark.parametrize("value", [HOSTILE, "a<!--b", "&amp; \u2028 \u2029 'q' \"d\"", "ü/é.svs", ["</script>", 1]])
def test_json_for_script_keeps_the_value_and_writes_no_markup_characters(value):
    text = json_for_script(value)
    assert json.loads(text) == value
    assert not set("<>&\u2028\u2029") & set(text)


@pytest.mark.parametrize("text", [HOSTILE, "**bold** _it_ [link](http://evil.example) ![img](http://e/x.png)",
                                  ":red[colour] :material/home: $x^2$ `code` # heading\n- item", "a\\*b"])
def test_markdown_literal_renders_as_the_text_itself(text):
    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark").renderInline(markdown_literal(text))
    assert html.unescape(rendered) == text.replace("\n", " ")


@pytest.mark.parametrize("text", ["   ", "   ab", "  case 1", "\t x"])
def test_markdown_literal_keeps_each_leading_blank_as_one_space(text):
    """Leading blanks become ``&#32;`` one for one (no indented code block, nothing lost), also
    for a value that is only blanks."""
    lead = len(text) - len(text.lstrip(" \t"))
    out = markdown_literal(text)
    assert out[:5 * lead] == "&#32;" * lead and not out[5 * lead:].startswith("&#32;")


def test_viewer_page_puts_a_hostile_slide_name_into_its_script_as_inert_json():
    from lrp_captum.viewer.app_files import viewer_assets_dir
    from lrp_captum.viewer.tile_server import render_viewer_page

    page = render_viewer_page(viewer_assets_dir(), HOSTILE)
    assert page.count("<script") == page.count("</script>") == 3  # the page's own three, nothing injected
    assert "<script>alert" not in page
    value = inline_script(page).strip()
    assert value.startswith("window.LRP_SLIDE = ") and json.loads(value[len("window.LRP_SLIDE = "):-1]) == HOSTILE


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    slides, results = make_fixture_dirs(root, n_plain=0)
    path = slides / HOSTILE
    path.parent.mkdir(parents=True)
    write_fixture_slide(path, 1024, 768)
    return slides, results


def test_tile_server_viewer_page_for_a_hostile_name_runs_no_injected_script(hostile):
    slides, results = hostile
    assert HOSTILE in [e.rel_path for e in list_slides(slides, results)]
    with TileServer(slides, results) as srv:
        status, body = get(srv, "/viewer?slide=" + quote(HOSTILE, safe=""))
        info_status, info = get(srv, "/info?slide=" + quote(HOSTILE, safe=""))
    page = body.decode()
    assert status == 200 and "<script>alert" not in page
    assert page.count("<script") == 3
    assert info_status == 200 and json.loads(info)["slide"] == HOSTILE


def test_page_shows_a_hostile_slide_name_as_text(hostile, monkeypatch, tmp_path):
    slides, results = hostile
    (tmp_path / "model.json").write_text("{}")
    monkeypatch.setenv("LRP_CAPTUM_APP_SLIDES", str(slides))
    monkeypatch.setenv("LRP_CAPTUM_APP_RESULTS", str(results))
    monkeypatch.setenv("LRP_CAPTUM_APP_MODEL", str(tmp_path / "model.json"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["slide"] = HOSTILE
    at.run()
    assert not at.exception and at.selectbox(key="slide").value == HOSTILE
    shown = [visible(c.value) for c in at.caption] + [visible(b.label) for b in at.button]
    assert any(c.startswith(HOSTILE + " · ") for c in shown)
    assert "Explain " + HOSTILE in shown


# --- 2. results must resolve inside --results ----------------------------------------------------
@pytest.fixture
def linked(tmp_path):
    """case_0's result folder is a symbolic link to a valid result outside --results."""
    slides, results = make_fixture_dirs(tmp_path / "app", n_plain=0)
    outside = write_fixture_result(tmp_path / "elsewhere" / "case_0", slide=slides / "case_0.tif")
    (tmp_path / "elsewhere" / "secret.txt").write_text("do not serve")
    os.rename(results / "case_0", tmp_path / "original")
    os.symlink(outside, results / "case_0", target_is_directory=True)
    return slides, results, tmp_path


def test_result_folder_linked_outside_results_is_refused_by_info_and_tiles(linked):
    slides, results, _ = linked
    with TileServer(slides, results) as srv:
        assert get(srv, "/info?slide=case_0.tif")[0] == 403
        for layer in ("relevance", "probability", "grid", "tissue"):
            assert get(srv, f"/tile?slide=case_0.tif&layer={layer}&level=10&col=0&row=0")[0] == 403
        assert get(srv, "/tile?slide=case_0.tif&layer=slide&level=10&col=0&row=0")[0] == 200


def test_result_folder_linked_outside_results_is_not_listed_as_explained(linked):
    slides, results, _ = linked
    entry = list_slides(slides, results)[0]
    assert entry.status == "refused" and entry.result_dir is None
    assert "outside the results folder" in entry.detail


def test_result_file_linked_outside_results_is_refused(tmp_path):
    slides, results = make_fixture_dirs(tmp_path / "app", n_plain=0)
    elsewhere = write_fixture_result(tmp_path / "elsewhere", slide=slides / "case_0.tif")
    target = results / "case_0" / "relevance.zarr"
    import shutil

    shutil.rmtree(target)
    os.symlink(elsewhere / "relevance.zarr", target, target_is_directory=True)
    assert list_slides(slides, results)[0].status == "refused"
    with TileServer(slides, results) as srv:
        assert get(srv, "/info?slide=case_0.tif")[0] == 403
        assert get(srv, "/tile?slide=case_0.tif&layer=relevance&level=10&col=0&row=0")[0] == 403


def test_a_chunk_inside_the_zarr_store_linked_outside_is_refused_when_loaded(tmp_path):
    slides, results = make_fixture_dirs(tmp_path / "app", n_plain=0)
    (tmp_path / "secret").write_bytes(b"do not serve")
    chunk = next(p for p in (results / "case_0" / "relevance.zarr").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.unlink()
    os.symlink(tmp_path / "secret", chunk)
    with TileServer(slides, results) as srv:
        assert get(srv, "/info?slide=case_0.tif")[0] == 403
        assert get(srv, "/tile?slide=case_0.tif&layer=relevance&level=10&col=0&row=0")[0] == 403


def test_a_result_linked_into_a_sibling_folder_sharing_the_name_prefix_is_refused(tmp_path):
    """``results_evil/`` starts with the characters of ``results``: a prefix test would take it as inside."""
    slides, results = make_fixture_dirs(tmp_path, n_plain=0)
    evil = write_fixture_result(tmp_path / (results.name + "_evil") / "case_0", slide=slides / "case_0.tif")
    shutil.rmtree(results / "case_0")
    os.symlink(evil, results / "case_0", target_is_directory=True)
    entry = list_slides(slides, results)[0]
    assert entry.status == "refused" and entry.result_dir is None
    with TileServer(slides, results) as srv:
        assert get(srv, "/info?slide=case_0.tif")[0] == 403


def test_a_slide_linked_into_a_sibling_folder_sharing_the_name_prefix_is_refused(tmp_path):
    slides, results = make_fixture_dirs(tmp_path, n_explained=0, n_plain=0)
    (tmp_path / (slides.name + "_evil")).mkdir()
    evil = write_fixture_slide(tmp_path / (slides.name + "_evil") / "x.tif", 1024, 768)
    os.symlink(evil, slides / "x.tif")
    assert list_slides(slides, results) == []
    with pytest.raises(UnsafePathError):
        resolve_under(slides, "x.tif")
    with TileServer(slides, results) as srv:
        assert get(srv, "/info?slide=x.tif")[0] == 403


def test_result_folder_linked_inside_results_is_still_served(tmp_path):
    slides, results = make_fixture_dirs(tmp_path, n_plain=0)
    os.rename(results / "case_0", results / "kept")
    os.symlink(results / "kept", results / "case_0", target_is_directory=True)
    assert list_slides(slides, results)[0].status == "explained"
    with TileServer(slides, results) as srv:
        status, body = get(srv, "/info?slide=case_0.tif")
    assert status == 200 and json.loads(body)["result"] is not None


def test_page_says_a_linked_result_is_refused_and_offers_no_run_into_it(linked, monkeypatch):
    slides, results, root = linked
    monkeypatch.setenv("LRP_CAPTUM_APP_SLIDES", str(slides))
    monkeypatch.setenv("LRP_CAPTUM_APP_RESULTS", str(results))
    monkeypatch.setenv("LRP_CAPTUM_APP_MODEL", str(root / "model.json"))
    (root / "model.json").write_text("{}")
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.selectbox(key="slide").options == ["case_0.tif — refused"]
    assert any("outside the results folder" in e.value for e in at.error)
    assert "Most relevant tiles" not in [s.value for s in at.subheader]
    assert not [b for b in at.button if b.key == "explain_start"]


# --- 3. a replaced slide gets new tiles, and a result is checked against its slide ---------------
def _swap(path: Path, how: str) -> None:
    """Replace ``path`` by an inverted slide of exactly the same size."""
    before = path.stat()
    if how == "renamed over":  # new inode; the time is set back to the old one
        new = write_fixture_slide(path.with_name("new.tif.part"), 1024, 768, compression=None, inverted=True)
        os.replace(new, path)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    else:  # same inode, new time
        data = write_fixture_slide(path.with_name("tmp.tif.part"), 1024, 768, compression=None,
                                   inverted=True).read_bytes()
        with open(path, "r+b") as f:
            f.write(data)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    after = path.stat()
    assert after.st_size == before.st_size


@pytest.mark.parametrize("how", ["renamed over", "rewritten in place"])
def test_a_slide_replaced_by_another_of_the_same_size_serves_the_new_tiles(tmp_path, how):
    slides, results = tmp_path / "s", tmp_path / "r"
    slides.mkdir()
    write_fixture_slide(slides / "a.tif", 1024, 768, compression=None)
    url = "/tile?slide=a.tif&layer=slide&level=9&col=0&row=0"
    with TileServer(slides, results) as srv:
        old = get(srv, url)[1]
        _swap(slides / "a.tif", how)
        new = get(srv, url)[1]
    with TileServer(slides, results) as fresh:
        reference = get(fresh, url)[1]
    assert new != old and new == reference


@pytest.fixture
def swapped(tmp_path):
    """case_0.tif explained, then replaced by another slide file of other size (not the result's)."""
    slides, results = make_fixture_dirs(tmp_path, n_plain=0)
    write_fixture_slide(slides / "case_0.tif", inverted=True, compression="deflate")
    return slides, results


def test_result_of_another_slide_file_is_not_overlaid_and_info_says_why(swapped):
    with TileServer(*swapped) as srv:
        status, body = get(srv, "/info?slide=case_0.tif")
        tile_status, _ = get(srv, "/tile?slide=case_0.tif&layer=relevance&level=10&col=0&row=0")
    info = json.loads(body)
    assert status == 200 and info["result"] is None
    assert "another slide file" in info["result_error"]
    assert tile_status == 409


def test_slide_rewritten_after_its_result_gets_a_warning_with_the_overlay(tmp_path):
    slides, results = make_fixture_dirs(tmp_path, n_plain=0)
    path = slides / "case_0.tif"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5 * 10**9))
    with TileServer(slides, results) as srv:
        info = json.loads(get(srv, "/info?slide=case_0.tif")[1])
    assert info["result"] is not None and "modified after its result was made" in info["result"]["slide_warning"]


def test_page_shows_that_the_result_belongs_to_another_slide(swapped, monkeypatch):
    slides, results = swapped
    monkeypatch.setenv("LRP_CAPTUM_APP_SLIDES", str(slides))
    monkeypatch.setenv("LRP_CAPTUM_APP_RESULTS", str(results))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert any("another slide file" in e.value for e in at.error)
    assert "Most relevant tiles" not in [s.value for s in at.subheader]


# --- 4. DNS rebinding ------------------------------------------------------------------------------
@pytest.mark.parametrize("host, ok", [("127.0.0.1:8501", True), ("localhost", True), ("LOCALHOST:1", True),
                                      ("[::1]:8501", True), ("[::1]", True), ("localhost.:80", True),
                                      ("evil.example", False), ("evil.example:8501", False), ("", False),
                                      (None, False), ("127.0.0.1.evil.example", False), ("localhost:x", False),
                                      ("127.0.0.2", False)])
def test_loopback_host_names_are_recognised(host, ok):
    assert is_loopback_host(host) is ok


# --- 5. messages name paths relative to the configured folders ---------------------------------------
def test_tile_server_messages_carry_no_absolute_path(tmp_path):
    slides, results = make_fixture_dirs(tmp_path, n_plain=0)
    (tmp_path / "outside.svs").write_bytes(b"not a slide")
    os.symlink(tmp_path / "outside.svs", slides / "link.svs")
    (slides / "broken.svs").write_bytes(b"not a slide")
    (results / "case_0" / "tiles.csv").write_text("nonsense\n")
    with TileServer(slides, results) as srv:
        bodies = [get(srv, "/info?slide=link.svs"), get(srv, "/info?slide=broken.svs"),
                  get(srv, "/info?slide=case_0.tif"), get(srv, "/info?slide=sub/none.svs")]
    assert [status for status, _ in bodies] == [403, 400, 200, 404]
    assert "case_0/tiles.csv" in json.loads(bodies[2][1])["result_error"]
    for _, body in bodies:
        assert str(tmp_path) not in body.decode()


def test_page_messages_carry_no_absolute_path(tmp_path, monkeypatch):
    slides, results = make_fixture_dirs(tmp_path, n_explained=2, n_plain=0)
    (tmp_path / "outside.svs").write_bytes(b"x")
    os.symlink(tmp_path / "outside.svs", slides / "link.svs")
    (results / "case_1" / "relevance.zarr" / "zarr.json").write_text("not json")
    monkeypatch.setenv("LRP_CAPTUM_APP_SLIDES", str(slides))
    monkeypatch.setenv("LRP_CAPTUM_APP_RESULTS", str(results))
    shown = []
    for query in ("link.svs", "case_1.tif"):
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params["slide"] = query
        at.run()
        shown += [visible(e.value) for e in [*at.error, *at.warning, *at.caption]]
    assert any("Refused slide path" in s for s in shown) and any("relevance.zarr" in s for s in shown)
    assert not [s for s in shown if str(tmp_path) in s]


def test_files_named_finds_files_at_any_depth_below_the_root_only(tmp_path):
    from lrp_captum.viewer.paths import files_named

    root, outside = tmp_path / "results", tmp_path / "elsewhere"
    for folder in (root / "a", root / "b" / "c", root / ".hidden", outside):
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")
    (root / "b" / "other.json").write_text("{}")
    (root / "link").symlink_to(outside, target_is_directory=True)
    six, seven = root.joinpath(*"defghi"), root.joinpath(*"defghij")  # folders 6 and 7 deep
    seven.mkdir(parents=True)
    for folder in (six, seven):
        (folder / "manifest.json").write_text("{}")
    assert files_named(root, "manifest.json") == [root / "a" / "manifest.json",
                                                  root / "b" / "c" / "manifest.json",
                                                  six / "manifest.json"]  # max_depth 6
    assert files_named(root / "a" / "manifest.json", "manifest.json") == []  # not a folder


@pytest.mark.parametrize("name", ["C:results", "c:\\x", "\\\\server\\share", "a/../b"])
def test_a_windows_drive_a_share_or_a_parent_step_is_refused_as_a_result_path(name, tmp_path):
    with pytest.raises(UnsafePathError):
        resolve_under(tmp_path, name)
