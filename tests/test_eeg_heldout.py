"""The EEG workflow reports held-out accuracy from a recorded split, labels every figure, and
ends with a warning when the model is at chance level.

Each workflow runs the real CLI in-process on simulated data: ``simulate`` -> ``train`` (which
holds out a test split) -> ``explain`` on the very file it trained on, as docs/eeg.md shows.
"""
import contextlib
import io
import json
import math

import mne
import numpy as np
import pytest
import torch
from PIL import Image

from lrp_captum.cli import main
from lrp_captum.eeg.explain import explain_epochs
from lrp_captum.demos.eeg_simulation import save_simulated, simulate_epochs
from lrp_captum.eeg.train import fit_epochs


def _run(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _workflow(root, effect_scale):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread synchronisation costs more than it gains
    try:
        assert _run(["eeg", "simulate", "--task", "erp", "--n-epochs", "100", "--seed", "1",
                     "--effect-scale", str(effect_scale), "--out", str(root)])[0] == 0
        fif = root / "sim_erp-epo.fif"
        train = _run(["eeg", "train", str(fif), "--arch", "shallow", "--max-epochs", "40",
                      "--patience", "10", "--device", "cpu", "--out", str(root / "model")])
        explain = _run(["eeg", "explain", str(fif), "--model", str(root / "model"),
                        "--out", str(root / "out"), "--device", "cpu"])
    finally:
        torch.set_num_threads(threads)
    assert train[0] == 0 and explain[0] == 0, (train, explain)
    return dict(fif=fif, train=train, explain=explain,
                config=json.loads((root / "model" / "config.json").read_text()),
                summary=json.loads((root / "out" / "summary.json").read_text()),
                out=root / "out")


@pytest.fixture(scope="module")
def normal(tmp_path_factory):
    return _workflow(tmp_path_factory.mktemp("eeg_normal"), effect_scale=1.0)


@pytest.fixture(scope="module")
def weak(tmp_path_factory):
    # a P3 of 2 µV under 2 µV sensor noise and 30 background sources: the network cannot learn it
    return _workflow(tmp_path_factory.mktemp("eeg_weak"), effect_scale=0.1)


def test_train_records_which_epochs_were_held_out(normal):
    split = normal["config"]["split"]
    held_out = split["held_out_epochs"]
    assert len(held_out) == 20 and len(set(held_out)) == 20 and max(held_out) < 100
    labels = mne.read_epochs(normal["fif"], verbose=False).metadata["label"].to_numpy()
    assert np.bincount(labels[held_out]).tolist() == [10, 10]  # stratified
    assert normal["config"]["metrics"]["held_out_accuracy"] >= 0.9
    assert "held-out accuracy" in normal["train"][1]


def test_explain_on_the_training_file_explains_and_scores_only_held_out_epochs(normal):
    summary = normal["summary"]
    assert "accuracy" not in summary  # no unlabelled figure
    assert summary["explained"] == "held-out"
    assert summary["held_out_epochs"] == normal["config"]["split"]["held_out_epochs"]
    assert summary["n_held_out"] == 20 and summary["held_out_accuracy"] >= 0.9
    relevance = mne.read_epochs(normal["out"] / "relevance-epo.fif", verbose=False)
    assert len(relevance) == 20 and set(relevance.metadata["split"]) == {"held-out"}


def test_every_printed_accuracy_says_held_out_or_training(normal):
    lines = [line for _, stdout, _ in (normal["train"], normal["explain"])
             for line in stdout.splitlines() if "accuracy" in line]
    assert lines
    for line in lines:
        for part in line.split("accuracy")[:-1]:
            assert part.rstrip().endswith(("held-out", "training", "validation")), line


def test_figure_titles_say_which_epochs_they_average(normal):
    for name in ("class_averages.png", "topomaps_target.png"):
        title = Image.open(normal["out"] / name).text["Title"]
        assert "20 held-out epochs" in title and "chance" not in title


def test_topomap_titles_count_the_epochs_each_class_average_holds(normal):
    evokeds = {e.comment: e for e in mne.read_evokeds(normal["out"] / "relevance-ave.fif", verbose=False)}
    assert sum(e.nave for e in evokeds.values()) == 20
    for name, evoked in evokeds.items():
        title = Image.open(normal["out"] / f"topomaps_{name}.png").text["Title"]
        assert f"average of {evoked.nave} of the 20 held-out epochs" in title, title


def test_normal_signal_gives_no_chance_warning(normal):
    assert normal["summary"]["at_chance"] is False
    assert "chance" not in normal["explain"][2] and "chance" not in normal["train"][2]


def test_weak_signal_ends_with_a_chance_warning_and_a_flag(weak):
    summary = weak["summary"]
    assert summary["at_chance"] is True
    assert any("chance" in w for w in summary["warnings"])
    last = weak["explain"][2].strip().splitlines()[-1]
    assert last.startswith("lrp-captum eeg explain: warning:") and "chance" in last
    assert "held-out" in last
    train_last = weak["train"][2].strip().splitlines()[-1]
    assert train_last.startswith("lrp-captum eeg train: warning:") and "chance" in train_last


def test_weak_signal_figures_say_the_model_is_at_chance(weak):
    title = Image.open(weak["out"] / "class_averages.png").text["Title"]
    assert "chance" in title


def test_explaining_the_training_epochs_labels_everything_training(normal, tmp_path):
    code, stdout, _ = _run(["eeg", "explain", str(normal["fif"]), "--model",
                            str(normal["fif"].parent / "model"), "--explain", "training",
                            "--out", str(tmp_path), "--device", "cpu", "--times"])
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_training"] == 80 and summary["held_out_accuracy"] is None
    assert "training accuracy" in stdout
    assert "80 training epochs" in Image.open(tmp_path / "class_averages.png").text["Title"]


def test_epochs_of_another_recording_are_of_unknown_split(tmp_path):
    # the model cannot tell another recording from its training data changed after training
    train = simulate_epochs("erp", n_epochs=20, seed=3)
    model, _ = fit_epochs(train, "shallow", max_epochs=1, device="cpu")
    other = simulate_epochs("erp", n_epochs=6, seed=4)
    result = explain_epochs(model, other, device="cpu")
    assert list(result.split) == ["unknown"] * 6
    assert result.held_out_accuracy is None


def test_training_epochs_changed_after_training_are_never_held_out():
    # pure noise: whatever the model gets right on its training epochs it memorised. Rescaled by
    # 1 + 1e-6 they are the same epochs to the model but unknown to the fingerprints.
    train = simulate_epochs("erp", n_epochs=40, seed=5, effect_scale=0.0)
    model, config = fit_epochs(train, "shallow", max_epochs=30, patience=30, test_fraction=0.25,
                               device="cpu")
    changed = train.copy().apply_function(lambda x: x * (1 + 1e-6), picks="eeg")
    result = explain_epochs(model, changed, device="cpu", which="all")
    assert set(result.split) == {"unknown"}
    assert result.held_out_accuracy is None and result.accuracy_of("unknown") is not None
    assert result.chance_test()[0] == "unknown"


def test_held_out_means_recorded_as_held_out(tmp_path):
    # the held-out epochs of the training file, and nothing else, count as held-out
    train = simulate_epochs("erp", n_epochs=20, seed=3)
    model, config = fit_epochs(train, "shallow", max_epochs=1, test_fraction=0.25, device="cpu")
    other = simulate_epochs("erp", n_epochs=4, seed=4)
    both = mne.concatenate_epochs([train, other], verbose=False)
    result = explain_epochs(model, both, device="cpu", which="all")
    held_out = set(config.split["held_out_epochs"])
    expected = ["held-out" if i in held_out else "training" for i in range(20)] + ["unknown"] * 4
    assert list(result.split) == expected


def test_training_epochs_are_recognised_after_saving_and_reading_back(tmp_path):
    # the model is fitted on float64 data in memory; the file holds them as float32
    train = simulate_epochs("erp", n_epochs=20, seed=3)
    model, _ = fit_epochs(train, "shallow", max_epochs=1, test_fraction=0.25, device="cpu")
    fif, _ = save_simulated(train, tmp_path / "train-epo.fif")
    result = explain_epochs(model, fif, device="cpu", which="all")
    held_out = model.eeg_config.split["held_out_epochs"]
    expected = ["held-out" if i in held_out else "training" for i in range(20)]
    assert list(result.split) == expected


def test_chance_test_is_a_one_sided_binomial_test_against_the_majority_class():
    from lrp_captum.eeg.heldout import chance_test

    labels = np.array([0] * 10 + [1] * 10)
    predicted = labels.copy()
    predicted[:5] = 1  # 15 of 20 right
    test = chance_test(labels, predicted)
    expected = sum(math.comb(20, k) for k in range(15, 21)) / 2 ** 20  # P(X >= 15), X ~ B(20, 1/2)
    assert test.chance == 0.5 and test.accuracy == 0.75
    assert test.p_value == pytest.approx(expected) and test.above_chance
    predicted[5] = 1  # 14 of 20: P(X >= 14) = 0.058
    assert not chance_test(labels, predicted).above_chance
    imbalanced = np.array([0] * 15 + [1] * 5)  # always answering 0 is right 75 % of the time
    assert chance_test(imbalanced, np.zeros(20, int)).chance == 0.75
    assert not chance_test(imbalanced, np.zeros(20, int)).above_chance
