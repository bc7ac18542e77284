"""``lrp-captum explain --image``: the figure shows the image, the relevance with its colour bar
and the overlay (as Captum's ``visualize_image_attr_multiple`` does), and nothing warns."""
import json
import warnings

import numpy as np
from PIL import Image

from lrp_captum.cli import main

FACTORY = "lrp_captum.demos.planted_patterns:PlantedPatternCNN"


def _quadrants(path, side=32):
    """Red, green, blue and yellow quadrants: colours a heatmap never draws."""
    rgb = np.zeros((side, side, 3), np.uint8)
    h = side // 2
    rgb[:h, :h] = (255, 0, 0)
    rgb[:h, h:] = (0, 255, 0)
    rgb[h:, :h] = (0, 0, 255)
    rgb[h:, h:] = (255, 255, 0)
    Image.fromarray(rgb).save(path)
    return path


def _explain(tmp_path, capsys):
    image = _quadrants(tmp_path / "x.png")
    out = tmp_path / "explained.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. PyTorch's "NumPy array is not writable"
        code = main(["explain", "--arch", FACTORY, "--image", str(image), "--size", "32", "--out", str(out)])
    assert code == 0
    return out, json.loads(capsys.readouterr().out)


def test_the_figure_shows_the_image_beside_its_relevance_and_overlay(tmp_path, capsys):
    out, printed = _explain(tmp_path, capsys)
    figure = Image.open(out)
    width, height = figure.size
    assert width >= 2.5 * height  # three panels side by side
    pixels = np.asarray(figure.convert("RGB")).reshape(-1, 3)
    for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]:  # the image itself, unblended
        assert (pixels == colour).all(1).sum() >= 20, colour
    title = figure.text["Title"]
    assert f"class {printed['target']}" in title and "epsilon_gamma_box" in title
    assert "relevance" in figure.text["Panels"] and "overlay" in figure.text["Panels"]


def test_the_colour_bar_names_the_unit_and_the_relevance_is_saved_beside(tmp_path, capsys):
    out, printed = _explain(tmp_path, capsys)
    figure = Image.open(out)
    assert "relevance per pixel" in figure.text["Colour bar"]
    relevance = np.load(printed["relevance"])
    assert relevance.shape == (32, 32)
    assert np.isclose(relevance.sum(), printed["relevance_sum"], rtol=1e-4)
