"""``lrp-captum eeg ...`` checks every argument before any work: a bad value ends in one line
naming it, exit code 2, no traceback, and nothing written that blocks a corrected rerun."""
import json

import pytest
import torch

from lrp_captum.cli import main
from lrp_captum.eeg.models import build_model
from lrp_captum.demos.eeg_simulation import save_simulated, simulate_epochs
from lrp_captum.eeg.model_folder import save_model
from lrp_captum.eeg.train import fit_epochs


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("eeg_cli_args")
    epochs = simulate_epochs("erp", n_epochs=8, seed=9)
    fif, _ = save_simulated(epochs, root / "erp-epo.fif")
    model, config = fit_epochs(epochs, "eegnet", max_epochs=1, device="cpu")
    save_model(model, config, root / "model")
    (root / "a_file.txt").write_text("not a folder")
    (root / "empty_folder").mkdir()
    return root


def _run(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors exit here
        code = exc.code
    return code, capsys.readouterr().err


def _assert_one_line_error(code, err, command, *fragments):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"lrp-captum eeg {command}: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], err


SIMULATE = [
    (["--n-epochs", "0"], ["--n-epochs", "0"]),
    (["--n-epochs", "many"], ["--n-epochs", "many"]),
    (["--sfreq", "0"], ["--sfreq"]),
    (["--sfreq", "60"], ["--sfreq", "80"]),  # the 0.5-40 Hz band-pass needs a Nyquist above 40
    (["--seed", "-1"], ["--seed"]),
    (["--effect-scale", "-1"], ["--effect-scale"]),
]


@pytest.mark.parametrize("extra,fragments", SIMULATE, ids=[" ".join(c[0]) for c in SIMULATE])
def test_simulate_rejects_bad_values(extra, fragments, tmp_path, capsys):
    out = tmp_path / "data"
    code, err = _run(["eeg", "simulate", "--out", str(out)] + extra, capsys)
    _assert_one_line_error(code, err, "simulate", *fragments)
    assert not out.exists()


def test_simulate_refuses_an_output_that_is_a_file(files, capsys):
    code, err = _run(["eeg", "simulate", "--out", str(files / "a_file.txt")], capsys)
    _assert_one_line_error(code, err, "simulate", "--out", "a_file.txt", "is an existing file")


TRAIN = [
    (["--max-epochs", "0"], ["--max-epochs"]),
    (["--patience", "-1"], ["--patience"]),
    (["--val-fraction", "0"], ["--val-fraction"]),
    (["--val-fraction", "1.5"], ["--val-fraction"]),
    (["--test-fraction", "1"], ["--test-fraction"]),
    # 4 epochs per class in the file: valid alone, too large for these data
    (["--test-fraction", "0.9"], ["test_fraction=0.9", "4 of the 4 epoch(s) of class 0"]),
    (["--val-fraction", "0.9"], ["val_fraction=0.9", "of class 0"]),
    (["--seed", "-3"], ["--seed"]),
    (["--device", "tpu"], ["--device", "tpu"]),
    (["--device", "cuda:99"], ["--device", "cuda:99"]),
]


@pytest.mark.parametrize("extra,fragments", TRAIN, ids=[" ".join(c[0]) for c in TRAIN])
def test_train_rejects_bad_values(files, extra, fragments, tmp_path, capsys):
    out = tmp_path / "model"
    code, err = _run(["eeg", "train", str(files / "erp-epo.fif"), "--out", str(out)] + extra,
                     capsys)
    _assert_one_line_error(code, err, "train", *fragments)
    assert not out.exists()


def test_train_names_a_missing_epochs_file(files, tmp_path, capsys):
    code, err = _run(["eeg", "train", str(files / "nothere-epo.fif"), "--out",
                      str(tmp_path / "m")], capsys)
    _assert_one_line_error(code, err, "train", "nothere-epo.fif", "does not exist")


def test_train_refuses_an_output_below_a_file(files, capsys):
    code, err = _run(["eeg", "train", str(files / "erp-epo.fif"), "--out",
                      str(files / "a_file.txt" / "model")], capsys)
    _assert_one_line_error(code, err, "train", "--out", "a_file.txt")


EXPLAIN = [
    (["--composite", "bogus"], ["unknown composite 'bogus'; choose from", "epsilon"]),
    (["--composite", "epsilon_gamma_box"], ["--composite", "epsilon_gamma_box", "bounds"]),
    (["--batch-size", "0"], ["--batch-size"]),
    (["--target", "5"], ["--target", "5", "non_target", "target"]),
    (["--target", "-1"], ["--target", "-1"]),
    (["--target", "oddball"], ["--target", "oddball", "non_target"]),
    (["--window", "0.5", "0.2"], ["--window", "0.5", "0.2"]),
    (["--window", "0.2", "3.0"], ["--window", "-0.2", "0.79"]),
    (["--times", "0.1", "9"], ["--times", "9"]),
    (["--device", "cuda:99"], ["--device"]),
    (["--explain", "some"], ["--explain"]),
]


@pytest.mark.parametrize("extra,fragments", EXPLAIN, ids=[" ".join(c[0]) for c in EXPLAIN])
def test_explain_rejects_bad_values(files, extra, fragments, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _run(["eeg", "explain", str(files / "erp-epo.fif"), "--model",
                      str(files / "model"), "--out", str(out), "--device", "cpu"] + extra, capsys)
    _assert_one_line_error(code, err, "explain", *fragments)
    assert not out.exists()


@pytest.mark.parametrize("model,fragment", [("nothere", "no such model folder"),
                                            ("empty_folder", "config.json")])
def test_explain_names_a_missing_or_incomplete_model_folder(files, model, fragment, tmp_path,
                                                           capsys):
    code, err = _run(["eeg", "explain", str(files / "erp-epo.fif"), "--model",
                      str(files / model), "--out", str(tmp_path / "out")], capsys)
    _assert_one_line_error(code, err, "explain", "--model", model, fragment)


def test_explain_refuses_an_output_that_is_a_file(files, capsys):
    code, err = _run(["eeg", "explain", str(files / "erp-epo.fif"), "--model",
                      str(files / "model"), "--out", str(files / "a_file.txt")], capsys)
    _assert_one_line_error(code, err, "explain", "--out", "a_file.txt")


def test_a_misspelt_composite_then_the_corrected_command_succeeds(files, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["eeg", "explain", str(files / "erp-epo.fif"), "--model", str(files / "model"),
            "--out", str(out), "--device", "cpu", "--explain", "all", "--times"]
    code, err = _run(argv + ["--composite", "epsilon_plus_flt"], capsys)
    _assert_one_line_error(code, err, "explain", "unknown composite 'epsilon_plus_flt'")
    code, err = _run(argv + ["--composite", "epsilon_plus_flat"], capsys)
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["composite"] == "epsilon_plus_flat"


def test_explaining_only_training_epochs_by_default_is_refused_with_the_fix(files, tmp_path,
                                                                           capsys):
    # the fixture's model was fitted on every epoch of the file, none held out
    out = tmp_path / "out"
    code, err = _run(["eeg", "explain", str(files / "erp-epo.fif"), "--model",
                      str(files / "model"), "--out", str(out), "--device", "cpu"], capsys)
    _assert_one_line_error(code, err, "explain", "none of the 8 epochs is held-out",
                           "--explain all")
    assert not out.exists()


@pytest.mark.parametrize("command", ["train", "explain"])
def test_a_file_that_is_not_epochs_is_named(files, command, tmp_path, capsys):
    argv = ["eeg", command, str(files / "a_file.txt"), "--out", str(tmp_path / "out")]
    if command == "explain":
        argv += ["--model", str(files / "model")]
    code, err = _run(argv, capsys)
    _assert_one_line_error(code, err, command, "a_file.txt", "not an MNE epochs file")
    assert not (tmp_path / "out").exists()
