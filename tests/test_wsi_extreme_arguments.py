"""Out-of-range slide arguments are refused before any work, with one line and exit code 2, and
leave nothing behind: the bounds are declared once (lrp_captum.wsi.slide_options), so every
command that takes an option refuses the same values; a grid whose cell count would explode is
refused before a cell is visited."""
from __future__ import annotations

from pathlib import Path

import pytest

from lrp_captum import cli
from lrp_captum.wsi.slide_options import COHORT, EXPLAIN, EXPLAIN_MIL, SLIDE_OPTIONS, TRAIN_MIL, SlideOptions
from test_wsi_slide_options import _argv, files  # noqa: F401 (files: the slide and model fixture)


def _refused(argv, capsys) -> str:
    """The one line of a command that must stop with exit code 2."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    return err


EXTREME = [("threads", "100000"), ("threads", "0"), ("num_workers", "100000"), ("mpp", "1e-9"), ("mpp", "1e9"),
           ("slide_mpp_override", "1e-300"), ("tile_size", "0"), ("tile_size", "-5"), ("tile_size", "100000000"),
           ("output_downsample", "100000000000")]


@pytest.mark.parametrize("name, text", EXTREME, ids=[f"{n}={t}" for n, t in EXTREME])
def test_every_command_refuses_an_out_of_range_value_in_one_line(files, tmp_path, capsys, name, text):
    from lrp_captum.wsi.mil.explain import MIL_OPTIONS

    slide, model = files
    option = SLIDE_OPTIONS[name]
    commands = [c for c in (EXPLAIN, COHORT, EXPLAIN_MIL, TRAIN_MIL) if c in option.commands]
    assert commands
    for command in commands:
        table = MIL_OPTIONS if command == EXPLAIN_MIL else SLIDE_OPTIONS
        flag = table[name].cli_flag
        err = _refused(_argv(command, slide, model, tmp_path / "o") + [flag, text], capsys)
        assert flag in err and text in err, (command, err)
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("name, text", EXTREME, ids=[f"{n}={t}" for n, t in EXTREME])
def test_the_python_api_refuses_the_same_values(name, text):
    value = SLIDE_OPTIONS[name].kind.type(float(text)) if name != "mpp" else float(text)
    with pytest.raises(ValueError, match=f"option {name}: "):
        SlideOptions(**{name: value})


def test_the_bounds_leave_every_sensible_value_usable():
    SlideOptions(threads=64, num_workers=32, mpp=0.05, tile_size=2048, slide_mpp_override=0.1,
                 output_downsample=4096)


def test_a_grid_with_too_many_cells_is_refused_before_a_cell_is_visited():
    import time

    from lrp_captum.wsi.grid import make_grid

    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"--mpp.*--tile-size.*--overlap"):
        make_grid(200_000, 200_000, 0.25, [1.0], target_mpp=0.02, tile_size=8, overlap=0.5)
    assert time.perf_counter() - t < 1.0
    make_grid(200_000, 100_000, 0.25, [1.0], target_mpp=0.5, tile_size=224, overlap=0.125)  # a large real slide


def test_slide_explain_refuses_a_grid_explosion_in_one_line_and_writes_nothing(files, tmp_path, capsys):
    slide, model = files
    err = _refused(_argv(EXPLAIN, slide, model, tmp_path / "o") + ["--mpp", "0.02", "--tile-size", "8",
                                                                     "--overlap", "0.9"], capsys)
    assert "grid" in err and "cells" in err
    assert not (tmp_path / "o").exists()


# --- item 11 of issue 22: one line instead of a traceback -------------------------------------------
@pytest.mark.parametrize("argv, words", [
    (["slide", "sample", "OUT/x.tif", "--size", "100000000"], "--size"),
    (["slide", "sample", "OUT/x.tif", "--size", "1000", "100000000"], "--size"),
    (["slide", "sample", "OUT/x.tif", "--mpp", "1e-300"], "--mpp"),
    (["slide", "sample", "OUT/x.tif", "--mpp", "1e300"], "--mpp"),
    (["slide", "cohort-sample", "--n", "2", "--out", "OUT/c", "--mpp", "1e-300"], "--mpp"),
    (["slide", "cohort-sample", "--n", "2", "--out", "OUT/c", "--size", "100000000"], "--size"),
    (["app", "--port", "99999", "--results", "OUT"], "--port"),
])
def test_absurd_sample_and_app_arguments_are_refused_in_one_line(tmp_path, capsys, argv, words):
    out = tmp_path / "out"
    out.mkdir()
    err = _refused([a.replace("OUT", str(out)) for a in argv], capsys)
    assert words in err
    assert not any(out.iterdir())  # nothing written


def test_the_app_refuses_results_that_are_a_file(tmp_path, capsys):
    results = tmp_path / "results.txt"
    results.write_text("not a folder")
    err = _refused(["app", "--results", str(results), "--no-token"], capsys)
    assert "--results" in err and "is a file" in err


def _as_another_user() -> list[str]:
    """The command prefix that drops root (for whom no folder is read-only) to user ``nobody``."""
    import os
    import shutil

    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run as another user than root"
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_a_read_only_out_is_found_before_the_model_is_loaded(files):
    import json
    import shutil
    import subprocess
    import sys
    import tempfile

    slide, model = files
    top = Path(tempfile.mkdtemp(prefix="lrp-readonly-"))
    try:
        top.chmod(0o755)
        shutil.copy(slide, top / "s.tif")
        broken = top / "broken.json"  # a model that would fail to load: the --out error must come first
        broken.write_text(json.dumps(dict(json.loads(model.read_text()), classes=["a", "a"])))
        home = top / "home"  # the user's own (matplotlib's cache)
        home.mkdir()
        home.chmod(0o777)
        locked = top / "locked"
        locked.mkdir(mode=0o555)
        locked.chmod(0o555)
        commands = [["slide", "explain", str(top / "s.tif"), "--model", str(broken), "--out", str(locked)],
                    ["slide", "explain", str(top / "s.tif"), "--model", str(broken), "--out", str(locked / "new")],
                    ["slide", "cohort", str(top), "--model", str(broken), "--out", str(locked / "c")],
                    ["slide", "explain-mil", str(top / "s.tif"), "--mil", str(broken), "--out", str(locked / "m")],
                    ["slide", "cohort-sample", "--n", "2", "--out", str(locked / "s")]]
        for argv in commands:
            run = subprocess.run(_as_another_user() + [sys.executable, "-m", "lrp_captum.cli", *argv],
                                 capture_output=True, text=True, timeout=300, cwd=top,
                                 env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HOME": str(home),
                                      "PATH": "/usr/bin:/bin"})
            err = run.stderr.strip()
            assert run.returncode == 2 and len(err.splitlines()) == 1, err
            assert "--out" in err and "not writable" in err and str(locked) in err, err
        assert not any(locked.iterdir())
    finally:
        locked.chmod(0o755)
        shutil.rmtree(top)


def test_a_slide_recording_an_infinite_resolution_is_refused_in_one_line(files, tmp_path, capsys):
    from lrp_captum.demos.sample_slide import write_sample_slide

    _, model = files
    slide = write_sample_slide(tmp_path / "odd.svs", 512, kind="svs", mpp=float("inf"))
    err = _refused(["slide", "explain", str(slide), "--model", str(model), "--out", str(tmp_path / "o")], capsys)
    assert "odd.svs" in err and "--slide-mpp" in err, err
    assert not (tmp_path / "o").exists()
    # with the resolution given, the same slide is explained
    assert cli.main(["slide", "explain", str(slide), "--model", str(model), "--out", str(tmp_path / "o"),
                     "--slide-mpp", "0.5", "--quiet"]) == 0


@pytest.mark.parametrize("recorded", ["inf", "nan", "1e-300", "1e300", "0", "-0.5"])
def test_a_recorded_resolution_outside_the_declared_range_needs_slide_mpp(recorded):
    from types import SimpleNamespace

    from lrp_captum.wsi.reader import MissingMppError, slide_mpp

    properties = {"openslide.mpp-x": recorded, "openslide.mpp-y": recorded}
    with pytest.raises(MissingMppError, match=r"s\.svs.*--slide-mpp"):
        slide_mpp(SimpleNamespace(properties=properties), "s.svs")
    assert slide_mpp(SimpleNamespace(properties=properties), "s.svs", override=0.25) == 0.25


def _write_tiff_claiming(path: Path, side: int, tile: int) -> Path:
    """A classic TIFF whose header claims ``side`` x ``side`` RGB pixels in four uncompressed tiles of
    ``tile`` px (OpenSlide opens it: nothing is read until a region is asked for)."""
    import struct

    payload, tiles = b"\xff" * 64, 4
    bps, offsets = 8 + len(payload), 8 + len(payload) + 6
    counts = offsets + 4 * tiles
    ifd = counts + 4 * tiles
    tags = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 3, bps), (259, 3, 1, 1), (262, 3, 1, 2), (277, 3, 1, 3),
            (284, 3, 1, 1), (322, 4, 1, tile), (323, 4, 1, tile), (324, 4, tiles, offsets), (325, 4, tiles, counts)]
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd)) + payload + struct.pack("<3H", 8, 8, 8)
    out += struct.pack(f"<{tiles}I", *[8] * tiles) + struct.pack(f"<{tiles}I", *[len(payload)] * tiles)
    out += struct.pack("<H", len(tags))
    for tag, kind, count, value in tags:
        out += struct.pack("<HHIHH" if kind == 3 and count == 1 else "<HHII", tag, kind, count, value,
                           *((0,) if kind == 3 and count == 1 else ()))
    path.write_bytes(bytes(out + struct.pack("<I", 0)))
    return path


@pytest.mark.timeout(120)
def test_a_tiff_claiming_absurd_dimensions_is_refused_in_one_line(files, tmp_path, capsys):
    import openslide

    _, model = files
    huge = _write_tiff_claiming(tmp_path / "huge.tif", 2**31 - 1, 2**30)
    with openslide.OpenSlide(str(huge)) as opened:
        assert opened.dimensions == (2**31 - 1, 2**31 - 1)  # 4.6e18 pixels, as the header says
    err = _refused(["slide", "explain", str(huge), "--model", str(model), "--out", str(tmp_path / "o"),
                    "--slide-mpp", "0.5"], capsys)
    assert "huge.tif" in err and "2147483647 x 2147483647" in err and "damaged" in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.timeout(120)
def test_the_tile_server_refuses_a_tiff_claiming_absurd_dimensions(tmp_path):
    import urllib.error
    import urllib.request

    from lrp_captum.viewer.tile_server import TileServer

    slides = tmp_path / "slides"
    slides.mkdir()
    _write_tiff_claiming(slides / "huge.tif", 2**31 - 1, 2**30)
    with TileServer(slides, tmp_path / "results") as server:
        for path in ("/info?slide=huge.tif", "/tile?slide=huge.tif&layer=slide&level=0&col=0&row=0"):
            with pytest.raises(urllib.error.HTTPError) as answer:
                urllib.request.urlopen(server.url + path, timeout=60)
            assert answer.value.code == 400 and b"2147483647 x 2147483647" in answer.value.read()


@pytest.mark.parametrize("flag", ["--cpus-per-slide", "--num-cpus"])
def test_the_cohort_refuses_more_cpus_than_any_machine_has(files, tmp_path, capsys, flag):
    slide, model = files  # --cpus-per-slide is each slide's torch threads too
    err = _refused(_argv(COHORT, slide, model, tmp_path / "o") + [flag, "100000"], capsys)
    assert flag in err and "100000" in err
    assert not (tmp_path / "o").exists()
