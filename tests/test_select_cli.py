"""``lrp-captum evaluate rank``: model/input loading, report folder, clear errors."""
import collections

import numpy as np
import pytest
import torch
from PIL import Image

from lrp_captum.demos import planted_patterns as G
from lrp_captum.cli import main


@pytest.fixture(scope="module")
def planted_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("evaluate_inputs")
    torch.manual_seed(0)
    model = G.PlantedPatternCNN().eval()  # the factory is called without arguments
    torch.save(model.state_dict(), d / "weights.pt")
    data = G.make_planted_patterns(4, size=32, seed=0)
    torch.save({"images": data.images, "labels": data.labels}, d / "batch.pt")
    return d


def test_rank_with_factory_weights_and_pt_batch_writes_the_report(planted_files, tmp_path, capsys):
    out = tmp_path / "report"
    rc = main(["evaluate", "rank", "--arch", "lrp_captum.demos.planted_patterns:PlantedPatternCNN",
               "--weights", str(planted_files / "weights.pt"), "--inputs", str(planted_files / "batch.pt"),
               "--normalize", "none", "--composites", "epsilon_gamma_box,epsilon_plus_flat",
               "--captum", "saliency", "--patch-size", "8", "--steps", "4", "--max-images", "2",
               "--randomisation-layers", "0", "--out", str(out)])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"report.md", "curves.png", "results.csv", "curves.csv"}
    printed = capsys.readouterr().out
    for name in ("epsilon_gamma_box", "epsilon_plus_flat", "saliency", "random"):
        assert f"| {name} |" in printed


def test_rank_with_torchvision_name_and_image_folder(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    rc = main(["evaluate", "rank", "--arch", "resnet18", "--num-classes", "3", "--inputs", str(folder),
               "--image-size", "32", "--composites", "epsilon_plus", "--captum", "", "--patch-size", "8",
               "--steps", "4",
               "--randomisation-layers", "0", "--out", str(tmp_path / "r")])
    assert rc == 0
    rows = collections.Counter(line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines()
                               if line.startswith("| ") and "rank" not in line)
    assert rows == {"epsilon_plus": 1, "random": 1}


def test_evaluate_without_command_prints_help_and_returns_two(capsys):
    assert main(["evaluate"]) == 2
    assert "rank" in capsys.readouterr().out
