"""Trained on simulated data, the models classify held-out trials and LRP finds the planted effect.

One model per task is trained once (session-scoped fixture): ShallowConvNet on motor imagery,
EEGNet on the ERP task. Held-out trials come from the same simulated subject with another seed.
"""
import json

import mne
import numpy as np
import pytest
import torch

from lrp_captum.cli import main as cli_main
from lrp_captum.eeg.explain import EEGRelevance, explain_epochs, ground_truth_mask
from lrp_captum.demos.eeg_simulation import read_ground_truth, save_simulated, simulate_epochs
from lrp_captum.eeg.model_folder import load_model, save_model
from lrp_captum.eeg.train import fit_epochs

TASKS = {"motor_imagery": "shallow", "erp": "eegnet"}


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eeg_trained")
    out = {}
    # Tiny models: one thread avoids most of the cost of thread synchronisation on a busy CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train_and_explain(root, out)
    finally:
        torch.set_num_threads(threads)
    return out


def _train_and_explain(root, out):
    for task, architecture in TASKS.items():
        train = simulate_epochs(task, n_epochs=160, seed=0)
        test = simulate_epochs(task, n_epochs=80, seed=100)
        model, config = fit_epochs(train, architecture, max_epochs=80, patience=15, seed=0,
                                   device="cpu")
        folder = save_model(model, config, root / f"model_{task}")
        fif, _ = save_simulated(test, root / f"{task}_test-epo.fif")
        result = explain_epochs(model, test, composite="epsilon", target="true",
                                device="cpu")
        out[task] = dict(model=model, config=config, folder=folder, test=test, fif=fif,
                         result=result, truth=read_ground_truth(test))


@pytest.mark.parametrize("task", list(TASKS))
def test_model_reaches_90_percent_on_held_out_trials(trained, task):
    t = trained[task]
    X = torch.as_tensor(t["test"].get_data() * 1e6, dtype=torch.float32)
    labels = t["test"].metadata["label"].to_numpy()
    with torch.no_grad():
        accuracy = (t["model"](X).argmax(1).numpy() == labels).mean()
    assert accuracy >= 0.90


@pytest.mark.parametrize("task", list(TASKS))
def test_relevance_concentrates_in_the_true_channels_and_window(trained, task):
    t = trained[task]
    relevance = t["result"].epochs.get_data()  # (N, C, T)
    truth = t["truth"]
    rows = [t["test"].ch_names.index(c) for c in truth.channels]
    cols = (t["test"].times >= truth.tmin) & (t["test"].times <= truth.tmax)
    inside = np.abs(relevance)[:, rows][:, :, cols].sum((1, 2))
    mass = inside / np.abs(relevance).sum((1, 2))
    share = len(rows) * cols.sum() / (relevance.shape[1] * relevance.shape[2])
    assert mass.mean() >= 3 * share


def test_ground_truth_mask_covers_channels_times_window(trained):
    t = trained["erp"]
    mask = ground_truth_mask(t["result"].epochs, ["Pz"], 0.2, 0.4)
    assert mask.sum() == 21 and mask[t["test"].ch_names.index("Pz")].sum() == 21


def test_relevance_is_returned_as_mne_objects_aligned_with_the_input(trained):
    t = trained["erp"]
    result = t["result"]
    assert isinstance(result, EEGRelevance)
    assert isinstance(result.epochs, mne.EpochsArray)
    assert result.epochs.ch_names == t["test"].ch_names
    np.testing.assert_array_equal(result.epochs.times, t["test"].times)
    np.testing.assert_array_equal(result.epochs.events, t["test"].events)
    meta = result.epochs.metadata
    assert {"label", "class_name", "target", "predicted", "logit", "relevance_sum"} <= set(meta)
    assert (meta["target"] == meta["label"]).all()  # target="true"


