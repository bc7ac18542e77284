"""explain_epochs checks its input against the model's config and says what differs."""
import warnings

import mne
import numpy as np
import pytest
import torch

from lrp_captum.eeg.explain import EpochsMismatchError, check_epochs, explain_epochs
from lrp_captum.eeg.models import build_model
from lrp_captum.demos.eeg_simulation import simulate_epochs
from lrp_captum.eeg.model_folder import EEGModelConfig


@pytest.fixture(scope="module")
def epochs():
    return simulate_epochs("erp", n_epochs=12, seed=5)


@pytest.fixture(scope="module")
def model(epochs):
    torch.manual_seed(0)
    net = build_model("eegnet", len(epochs.ch_names), len(epochs.times)).eval()
    net.eeg_config = EEGModelConfig(
        architecture="eegnet", ch_names=list(epochs.ch_names), sfreq=epochs.info["sfreq"],
        n_times=len(epochs.times), tmin=float(epochs.tmin),
        class_names=["non_target", "target"])
    return net


def test_matching_epochs_give_microvolt_input_in_model_channel_order(epochs, model):
    X = check_epochs(epochs, model.eeg_config)
    assert X.dtype == np.float32 and X.shape == (12, 28, 100)
    np.testing.assert_allclose(X, epochs.get_data() * 1e6, rtol=1e-6)


def test_renamed_channel_is_named_in_the_error(epochs, model):
    renamed = epochs.copy().rename_channels({"Pz": "POz"})
    with pytest.raises(EpochsMismatchError, match=r"missing \['Pz'\].*not known to the model \['POz'\]"):
        explain_epochs(model, renamed)


def test_missing_channels_report_the_count(epochs, model):
    fewer = epochs.copy().drop_channels(["Fp1", "Fp2"])
    with pytest.raises(EpochsMismatchError, match=r"28 channels \(26 given\).*'Fp1', 'Fp2'"):
        explain_epochs(model, fewer)


def test_different_sampling_rate_is_rejected_with_resample_hint(epochs, model):
    resampled = epochs.copy().resample(128.0)
    with pytest.raises(EpochsMismatchError, match=r"128 Hz.*trained at 100 Hz.*resample\(100\)"):
        explain_epochs(model, resampled)


def test_too_short_epochs_are_rejected(epochs, model):
    short = epochs.copy().crop(-0.2, 0.5)
    with pytest.raises(EpochsMismatchError, match=r"71 samples.*needs 100 samples.*too short"):
        explain_epochs(model, short)


def test_shifted_epoch_start_is_rejected(epochs, model):
    shifted = epochs.copy().shift_time(0.0, relative=False)
    with pytest.raises(EpochsMismatchError, match=r"start at 0 s.*expects -0.2 s"):
        explain_epochs(model, shifted)


def test_nan_values_name_epoch_and_channel(epochs, model):
    data = epochs.get_data()
    data[3, epochs.ch_names.index("Cz"), 10] = np.nan
    broken = mne.EpochsArray(data, epochs.info, events=epochs.events, tmin=epochs.tmin,
                             event_id=epochs.event_id, verbose=False)
    with pytest.raises(EpochsMismatchError, match=r"1 epoch\(s\) contain NaN.*epoch 3 channel 'Cz'"):
        explain_epochs(model, broken)


def test_microvolts_stored_as_volts_are_rejected(epochs, model):
    wrong = mne.EpochsArray(epochs.get_data() * 1e6, epochs.info, events=epochs.events,
                            tmin=epochs.tmin, event_id=epochs.event_id, verbose=False)
    with pytest.raises(EpochsMismatchError, match="microvolts written as volts"):
        explain_epochs(model, wrong)


def test_channels_not_in_volts_are_named(epochs, model):
    other = epochs.copy()
    with other.info._unlock():
        other.info["chs"][0]["unit_mul"] = -6  # declared as µV
    with pytest.raises(EpochsMismatchError, match=r"\['Fp1'\] are not stored in volts"):
        explain_epochs(model, other)


