"""The localhost tile server: real HTTP requests against real OpenSlide and zarr files."""
from __future__ import annotations

import http.client
import io
import json

import pytest
from PIL import Image

from lrp_captum.viewer.tile_server import TileServer
from test_app_fixtures import http_get, make_fixture_dirs


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    slides, results = make_fixture_dirs(tmp_path_factory.mktemp("tiles"))
    (slides.parent / "secret.txt").write_text("do not serve")
    with TileServer(slides, results) as srv:
        yield srv


def get_headers(server, path):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return {k.lower(): v for k, v in resp.getheaders()}


def test_tiles_are_not_readable_or_embeddable_by_other_sites(server):
    headers = get_headers(server, "/tile?slide=case_0.tif&layer=slide&level=12&col=0&row=0")
    assert "access-control-allow-origin" not in headers
    assert headers["cross-origin-resource-policy"] == "same-origin"


def test_viewer_page_may_only_be_framed_by_local_pages(server):
    headers = get_headers(server, "/viewer?slide=case_0.tif")
    assert headers["content-security-policy"] == "frame-ancestors http://127.0.0.1:* http://localhost:*"


def get(server, path, host=None):
    return http_get(server.port, path, host)


def test_server_binds_to_loopback_only(server):
    assert server._httpd.server_address[0] == "127.0.0.1"


def test_info_describes_slide_and_result(server):
    status, _, body = get(server, "/info?slide=case_0.tif")
    info = json.loads(body)
    assert status == 200
    assert (info["width"], info["height"], info["mpp"]) == (3000, 2000, 0.5)
    assert info["result"]["downsample"] == 16 and info["result"]["vmax"] == pytest.approx(1.0)


def test_slide_without_result_has_null_result(server):
    _, _, body = get(server, "/info?slide=new_0.tif")
    assert json.loads(body)["result"] is None


def test_slide_tile_is_a_jpeg_of_deep_zoom_size(server):
    status, ctype, body = get(server, "/tile?slide=case_0.tif&layer=slide&level=12&col=0&row=0")
    assert status == 200 and ctype == "image/jpeg"
    assert Image.open(io.BytesIO(body)).size == (255, 255)  # 254 + 1 overlap on the inner side


@pytest.mark.parametrize("layer", ["relevance", "probability", "grid", "tissue"])
def test_overlay_tiles_are_rgba_pngs_of_the_slide_tile_size(server, layer):
    status, ctype, body = get(server, f"/tile?slide=case_0.tif&layer={layer}&level=10&col=1&row=0")
    img = Image.open(io.BytesIO(body))
    assert status == 200 and ctype == "image/png" and img.mode == "RGBA"
    _, _, ref = get(server, "/tile?slide=case_0.tif&layer=slide&level=10&col=1&row=0")
    assert img.size == Image.open(io.BytesIO(ref)).size


@pytest.mark.parametrize("slide", ["../secret.txt", "%2E%2E/secret.txt", "/etc/passwd", "..%5Csecret.txt",
                                   "case_0.tif/../../secret.txt"])
def test_traversal_and_absolute_slide_paths_are_forbidden(server, slide):
    for route in ("/info", "/viewer", "/tile"):
        status, _, body = get(server, f"{route}?slide={slide}&layer=slide&level=0&col=0&row=0")
        assert status == 403, (route, slide, body)
        assert b"do not serve" not in body


@pytest.mark.parametrize("path", ["/vendor/../../secret.txt", "/vendor/%2E%2E/%2E%2E/secret.txt",
                                  "/assets/../../../tests/test_app_fixtures.py", "/assets//etc/passwd"])
def test_static_routes_do_not_leave_their_folders(server, path):
    status, _, body = get(server, path)
    assert status in (403, 404) and b"do not serve" not in body and b"def " not in body


def test_non_slide_files_are_not_served_as_slides(server):
    status, _, _ = get(server, "/info?slide=case_0.txt")
    assert status == 404


def test_foreign_host_header_is_refused(server):
    status, _, _ = get(server, "/info?slide=case_0.tif", host="evil.example:80")
    assert status == 403


def test_bad_tile_parameters_give_client_errors(server):
    assert get(server, "/tile?slide=case_0.tif&layer=relevance&mode=sideways&level=3&col=0&row=0")[0] == 400
    assert get(server, "/tile?slide=case_0.tif&layer=slide&level=99&col=0&row=0")[0] == 404
    assert get(server, "/tile?slide=new_0.tif&layer=relevance&level=3&col=0&row=0")[0] == 404


def test_viewer_page_embeds_the_slide_name_as_json(server):
    status, ctype, body = get(server, "/viewer?slide=case_0.tif")
    assert status == 200 and ctype.startswith("text/html")
    assert b'window.LRP_SLIDE = "case_0.tif";' in body


