"""Training: reproducible, early stopping on a validation split, safe saving."""
import json

import numpy as np
import pytest
import torch

from lrp_captum.demos.eeg_simulation import simulate_epochs
from lrp_captum.eeg.model_folder import load_config, load_model, save_model
from lrp_captum.eeg.train import epochs_to_arrays, fit_epochs, train_model
from lrp_captum.eeg.models import build_model


@pytest.fixture(scope="module")
def epochs():
    return simulate_epochs("erp", n_epochs=40, seed=11)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_arrays_are_microvolts_and_labels_follow_event_names(epochs):
    X, y, names = epochs_to_arrays(epochs)
    assert names == ["non_target", "target"] and X.dtype == np.float32
    np.testing.assert_allclose(X, epochs.get_data() * 1e6, rtol=1e-6)
    assert (y == epochs.metadata["label"].to_numpy()).all()


def test_same_seed_gives_identical_weights(epochs):
    a, _ = fit_epochs(epochs, "eegnet", max_epochs=3, seed=4, device="cpu")
    b, _ = fit_epochs(epochs, "eegnet", max_epochs=3, seed=4, device="cpu")
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


def test_early_stopping_keeps_the_best_validation_epoch():
    # Labels are noise: validation loss cannot keep improving, so training stops early and
    # returns the weights of the epoch with the lowest validation loss.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4, 40)).astype(np.float32)
    y = rng.integers(0, 2, 60)
    torch.manual_seed(0)
    model = build_model("shallow", 4, 40, temporal_kernel=5, pool_size=10, pool_stride=5)
    history = train_model(model, X, y, max_epochs=200, patience=5, device="cpu")
    assert history["epochs_trained"] == history["best_epoch"] + 6 < 200
    best = min(history["val_loss"])
    assert history["val_loss"][history["best_epoch"]] == best


def test_validation_split_is_stratified():
    X = np.zeros((50, 2, 30), np.float32)
    y = np.array([0] * 40 + [1] * 10)
    calls = []
    model = build_model("shallow", 2, 30, temporal_kernel=5, pool_size=10, pool_stride=5)
    history = train_model(model, X, y, val_fraction=0.2, max_epochs=1, device="cpu",
                          progress=lambda *a: calls.append(a))
    assert len(calls) == 1 and history["epochs_trained"] == 1
    # 20 % of each class: 8 + 2 validation trials; a constant model is right on 8 of 10 or 2 of 10
    assert history["val_accuracy"] in (0.8, 0.2)


def test_saved_model_is_a_plain_state_dict_with_a_json_config(epochs, tmp_path):
    model, config = fit_epochs(epochs, "shallow", max_epochs=1, device="cpu")
    folder = save_model(model, config, tmp_path / "m")
    state = torch.load(folder / "model.pt", weights_only=True)
    assert set(state) == set(model.state_dict())
    raw = json.loads((folder / "config.json").read_text())
    assert raw["ch_names"] == epochs.ch_names and raw["tmin"] == pytest.approx(-0.2)
    assert load_config(folder) == config
    assert load_model(folder).eeg_config == config


def test_loading_from_a_folder_without_config_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        load_model(tmp_path)