def test_bad_channels_must_be_repaired(epochs, model):
    marked = epochs.copy()
    marked.info["bads"] = ["C3"]
    with pytest.raises(EpochsMismatchError, match=r"\['C3'\] are marked bad.*interpolate_bads"):
        explain_epochs(model, marked)


def test_reordered_channels_give_the_same_relevance(epochs, model):
    order = list(reversed(epochs.ch_names))
    reordered = epochs.copy().reorder_channels(order)
    a = explain_epochs(model, epochs, composite="epsilon", device="cpu")
    b = explain_epochs(model, reordered, composite="epsilon", device="cpu")
    assert b.epochs.ch_names == model.eeg_config.ch_names
    np.testing.assert_allclose(a.epochs.get_data(), b.epochs.get_data(), rtol=1e-5, atol=1e-9)


def test_non_epochs_input_is_a_type_error(model):
    with pytest.raises(TypeError, match="mne.Epochs"):
        explain_epochs(model, np.zeros((2, 28, 100)))


def test_missing_file_is_named(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere-epo.fif"):
        explain_epochs(model, tmp_path / "nothere-epo.fif")


def test_model_without_config_is_rejected(epochs):
    bare = build_model("eegnet", 28, 100).eval()
    with pytest.raises(ValueError, match="no EEGModelConfig"):
        explain_epochs(bare, epochs)


def test_unknown_target_name_is_rejected(epochs, model):
    with pytest.raises(ValueError, match="'oddball' is not"):
        explain_epochs(model, epochs, target="oddball")


def _scaled(epochs, factor):
    return mne.EpochsArray(epochs.get_data() * factor, epochs.info, events=epochs.events,
                           tmin=epochs.tmin, event_id=epochs.event_id, verbose=False)


def test_millivolts_written_as_volts_warn_with_the_physiological_range(epochs, model):
    with pytest.warns(UserWarning, match=r"'\w+'.*µV.*physiological range of EEG "
                                         r"\(0.1 to 500 µV.*1000"):
        check_epochs(_scaled(epochs, 1e3), model.eeg_config)


def test_amplitudes_far_below_the_physiological_range_warn(epochs, model):
    with pytest.warns(UserWarning, match=r"below the physiological range of EEG"):
        check_epochs(_scaled(epochs, 1e-3), model.eeg_config)


def test_physiological_amplitudes_give_no_warning(epochs, model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_epochs(epochs, model.eeg_config)


def test_a_flat_channel_is_named(epochs, model):
    data = epochs.get_data()
    data[:, epochs.ch_names.index("O2")] = 0.0
    with pytest.warns(UserWarning, match=r"'O2'.*below the physiological range"):
        check_epochs(mne.EpochsArray(data, epochs.info, events=epochs.events, tmin=epochs.tmin,
                                     event_id=epochs.event_id, verbose=False), model.eeg_config)


def test_channel_names_differing_only_in_case_get_a_hint(epochs, model):
    upper = epochs.copy().rename_channels({"Fp1": "FP1", "Cz": "CZ"})
    with pytest.raises(EpochsMismatchError,
                       match=r"differ from the model's only in case.*'FP1' -> 'Fp1'.*"
                             r"epochs.rename_channels\(\{'FP1': 'Fp1', 'CZ': 'Cz'\}\)"):
        check_epochs(upper, model.eeg_config)


def test_empty_epochs_are_a_clear_error(epochs, model):
    empty = epochs.copy().drop(list(range(len(epochs))), verbose=False)
    with pytest.raises(EpochsMismatchError, match=r"no epochs.*drop_log"):
        explain_epochs(model, empty)


def test_training_on_empty_epochs_is_a_clear_error(epochs):
    from lrp_captum.eeg.train import fit_epochs

    empty = epochs.copy().drop(list(range(len(epochs))), verbose=False)
    with pytest.raises(ValueError, match=r"no epochs.*drop_log"):
        fit_epochs(empty, "shallow", max_epochs=1, device="cpu")