def test_corrupt_result_is_reported_in_info_not_raised(tmp_path):
    slides, results = make_fixture_dirs(tmp_path, n_plain=0)
    (results / "case_0" / "tiles.csv").write_text("nonsense\n")
    with TileServer(slides, results) as srv:
        status, _, body = get(srv, "/info?slide=case_0.tif")
    info = json.loads(body)
    assert status == 200 and info["result"] is None and "tiles.csv" in info["result_error"]


# --- damaged, crafted and unusual files ----------------------------------------------------------------
def _damage_one_tile(path, index: int = 5) -> None:
    """Overwrite the JPEG data of level 0's tile ``index`` with garbage of the same length."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[index], tif.pages[0].databytecounts[index]
    with open(path, "r+b") as f:
        f.seek(offset + 2)  # keep the start-of-image marker; the rest is not JPEG
        f.write(b"\x00\xff" * ((count - 4) // 2))


def _broken_tile(srv, slides):
    """``(level, col, row)`` of a Deep Zoom tile at full resolution whose slide region cannot be read."""
    import openslide

    level = srv.service.open_slide("case_0.tif")[2].level_count - 1
    for col in range(12):
        status, _, _ = get(srv, f"/tile?slide=case_0.tif&layer=slide&level={level}&col={col}&row=0")
        if status >= 500:
            return level, col, 0
    with openslide.OpenSlide(str(slides / "case_0.tif")) as s:
        s.read_region((0, 0), 0, (s.dimensions[0], 256))
    raise AssertionError("no damaged tile found")


@pytest.mark.timeout(300)
def test_a_damaged_slide_region_answers_an_error_and_the_rest_of_the_slide_is_still_served(tmp_path):
    slides, results = make_fixture_dirs(tmp_path, n_plain=0)
    _damage_one_tile(slides / "case_0.tif")
    with TileServer(slides, results) as srv:
        level, col, row = _broken_tile(srv, slides)
        status, ctype, body = get(srv, f"/tile?slide=case_0.tif&layer=slide&level={level}&col={col}&row={row}")
        assert status == 500 and b"damaged" in body and str(tmp_path).encode() not in body
        # the next requests are answered: other tiles, the overlay, the slide's description
        assert get(srv, f"/tile?slide=case_0.tif&layer=slide&level={level}&col={col}&row=3")[0] == 200
        assert get(srv, "/tile?slide=case_0.tif&layer=slide&level=8&col=0&row=0")[0] == 200
        assert get(srv, "/tile?slide=case_0.tif&layer=relevance&level=10&col=0&row=0")[0] == 200
        assert get(srv, "/info?slide=case_0.tif")[0] == 200


@pytest.mark.timeout(120)
def test_a_tiny_map_claiming_a_million_pixels_square_is_refused_before_it_is_read(tmp_path):
    """16 KB on disk, 4 TB as claimed, no vmax in the manifest: nothing may try to read it."""
    import shutil

    import zarr

    slides, results = make_fixture_dirs(tmp_path, n_plain=0)
    rdir = results / "case_0"
    shutil.rmtree(rdir / "relevance.zarr")
    root = zarr.open_group(str(rdir / "relevance.zarr"), mode="w")
    root.create_array("relevance", shape=(10**6, 10**6), chunks=(10**5, 10**5), dtype="float32")
    manifest = json.loads((rdir / "manifest.json").read_text())
    del manifest["vmax"]
    (rdir / "manifest.json").write_text(json.dumps(manifest))
    assert sum(f.stat().st_size for f in rdir.rglob("*") if f.is_file()) < 64 * 1024
    with TileServer(slides, results) as srv:
        status, _, body = get(srv, "/info?slide=case_0.tif")
        info = json.loads(body)
        assert status == 200 and info["result"] is None
        assert "relevance.zarr" in info["result_error"] and "1000000" in info["result_error"]
        assert get(srv, "/tile?slide=case_0.tif&layer=relevance&level=10&col=0&row=0")[0] == 400
        assert get(srv, "/tile?slide=case_0.tif&layer=slide&level=10&col=0&row=0")[0] == 200


def test_tissue_outline_tiles_are_served_at_every_zoom_level(server):
    levels = json.loads(get(server, "/info?slide=case_0.tif")[2])["max_level"] + 1
    for level in range(levels):
        status, ctype, body = get(server, f"/tile?slide=case_0.tif&layer=tissue&level={level}&col=0&row=0")
        assert (status, ctype) == (200, "image/png"), (level, body[:200])


def _strict_json(body: bytes):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(body, parse_constant=refuse)


def test_info_of_a_slide_with_an_infinite_mpp_is_valid_json(tmp_path):
    from lrp_captum.demos.sample_slide import write_sample_slide

    slides = tmp_path / "slides"
    write_sample_slide(slides / "inf.svs", 512, kind="svs", mpp=float("inf"))
    with TileServer(slides, tmp_path / "results") as srv:
        status, _, body = get(srv, "/info?slide=inf.svs")
    assert status == 200 and _strict_json(body)["mpp"] is None
