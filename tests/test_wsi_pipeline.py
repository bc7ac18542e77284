"""explain_slide end to end on generated slides: outputs, ground truth, resume, errors, CLI."""
import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import openslide
import pandas as pd
import pytest
import tifffile
import zarr

from lrp_captum import cli
from lrp_captum.wsi.pipeline import explain_slide
from lrp_captum.wsi.reader import EmptyTissueError, MissingMppError, SlideError, SlideReadError
from lrp_captum.demos.sample_slide import SlideLayout, SlideRenderer, dab_mask, write_sample_slide
from lrp_captum.demos.slide_model import DAB_THRESHOLD, demo_model_config

ROOT = Path(__file__).resolve().parents[1]
SIZE = 1536
BATCH = 8


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory):
    return demo_model_config(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def slides(tmp_path_factory):
    d = tmp_path_factory.mktemp("slides")
    return {"tiff": write_sample_slide(d / "sample.tif", SIZE, kind="tiff", seed=1),
            "svs": write_sample_slide(d / "sample.svs", SIZE, kind="svs", seed=1)}


@pytest.fixture(scope="session")
def tiff_run(demo_model, slides, tmp_path_factory):
    """The generic TIFF explained through the CLI with --quiet."""
    out = tmp_path_factory.mktemp("run") / "tiff"
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        rc = cli.main(["slide", "explain", str(slides["tiff"]), "--model", str(demo_model), "--out", str(out),
                       "--batch-size", str(BATCH), "--threads", "1", "--quiet"])
    return out, rc, err.getvalue()


@pytest.fixture(scope="session")
def svs_run(demo_model, slides, tmp_path_factory):
    """The SVS explained for the "positive" class at output downsample 2, with a progress bar."""
    out = tmp_path_factory.mktemp("run") / "svs"
    err = io.StringIO()
    calls = []
    with contextlib.redirect_stderr(err):
        manifest = explain_slide(slides["svs"], demo_model, out, target="positive", output_downsample=2,
                                 batch_size=16, threads=1, quiet=False,
                                 progress_callback=lambda done, total: calls.append((done, total)))
    return out, manifest, err.getvalue(), calls


def test_demo_model_separates_dab_positive_tiles(demo_model):
    metrics = json.loads((demo_model.parent / "metrics.json").read_text())
    assert metrics["val_accuracy"] > 0.85


@pytest.mark.parametrize("kind", ["tiff", "svs"])
def test_end_to_end_outputs_reopen_and_align_with_the_slide(kind, tiff_run, svs_run, slides):
    out = tiff_run[0] if kind == "tiff" else svs_run[0]
    if kind == "tiff":
        assert tiff_run[1] == 0
    m = json.loads((out / "manifest.json").read_text())
    d = m["output_downsample"]
    expected = (math.ceil(SIZE / d), math.ceil(SIZE / d))
    ov = openslide.OpenSlide(str(out / "overlay.tif"))
    assert ov.dimensions == expected
    assert float(ov.properties["openslide.mpp-x"]) == pytest.approx(0.5 * d)
    rel = zarr.open_group(str(out / "relevance.zarr"), mode="r")
    assert rel["relevance"].shape == expected[::-1] and rel["relevance"].dtype == np.float32
    assert rel["probability"].shape == (2,) + expected[::-1]
    assert rel.attrs["output_downsample"] == d
    table = pd.read_csv(out / "tiles.csv")
    for col in ("x0", "y0", "w0", "h0", "prediction", "probability", "relevance_sum", "relevance_pos"):
        assert col in table.columns
    assert len(table) == m["n_tiles"] > 10
    gj = json.loads((out / "tiles.geojson").read_text())
    assert len(gj["features"]) == len(table)
    f0, r0 = gj["features"][0], table.iloc[0]
    assert f0["geometry"]["coordinates"][0][0] == [r0.x0, r0.y0]
    assert f0["properties"]["measurements"]["relevance_pos"] == pytest.approx(r0.relevance_pos, rel=1e-5)
    assert (out / "overview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / ".lrp_work").exists()


def _layout_fraction(lay, x0, y0, side, n=8):
    u = (np.arange(n) + 0.5) / n * side
    return lay.tissue(x0 + u[None, :], y0 + u[:, None]).mean()


def test_tiles_cover_tissue_and_skip_glass(svs_run):
    out, m = svs_run[:2]
    table = pd.read_csv(out / "tiles.csv")
    lay = SlideLayout.random(SIZE, SIZE, seed=1)
    scale = m["grid"]["scale_level0_px_per_target_px"]
    side, step = m["grid"]["tile_size"] * scale, m["grid"]["stride"] * scale
    explained = set(zip(table.row, table.col))
    for r in range(math.ceil(SIZE / step)):
        for c in range(math.ceil(SIZE / step)):
            f = _layout_fraction(lay, c * step, r * step, side)
            if f >= 0.75:  # the layout counts white gland lumens as tissue; the mask does not
                assert (r, c) in explained  # tissue tiles are explained
            if f == 0:
                assert (r, c) not in explained  # glass tiles are skipped


def test_positive_relevance_concentrates_on_the_dab_mask(svs_run, slides):
    out, m = svs_run[:2]
    d = m["output_downsample"]
    rel = zarr.open_group(str(out / "relevance.zarr"), mode="r")["relevance"][:]
    rgb = np.asarray(openslide.OpenSlide(str(slides["svs"])).read_region((0, 0), 0, (SIZE, SIZE)).convert("RGB"))
    mask = dab_mask(rgb, DAB_THRESHOLD).reshape(SIZE // d, d, SIZE // d, d).mean((1, 3))
    covered = np.zeros(rel.shape, bool)
    for t in pd.read_csv(out / "tiles.csv").itertuples():
        covered[round(t.y0 / d):round((t.y0 + t.h0) / d), round(t.x0 / d):round((t.x0 + t.w0) / d)] = True
    pos = np.clip(rel, 0, None)[covered]
    inside = (pos * mask[covered]).sum() / pos.sum()
    area = mask[covered].mean()
    assert 0.02 < area < 0.5
    assert inside >= 2 * area


def test_glass_inside_explained_tiles_gets_no_colour(svs_run):
    out, m = svs_run[:2]
    d = m["output_downsample"]
    group = zarr.open_group(str(out / "relevance.zarr"), mode="r")
    rel = group["relevance"][:]
    covered = np.zeros(rel.shape, bool)
    for t in pd.read_csv(out / "tiles.csv").itertuples():
        covered[round(t.y0 / d):round((t.y0 + t.h0) / d), round(t.x0 / d):round((t.x0 + t.w0) / d)] = True
    lay = SlideLayout.random(SIZE, SIZE, seed=1)
    ys, xs = np.mgrid[0:rel.shape[0], 0:rel.shape[1]]
    # glass at least 24 level-0 px (1.5 tissue-mask px) from any tissue, by the layout's truth
    near = np.zeros(rel.shape, bool)
    for dy in (-24, 0, 24):
        for dx in (-24, 0, 24):
            near |= lay.tissue((xs + 0.5) * d + dx, (ys + 0.5) * d + dy)
    glass = covered & ~near
    assert glass.sum() > 1000  # edge tiles hold plenty of glass
    mask_glass = covered & (group["tissue"][:] == 0)
    assert (rel[mask_glass] == 0).all() and np.isnan(group["probability"][0][mask_glass]).all()
    assert (rel[glass] == 0).mean() > 0.99  # the mask finds the glass
    tissue = covered & lay.tissue((xs + 0.5) * d, (ys + 0.5) * d)
    assert (rel[tissue] != 0).mean() > 0.9  # white gland lumens inside the tissue read as glass
    centre = openslide.OpenSlide(str(out / "overlay.tif")).read_region((0, 0), 0, rel.shape[::-1])
    rgb = np.asarray(centre.convert("RGB"))[mask_glass]
    assert (rgb == rgb[0]).all() and rgb[0].min() > 240  # the map's white centre
    assert 0 < m["relevance_on_glass"] < 1


def test_default_heatmap_shows_no_tile_grid(tiff_run):
    """A zero-padded CNN gives a tile's outer pixels about a third of the interior's relevance;
    at the default overlap and stitching window the grid must not show in the map."""
    from scipy import ndimage

    from lrp_captum.wsi.stitch import footprints, seam_ratio

    out = tiff_run[0]
    m = json.loads((out / "manifest.json").read_text())
    group = zarr.open_group(str(out / "relevance.zarr"), mode="r")
    table = pd.read_csv(out / "tiles.csv")
    boxes = footprints(table.to_records(), m["output_downsample"])
    inside = ndimage.binary_erosion(group["tissue"][:].astype(bool), np.ones((5, 5), bool))
    assert m["parameters"]["overlap"] > 0
    assert seam_ratio(group["relevance"][:], boxes, inside) > 0.9


def test_progress_bar_reports_tiles_per_second_and_quiet_silences_it(svs_run, tiff_run):
    assert "tile/s" in svs_run[2] and "100%" in svs_run[2]
    assert tiff_run[2] == ""


def test_progress_callback_counts_up_to_all_tiles(svs_run):
    calls, n = svs_run[3], svs_run[1]["n_tiles"]
    assert calls[-1] == (n, n) and len(calls) == math.ceil(n / 16)
    assert all(a[0] < b[0] for a, b in zip(calls, calls[1:]))


def test_rerun_of_a_finished_run_returns_its_manifest_without_work(tiff_run, demo_model, slides):
    out = tiff_run[0]
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    m = explain_slide(slides["tiff"], demo_model, out, batch_size=BATCH, threads=1, quiet=True)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing rewritten
    assert m == json.loads((out / "manifest.json").read_text()) and m["n_tiles"] > 0


def test_different_arguments_on_a_finished_folder_need_overwrite(tiff_run, demo_model, slides):
    with pytest.raises(FileExistsError, match="overwrite"):
        explain_slide(slides["tiff"], demo_model, tiff_run[0], batch_size=BATCH, overlap=0.25, threads=1,
                      quiet=True)


def _outputs_equal(a: Path, b: Path):
    ra = zarr.open_group(str(a / "relevance.zarr"), mode="r")
    rb = zarr.open_group(str(b / "relevance.zarr"), mode="r")
    np.testing.assert_array_equal(ra["relevance"][:], rb["relevance"][:])
    np.testing.assert_array_equal(ra["probability"][:], rb["probability"][:])
    for name in ("tiles.csv", "tiles.geojson", "overview.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    with tifffile.TiffFile(a / "overlay.tif") as ta, tifffile.TiffFile(b / "overlay.tif") as tb:
        assert len(ta.pages) == len(tb.pages)
        for pa, pb in zip(ta.pages, tb.pages):
            np.testing.assert_array_equal(pa.asarray(), pb.asarray())


def test_named_steps_reproduce_explain_slide_byte_for_byte(tiff_run, demo_model, slides, tmp_path):
    """The steps a cohort runner may call one by one write the same bytes as explain_slide."""
    from lrp_captum.wsi import pipeline as P

    with _torch_threads(1):
        run = P.plan_slide_run(slides["tiff"], demo_model, tmp_path / "steps", P.SlideOptions(batch_size=BATCH,
                                                                                              quiet=True))
        run.work.mkdir(parents=True)
        tiles = P.explain_tiles(run)  # each step takes what it needs and returns what it made
        relevance = P.stitch_relevance(run, tiles, run.stage)
        tables = P.write_tile_tables(run, tiles, run.stage)
        images_s = P.write_images(run, relevance, run.stage)
        P.publish_outputs(run.stage, run.out, P.OUTPUT_FILES)
    manifest = P.write_manifest(run.out, P.slide_manifest(run, tiles, relevance, tables, images_s))
    ref = json.loads((tiff_run[0] / "manifest.json").read_text())
    for name in ("tiles.csv", "tiles.parquet", "tiles.geojson", "overview.png", "overlay.tif"):
        assert (run.out / name).read_bytes() == (tiff_run[0] / name).read_bytes(), name
    for key in ("relevance", "probability"):
        a = zarr.open_group(str(run.out / "relevance.zarr"), mode="r")[key][:]
        b = zarr.open_group(str(tiff_run[0] / "relevance.zarr"), mode="r")[key][:]
        assert a.tobytes() == b.tobytes(), key
    for key in ("params_hash", "outputs", "n_tiles", "vmax", "relevance_shape", "grid", "positive_tiles", "tissue"):
        assert manifest[key] == ref[key], key


@contextlib.contextmanager
def _torch_threads(n):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_resume_after_sigkill_gives_identical_outputs(tiff_run, demo_model, slides, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "lrp_captum.cli", "slide", "explain", str(slides["tiff"]), "--model",
           str(demo_model), "--out", str(out), "--batch-size", str(BATCH), "--threads", "1", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / ".lrp_work").glob("batch_*.npz"))) < 2:
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    committed = len(list((out / ".lrp_work").glob("batch_*.npz")))
    n_batches = math.ceil(json.loads((tiff_run[0] / "manifest.json").read_text())["n_tiles"] / BATCH)
    assert 2 <= committed < n_batches
    assert not (out / "manifest.json").exists()
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["timings"]["tiles_explained_this_run"] < m["n_tiles"]  # it resumed
    _outputs_equal(out, tiff_run[0])


def test_wide_short_slide_completes_with_a_full_overlay_pyramid(demo_model, tmp_path, capsys):
    """A long thin biopsy: 17,000 x 4,000 px at the default output downsample 8 is a 2,125 x 500
    map, wider than 1,024 px (so the overlay has a reduced level) but a single band of rows.
    2,304 x 768 px at output downsample 2 (a 1,152 x 384 map) has the same structure."""
    slide = write_sample_slide(tmp_path / "thin.tif", (2304, 768), seed=4)
    out = tmp_path / "out"
    rc = cli.main(["slide", "explain", str(slide), "--model", str(demo_model), "--out", str(out),
                   "--output-downsample", "2", "--batch-size", "32", "--threads", "1", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "manifest.json").read_text())
    assert m["relevance_shape"] == [384, 1152]
    ov = openslide.OpenSlide(str(out / "overlay.tif"))
    assert ov.level_dimensions == ((1152, 384), (288, 96))


def test_failure_while_writing_outputs_leaves_none_and_the_rerun_resumes(demo_model, slides, tmp_path,
                                                                         monkeypatch):
    from lrp_captum.wsi import result_folder

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(result_folder, "write_overview_png", disk_full)
        with pytest.raises(OSError, match="No space"):
            explain_slide(slides["tiff"], demo_model, out, batch_size=BATCH, threads=1, quiet=True)
    assert [p.name for p in out.iterdir()] == [".lrp_work"]  # no partial outputs
    m = explain_slide(slides["tiff"], demo_model, out, batch_size=BATCH, threads=1, quiet=True)
    assert m["timings"]["tiles_explained_this_run"] == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(["manifest.json", *m["outputs"].values()])


def test_failure_before_any_batch_leaves_nothing_that_blocks_a_corrected_rerun(demo_model, slides, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="bogus"):
        explain_slide(slides["tiff"], demo_model, out, composite="bogus", quiet=True)
    _assert_no_outputs(out)
    m = explain_slide(slides["tiff"], demo_model, out, batch_size=BATCH, threads=1, quiet=True)
    assert m["n_tiles"] > 0


def _assert_no_outputs(out: Path):
    assert not out.exists() or not any(out.iterdir())


def test_truncated_slide_is_named_as_truncated_and_leaves_no_outputs(slides, demo_model, tmp_path):
    bad = tmp_path / "cut.svs"
    bad.write_bytes(slides["svs"].read_bytes()[: slides["svs"].stat().st_size * 2 // 3])
    with pytest.raises(SlideReadError, match=r"cut\.svs.*truncated"):
        explain_slide(bad, demo_model, tmp_path / "out", quiet=True)
    _assert_no_outputs(tmp_path / "out")


def test_file_that_is_not_a_slide_is_refused_clearly(demo_model, tmp_path):
    bad = tmp_path / "notes.svs"
    bad.write_text("not a slide\n" * 100)
    with pytest.raises(SlideReadError, match=r"notes\.svs.*does not recognise"):
        explain_slide(bad, demo_model, tmp_path / "out", quiet=True)
    _assert_no_outputs(tmp_path / "out")


def test_corrupt_tile_data_fails_mid_run_and_leaves_no_outputs(slides, demo_model, tmp_path):
    bad = tmp_path / "corrupt.tif"
    data = bytearray(slides["tiff"].read_bytes())
    with tifffile.TiffFile(slides["tiff"]) as tif:
        offs, counts = tif.pages[0].dataoffsets, tif.pages[0].databytecounts
    i = int(np.argmax(counts))  # the most detailed tile is tissue
    data[offs[i] + 200: offs[i] + counts[i]] = np.random.default_rng(0).integers(
        0, 256, counts[i] - 200, dtype=np.uint8).tobytes()
    bad.write_bytes(bytes(data))
    with pytest.raises(SlideError, match=r"corrupt\.tif.*corrupt"):
        explain_slide(bad, demo_model, tmp_path / "out", batch_size=BATCH, quiet=True)
    _assert_no_outputs(tmp_path / "out")


def _plain_tiff(path, rgb, resolution=None):
    kw = dict(resolution=resolution, resolutionunit="CENTIMETER") if resolution else {}
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", compression="jpeg", metadata=None, **kw)
    return path


def test_slide_without_mpp_asks_for_slide_mpp(demo_model, tmp_path):
    rgb = SlideRenderer(SlideLayout.random(1024, 1024, seed=2)).region(1, 0, 0, 1024, 1024)
    path = _plain_tiff(tmp_path / "nompp.tif", rgb)
    assert "openslide.mpp-x" not in openslide.OpenSlide(str(path)).properties
    with pytest.raises(MissingMppError, match=r"nompp\.tif.*--slide-mpp"):
        explain_slide(path, demo_model, tmp_path / "out", quiet=True)
    _assert_no_outputs(tmp_path / "out")


def test_blank_slide_reports_an_empty_tissue_mask(demo_model, tmp_path):
    rgb = np.full((1024, 1024, 3), 243, np.uint8)
    path = _plain_tiff(tmp_path / "blank.tif", rgb, resolution=(2e4, 2e4))
    with pytest.raises(EmptyTissueError, match=r"blank\.tif.*no tissue"):
        explain_slide(path, demo_model, tmp_path / "out", quiet=True)
    _assert_no_outputs(tmp_path / "out")


def test_cli_prints_a_clear_error_and_exit_code_for_bad_slides(demo_model, tmp_path, capsys):
    bad = tmp_path / "notes.svs"
    bad.write_text("not a slide\n" * 100)
    rc = cli.main(["slide", "explain", str(bad), "--model", str(demo_model), "--out", str(tmp_path / "o"),
                   "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("lrp-captum slide explain: error: slide ") and "notes.svs" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    _assert_no_outputs(tmp_path / "o")
