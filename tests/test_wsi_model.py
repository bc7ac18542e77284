"""Model configs and loaders: demo CNN, torchvision names, package.module:factory, errors."""
import json

import numpy as np
import pytest
import torch

from lrp_captum.wsi.tile_relevance import explain_tile
from lrp_captum.wsi.model import DemoTileCNN, load_model, save_model

CFG = dict(classes=["negative", "positive"], tile_size=64, mpp=0.5,
           normalisation=dict(mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]))


def test_saved_demo_model_reloads_with_identical_outputs(tmp_path):
    torch.manual_seed(0)
    m = DemoTileCNN(num_classes=2, width=4).eval()
    path = save_model(m, tmp_path, dict(CFG, architecture="demo_cnn", kwargs=dict(num_classes=2, width=4)))
    b = load_model(path, device="cpu")
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(b.model(x), m(x))
    assert len(b.weights_sha256) == 64 and b.classes == ["negative", "positive"]


def test_torchvision_name_with_weights_file_loads(tmp_path):
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.get_model("resnet18", weights=None, num_classes=2).eval()
    torch.save(ref.state_dict(), tmp_path / "r18.pt")
    b = load_model(dict(CFG, architecture="resnet18", kwargs=dict(num_classes=2), weights=str(tmp_path / "r18.pt")),
                   device="cpu")
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(b.model(x), ref(x))


def test_package_module_factory_architecture_loads():
    b = load_model(dict(CFG, architecture="lrp_captum.wsi.model:DemoTileCNN", kwargs=dict(width=4)), device="cpu")
    assert isinstance(b.model, DemoTileCNN)


def test_unknown_architecture_names_the_accepted_forms():
    with pytest.raises(ValueError, match="package.module:factory"):
        load_model(dict(CFG, architecture="no_such_net"), device="cpu")


def test_weights_that_do_not_fit_name_the_file(tmp_path):
    torch.save(DemoTileCNN(width=8).state_dict(), tmp_path / "w.pt")
    with pytest.raises(ValueError, match="w.pt"):
        load_model(dict(CFG, architecture="demo_cnn", kwargs=dict(width=4), weights=str(tmp_path / "w.pt")),
                   device="cpu")


def test_config_missing_a_key_says_which(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"architecture": "demo_cnn", "classes": ["a", "b"], "tile_size": 64}))
    with pytest.raises(ValueError, match="'mpp'"):
        load_model(p, device="cpu")


def test_explain_tile_returns_a_map_that_conserves_the_logit():
    torch.manual_seed(0)
    b = load_model(dict(CFG, architecture="demo_cnn", kwargs=dict(width=4)), device="cpu")
    tile = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rel, probs = explain_tile(b, tile, target="positive", composite="epsilon", output_mode="logit")
    assert rel.shape == (64, 64) and rel.dtype == np.float32
    assert probs.shape == (2,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    logit = b.model(b.normalise(torch.from_numpy(tile)[None]))[0, 1].item()
    # epsilon rule with biases: input relevance is the logit up to what the biases absorb
    assert abs(rel.sum() - logit) < 0.5 * abs(logit) + 0.05
