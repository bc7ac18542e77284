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