def test_class_averages_are_evokeds_of_each_class_trials(trained):
    result = trained["erp"]["result"]
    assert set(result.evokeds) == {"non_target", "target"}
    labels = result.labels
    for k, name in enumerate(result.class_names):
        evoked = result.evokeds[name]
        assert isinstance(evoked, mne.EvokedArray) and evoked.nave == int((labels == k).sum())
        np.testing.assert_allclose(evoked.data, result.epochs.get_data()[labels == k].mean(0))


def test_saved_model_reloads_with_identical_outputs(trained):
    t = trained["motor_imagery"]
    reloaded = load_model(t["folder"])
    assert reloaded.eeg_config == t["config"]
    X = torch.randn(3, 28, 200)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(X), t["model"](X))
    config = json.loads((t["folder"] / "config.json").read_text())
    assert config["ch_names"][:3] == ["Fp1", "Fp2", "F7"] and config["sfreq"] == 100.0
    assert config["units"] == "uV" and config["n_times"] == 200


def test_explain_accepts_model_folder_and_fif_path(trained):
    t = trained["erp"]
    from_paths = explain_epochs(t["folder"], t["fif"], composite="epsilon", target="true",
                                device="cpu")
    expected = t["result"].epochs.get_data()
    # the fif stores data as float32, so relevance agrees to float32 precision
    np.testing.assert_allclose(from_paths.epochs.get_data(), expected, rtol=0,
                               atol=1e-4 * np.abs(expected).max())


def test_relevance_files_open_in_mne(trained, tmp_path):
    paths = trained["erp"]["result"].save(tmp_path)
    back = mne.read_epochs(paths["epochs"], verbose=False)
    evokeds = mne.read_evokeds(paths["evokeds"], verbose=False)
    assert len(back) == 80 and [e.comment for e in evokeds] == ["non_target", "target"]


def test_cli_explain_writes_relevance_figures_and_summary(trained, tmp_path, capsys):
    t = trained["erp"]
    code = cli_main(["eeg", "explain", str(t["fif"]), "--model", str(t["folder"]),
                     "--out", str(tmp_path), "--target", "true", "--device", "cpu"])
    assert code == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert {"relevance-epo.fif", "relevance-ave.fif", "class_averages.png",
            "topomaps_target.png", "summary.json"} <= names
    summary = json.loads((tmp_path / "summary.json").read_text())
    # trials of another seed: not recorded as held out of training, so of unknown split (never
    # counted as held-out: the model cannot tell them from its training data changed since)
    assert summary["n_unknown_split"] == 80 and summary["unknown_split_accuracy"] >= 0.9
    assert summary["n_held_out"] == 0 and summary["held_out_accuracy"] is None
    assert summary["ground_truth"]["ratio"] >= 3 and summary["at_chance"] is False
    captured = capsys.readouterr()
    assert "explained 80 unknown-split epochs" in captured.out
    assert "LRP: 100%" in captured.err  # the progress bar


def test_cli_simulate_and_train_write_epochs_and_model(tmp_path):
    assert cli_main(["eeg", "simulate", "--task", "erp", "--n-epochs", "40",
                     "--out", str(tmp_path)]) == 0
    fif = tmp_path / "sim_erp-epo.fif"
    assert fif.exists() and (tmp_path / "sim_erp.truth.json").exists()
    assert cli_main(["eeg", "train", str(fif), "--arch", "eegnet", "--max-epochs", "2",
                     "--device", "cpu", "--out", str(tmp_path / "model")]) == 0
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["architecture"] == "eegnet" and config["metrics"]["epochs_trained"] == 2
    assert config["class_names"] == ["non_target", "target"]


def test_cli_explain_reports_mismatched_epochs_without_traceback(trained, tmp_path, capsys):
    t = trained["erp"]
    other = simulate_epochs("erp", n_epochs=4, seed=1).resample(128.0)
    fif, _ = save_simulated(other, tmp_path / "other-epo.fif")
    code = cli_main(["eeg", "explain", str(fif), "--model", str(t["folder"]),
                     "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2
    assert "lrp-captum eeg explain: error: sampling rate is 128 Hz" in err
    assert "Traceback" not in err
