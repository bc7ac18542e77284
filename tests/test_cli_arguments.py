"""Bad arguments to ``slide``, ``explain``, ``composites`` and ``evaluate``: one line on stderr,
exit code 2, no traceback, and nothing written that could block a corrected rerun."""
import collections
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lrp_captum.demos import planted_patterns as G
from lrp_captum.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _refused(argv, capsys) -> str:
    """Run the CLI in this process; assert the refusal contract and return the message."""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse refuses before the command runs
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture
def slide_args(tmp_path):
    """Arguments of ``slide explain`` that are valid on their own (the files exist)."""
    slide = tmp_path / "slide.svs"
    slide.write_bytes(b"never opened: arguments are refused first")
    model = tmp_path / "model.json"
    model.write_text("{}")
    return ["slide", "explain", str(slide), "--model", str(model), "--out", str(tmp_path / "out")]


@pytest.mark.parametrize("extra, message", [
    (["--mpp", "0"], "--mpp: must be a resolution from 0.01 to 1000 µm/px"),
    (["--mpp", "nan"], "--mpp: expected a positive number"),
    (["--composite", "bogus"], "--composite: unknown composite 'bogus'; choose from .*epsilon_plus_flat"),
    (["--batch-size", "0"], "--batch-size: must be a positive integer"),
    (["--output-downsample", "-4"], "--output-downsample: must be an integer from 1 to"),
    (["--overlap", "1"], r"--overlap: must be in \[0, 1\)"),
    (["--min-tissue", "1.5"], r"--min-tissue: must be in \[0, 1\]"),
    (["--tissue-threshold", "-0.1"], r"--tissue-threshold: must be in \[0, 1\]"),
    (["--slide-mpp", "-1"], "--slide-mpp: must be a resolution from 0.01 to 1000 µm/px"),
    (["--tile-size", "0"], "--tile-size: must be an integer from 1 to"),
    (["--workers", "-1"], "--workers: must be an integer from 0 to"),
    (["--threads", "0"], "--threads: must be an integer from 1 to"),
    (["--device", "gpu"], "--device: unknown device 'gpu'"),
    (["--output-mode", "logits"], "--output-mode: invalid choice"),
    (["--weights", "w.pt"], "--weights: file w.pt does not exist"),
])
def test_slide_explain_refuses_a_bad_argument_before_any_work(slide_args, extra, message, capsys, tmp_path):
    err = _refused(slide_args + extra, capsys)
    assert err.startswith("lrp-captum slide explain: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_out_pointing_at_an_existing_file_is_refused(slide_args, capsys, tmp_path):
    (tmp_path / "taken").write_text("a file")
    args = slide_args[:-1] + [str(tmp_path / "taken")]
    assert "taken is an existing file" in _refused(args, capsys)
    assert "is a file" in _refused(slide_args[:-1] + [str(tmp_path / "taken" / "sub")], capsys)


def test_missing_slide_and_model_files_are_named(slide_args, capsys, tmp_path):
    args = list(slide_args)
    args[2] = str(tmp_path / "missing.svs")
    assert "argument slide: file " in (err := _refused(args, capsys)) and "missing.svs does not exist" in err
    args = list(slide_args)
    args[4] = str(tmp_path / "missing.json")
    assert "missing.json does not exist" in _refused(args, capsys)


@pytest.mark.parametrize("extra, message", [
    (["--arch", "resnet18"], "--arch needs --weights FILE and --classes"),
    (["--classes", "a,b"], "--weights and --classes go with --arch"),
])
def test_arguments_that_do_not_fit_together_are_refused(tmp_path, extra, message, capsys):
    slide = tmp_path / "s.svs"
    slide.write_bytes(b"x")
    err = _refused(["slide", "explain", str(slide), "--out", str(tmp_path / "o")] + extra, capsys)
    assert message in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, message", [
    (["slide", "sample", "s.tif", "--size", "100"], "--size: must be an integer from 256 to 100000"),
    (["slide", "sample", "s.tif", "--size", "300", "300", "300"], "--size takes one or two values"),
    (["slide", "sample", "s.tif", "--mpp", "0"], "--mpp: must be a resolution from 0.01 to 1000 µm/px"),
    (["slide", "sample", "s.tif", "--seed", "-1"], "--seed: must be 0 or more"),
])
def test_slide_sample_refuses_bad_arguments(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert message in _refused(argv, capsys)
    assert not (tmp_path / "s.tif").exists()


def test_explain_refuses_bad_arguments(capsys, tmp_path):
    base = ["explain", "--arch", "resnet18", "--out", str(tmp_path / "h.png")]
    assert "unknown composite 'bogus'; choose from" in _refused(base + ["--composite", "bogus"], capsys)
    assert "--size: must be a positive integer" in _refused(base + ["--size", "0"], capsys)
    assert "--num-classes: must be a positive integer" in _refused(base + ["--num-classes", "0"], capsys)
    assert "--target: must be 0 or more" in _refused(base + ["--target", "-1"], capsys)
    assert "image.png does not exist" in _refused(base + ["--image", str(tmp_path / "image.png")], capsys)
    assert "is a folder" in _refused(["explain", "--arch", "resnet18", "--out", str(tmp_path)], capsys)
    assert "unknown torchvision model 'resnet1800'" in _refused(
        ["explain", "--arch", "resnet1800", "--out", str(tmp_path / "h.png")], capsys)
    assert "--target 7 is out of range" in _refused(
        ["explain", "--arch", "lrp_captum.demos.planted_patterns:PlantedPatternCNN", "--size", "32", "--target", "7",
         "--out", str(tmp_path / "h.png")], capsys)
    assert not (tmp_path / "h.png").exists()


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that claims ``width`` x ``height`` grey pixels in a few dozen bytes (a decompression
    bomb as far as the header is concerned)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [100_000, 10_000])  # beyond PIL's hard limit; between its warning and its limit
