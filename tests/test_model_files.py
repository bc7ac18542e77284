"""Users' model files: weights are read only as plain state_dicts (a pickle is refused and not
run), and every loader says which file does not fit which architecture."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lrp_captum.model_files import class_index, import_factory, load_weights, read_state_dict


class _Payload:
    """Unpickling this writes a file: the test checks that it never happens."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def _pickle_file(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pt"
    torch.save({"weight": _Payload(marker)}, path)
    return path, marker


def test_a_pickled_object_is_refused_naming_the_file_and_is_not_run(tmp_path):
    path, marker = _pickle_file(tmp_path)
    with pytest.raises(ValueError, match=r"evil\.pt.*not a plain state_dict"):
        read_state_dict(path)
    assert not marker.exists()


def test_a_slide_model_config_naming_a_pickle_ends_in_a_value_error(tmp_path):
    from lrp_captum.wsi.model import DEMO_MEAN, DEMO_STD, load_model

    path, marker = _pickle_file(tmp_path)
    config = dict(architecture="demo_cnn", kwargs=dict(num_classes=2, width=4), classes=["a", "b"],
                  tile_size=64, mpp=0.5, normalisation=dict(mean=list(DEMO_MEAN), std=list(DEMO_STD)),
                  weights=str(path))
    (tmp_path / "m.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="evil.pt"):
        load_model(tmp_path / "m.json")
    assert not marker.exists()


def test_weights_that_do_not_fit_name_the_file_and_the_architecture(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(nn.Linear(3, 2).state_dict(), path)
    with pytest.raises(ValueError, match=r"w\.pt do not fit 'my net'"):
        load_weights(nn.Linear(4, 2), path, architecture="my net")
    model = nn.Linear(3, 2)
    assert load_weights(model, path) == ([], [])
    torch.save({"state_dict": nn.Linear(3, 2).state_dict()}, path)  # the common checkpoint form
    assert load_weights(model, path) == ([], [])
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match="list, not a state_dict"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        read_state_dict(tmp_path / "missing.pt")


def test_factory_and_class_names():
    assert import_factory("torch.nn:Identity") is nn.Identity
    with pytest.raises(ValueError, match="'nope.module:f'"):
        import_factory("nope.module:f")
    with pytest.raises(ValueError, match="package.module:factory"):
        import_factory("resnet18")
    assert class_index(["neg", "pos"], "pos") == 1 and class_index(["neg", "pos"], "0") == 0
    with pytest.raises(ValueError, match=r"the head's classes are \['neg', 'pos'\]"):
        class_index(["neg", "pos"], "tumour", owner="head")
    with pytest.raises(ValueError, match="out of range"):
        class_index(["neg", "pos"], 2)


def test_a_factory_that_returns_no_module_is_named():
    from lrp_captum.model_files import build_from_factory

    with pytest.raises(ValueError, match=r"'builtins:list' returned a list, not a torch\.nn\.Module"):
        build_from_factory("builtins:list")
    assert isinstance(build_from_factory("torch.nn:Identity"), nn.Identity)


def test_a_factory_that_fails_when_called_is_named_with_its_error():
    from lrp_captum.model_files import build_from_factory

    # nn.Linear needs its sizes: the factory is called without arguments
    with pytest.raises(ValueError, match=r"calling model factory 'torch\.nn:Linear'.*TypeError"):
        build_from_factory("torch.nn:Linear")
