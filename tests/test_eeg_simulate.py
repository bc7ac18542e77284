"""Simulated EEG data: montage, labels, reproducibility, and that the planted effects are there."""
import json

import mne
import numpy as np
import pytest
from scipy import signal

from lrp_captum.demos.eeg_simulation import (DEFAULT_CHANNELS, read_ground_truth, save_simulated,
                                             simulate_epochs)


@pytest.fixture(scope="module")
def mi():
    return simulate_epochs("motor_imagery", n_epochs=60, seed=3)


@pytest.fixture(scope="module")
def erp():
    return simulate_epochs("erp", n_epochs=80, seed=3)


def test_epochs_use_a_real_montage_subset_with_balanced_labels(mi):
    assert mi.ch_names == DEFAULT_CHANNELS and 20 <= len(mi.ch_names) <= 32
    positions = mi.get_montage().get_positions()["ch_pos"]
    assert all(np.linalg.norm(positions[c]) > 0.05 for c in mi.ch_names)  # metres, on the scalp
    assert mi.info["sfreq"] == 100.0 and len(mi.times) == 200
    counts = np.bincount(mi.metadata["label"])
    assert counts.tolist() == [30, 30]
    assert (mi.events[:, 2] == mi.metadata["label"].to_numpy() + 1).all()


def test_data_are_in_volts_at_eeg_amplitudes(mi):
    std = mi.get_data().std()
    assert 1e-6 < std < 1e-4  # 1-100 µV


def test_same_seed_gives_identical_data():
    a = simulate_epochs("erp", n_epochs=10, seed=7).get_data()
    b = simulate_epochs("erp", n_epochs=10, seed=7).get_data()
    c = simulate_epochs("erp", n_epochs=10, seed=8).get_data()
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_motor_imagery_truth_channels_are_c3_and_c4(mi):
    truth = read_ground_truth(mi)
    assert truth.channels == ["C3", "C4"]
    assert (truth.tmin, truth.tmax) == (0.5, 1.5)


def test_motor_imagery_mu_power_drops_contralateral_to_the_imagined_hand(mi):
    # Welch band power 8-12 Hz in the imagery window: left-hand imagery lowers C4 relative to C3.
    window = mi.copy().crop(0.5, 1.5).get_data(picks=["C3", "C4"])
    freqs, psd = signal.welch(window, fs=100.0, nperseg=64, axis=-1)
    mu = psd[..., (freqs >= 8) & (freqs <= 12)].mean(-1)
    lateralisation = np.log(mu[:, 0] / mu[:, 1])  # log(C3 / C4)
    labels = mi.metadata["label"].to_numpy()
    assert lateralisation[labels == 0].mean() > 1.0   # left hand: C4 suppressed
    assert lateralisation[labels == 1].mean() < -1.0  # right hand: C3 suppressed


def test_motor_imagery_has_no_class_difference_before_the_window(mi):
    early = mi.copy().crop(0.0, 0.35).get_data(picks=["C3", "C4"])
    power = (early ** 2).mean(-1)
    lateralisation = np.log(power[:, 0] / power[:, 1])
    labels = mi.metadata["label"].to_numpy()
    assert abs(lateralisation[labels == 0].mean() - lateralisation[labels == 1].mean()) < 0.5


def test_erp_difference_peaks_at_300_ms_over_the_truth_channels(erp):
    truth = read_ground_truth(erp)
    diff = erp["target"].average().data - erp["non_target"].average().data
    ch, t = np.unravel_index(np.argmax(diff), diff.shape)
    assert "Pz" in truth.channels
    assert erp.ch_names[ch] in truth.channels
    assert 0.25 <= erp.times[t] <= 0.35
    assert truth.tmin <= erp.times[t] <= truth.tmax
    assert diff.max() > 5e-6  # a clear component (> 5 µV)


def test_ground_truth_survives_saving_as_fif_and_sidecar(mi, tmp_path):
    fif, sidecar = save_simulated(mi, tmp_path / "sim-epo.fif")
    assert fif.exists() and sidecar.name == "sim.truth.json"
    assert json.loads(sidecar.read_text())["channels"] == ["C3", "C4"]
    assert read_ground_truth(fif) == read_ground_truth(mi)
    sidecar.unlink()  # the fif alone still carries it in info["description"]
    assert read_ground_truth(fif).channels == ["C3", "C4"]
    back = mne.read_epochs(fif, verbose=False)
    assert back.metadata["class_name"].tolist() == mi.metadata["class_name"].tolist()


def test_save_refuses_names_mne_cannot_read_back(mi, tmp_path):
    with pytest.raises(ValueError, match="-epo.fif"):
        save_simulated(mi, tmp_path / "sim.fif")


def test_reading_ground_truth_of_other_epochs_is_a_clear_error():
    info = mne.create_info(["C3", "C4"], 100.0, "eeg")
    plain = mne.EpochsArray(np.zeros((2, 2, 10)), info, verbose=False)
    with pytest.raises(ValueError, match="no lrp_captum ground truth"):
        read_ground_truth(plain)


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="Unknown task 'ssvep'"):
        simulate_epochs("ssvep")