def test_explain_refuses_an_image_with_too_many_pixels_before_decoding_it(side, capsys, tmp_path):
    image = _png_header_only(tmp_path / "bomb.png", side, side)
    err = _refused(["explain", "--arch", "resnet18", "--image", str(image), "--out", str(tmp_path / "h.png")], capsys)
    assert err.startswith("lrp-captum explain: error: ") and "bomb.png" in err
    assert f"{side} x {side}" in err and "pixels" in err
    assert not (tmp_path / "h.png").exists()


def test_explain_refuses_an_input_side_too_large_to_explain(capsys, tmp_path):
    err = _refused(["explain", "--arch", "resnet18", "--size", "100000", "--out", str(tmp_path / "h.png")], capsys)
    assert "argument --size: must be at most" in err
    assert not (tmp_path / "h.png").exists()


@pytest.mark.parametrize("factory, message", [("builtins:list", "returned a list, not a torch.nn.Module"),
                                              ("torch.nn:Linear", "calling model factory 'torch.nn:Linear'")])
def test_explain_and_evaluate_name_a_factory_that_gives_no_model(factory, message, planted_files, capsys, tmp_path):
    err = _refused(["explain", "--arch", factory, "--out", str(tmp_path / "h.png")], capsys)
    assert message in err
    err = _refused(["evaluate", "rank", "--arch", factory, "--inputs", str(planted_files / "batch.pt"),
                    "--out", str(tmp_path / "r")], capsys)
    assert message in err
    assert not (tmp_path / "h.png").exists() and not (tmp_path / "r").exists()


def test_composites_refuses_unknown_options(capsys):
    assert "unrecognized arguments: --yaml" in _refused(["composites", "--yaml"], capsys)


@pytest.fixture(scope="module")
def planted_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("evaluate_inputs")
    torch.manual_seed(0)
    torch.save(G.PlantedPatternCNN().eval().state_dict(), d / "weights.pt")
    data = G.make_planted_patterns(4, size=32, seed=0)
    torch.save({"images": data.images, "labels": data.labels}, d / "batch.pt")
    return d


def _rank(planted_files, tmp_path, *extra):
    return ["evaluate", "rank", "--arch", "lrp_captum.demos.planted_patterns:PlantedPatternCNN",
            "--inputs", str(planted_files / "batch.pt"), "--out", str(tmp_path / "r"), *extra]


@pytest.mark.parametrize("extra, message", [
    (["--composites", "epsilon_pluss"], "--composites: unknown composite 'epsilon_pluss'; choose from"),
    (["--captum", "saliency,lime"], "--captum: unknown Captum method 'lime'; choose from saliency"),
    (["--max-images", "0"], "--max-images: must be a positive integer"),
    (["--patch-size", "0"], "--patch-size: must be a positive integer"),
    (["--baseline", "median"], "--baseline: expected one of zeros, mean, blur, uniform or a number"),
    (["--gammas", "0.1,-1"], "--gammas: must be 0 or more"),
    (["--epsilons", "0"], "--epsilons: must be a positive number"),
    (["--steps", "0"], "--steps: must be a positive integer"),
    (["--rank-by", "mass_accuracy"], "--rank-by: invalid choice"),
    (["--rank-by", "continuity"], "--rank-by continuity is measured only with --continuity-samples > 0"),
    (["--composites", "", "--captum", ""], "nothing to rank"),
    (["--weights", "missing.pt"], "--weights: file missing.pt does not exist"),
])
def test_evaluate_refuses_bad_arguments_before_any_work(planted_files, tmp_path, extra, message, capsys):
    err = _refused(_rank(planted_files, tmp_path, *extra), capsys)
    assert message in err
    assert not (tmp_path / "r").exists()


def test_evaluate_names_unusable_files(planted_files, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    torch.save({"state_dict": collections.OrderedDict(), "opt": collections.Counter(a=1)}, bad)
    assert "bad.pt" in _refused(_rank(planted_files, tmp_path, "--weights", str(bad)), capsys)
    (tmp_path / "empty").mkdir()
    argv = _rank(planted_files, tmp_path)
    argv[argv.index("--inputs") + 1] = str(tmp_path / "empty")
    assert "no images" in _refused(argv, capsys)
    (tmp_path / "taken").write_text("x")
    argv = _rank(planted_files, tmp_path)
    argv[-1] = str(tmp_path / "taken")
    assert "taken is an existing file" in _refused(argv, capsys)


def test_a_real_process_exits_with_2_and_one_line_without_traceback(tmp_path):
    slide = tmp_path / "s.svs"
    slide.write_bytes(b"x")
    proc = subprocess.run([sys.executable, "-m", "lrp_captum.cli", "slide", "explain", str(slide), "--out",
                           str(tmp_path / "o"), "--composite", "bogus"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "unknown composite 'bogus'; choose from" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("factory, message", [("builtins:list", "returned a list, not a torch.nn.Module"),
                                              ("torch.nn:Linear", "calling model factory 'torch.nn:Linear'")])
def test_a_slide_model_factory_that_gives_no_model_is_named(factory, message):
    from lrp_captum.wsi.model import load_model

    config = {"architecture": factory, "classes": ["a", "b"], "tile_size": 32, "mpp": 1.0}
    with pytest.raises(ValueError, match=message):
        load_model(config, device="cpu")


def test_a_mil_encoder_factory_that_gives_no_model_is_named():
    from lrp_captum.wsi.mil.encoders import build_encoder

    with pytest.raises(ValueError, match="encoder factory 'builtins:list' returned a list, not a torch.nn.Module"):
        build_encoder({"arch": "builtins:list", "tile_size": 32, "mpp": 1.0})
