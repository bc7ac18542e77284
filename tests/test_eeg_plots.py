"""Relevance figures: PNG files with the expected panels, usable without pyplot."""
import mne
import numpy as np
import pytest
from PIL import Image

from lrp_captum.eeg.plots import (plot_channel_time, plot_class_averages, plot_topomap_row,
                                  plot_topomaps, save_figure)
from lrp_captum.demos.eeg_simulation import make_info


@pytest.fixture(scope="module")
def evoked():
    info = make_info()
    data = np.zeros((len(info["ch_names"]), 100))
    data[info["ch_names"].index("Pz"), 45:55] = 1.0  # relevance at Pz around 0.3 s
    return mne.EvokedArray(data, info, tmin=-0.2, comment="target", nave=7, verbose=False)


def _png_size(path):
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_topomaps_have_one_panel_per_time_and_window_plus_colorbar(evoked, tmp_path):
    fig = plot_topomaps(evoked, times=[0.1, 0.3], windows=[(0.25, 0.35)], highlight=["Pz"])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["0.10 s", "0.30 s", "0.25-0.35 s"] and len(fig.axes) == 4
    width, height = _png_size(save_figure(fig, tmp_path / "sub" / "topo.png"))
    assert width > height > 100


def test_topomap_needs_a_time_or_window(evoked):
    with pytest.raises(ValueError, match="at least one time or window"):
        plot_topomaps(evoked)


def test_window_outside_the_epoch_is_named(evoked):
    with pytest.raises(ValueError, match="window 2-3 s lies outside the epoch"):
        plot_topomaps(evoked, windows=[(2.0, 3.0)])


def test_channel_time_heatmap_shows_the_data_with_symmetric_limits(evoked):
    fig = plot_channel_time(evoked, window=(0.25, 0.35), highlight=["Pz"])
    image = fig.axes[0].images[0]
    np.testing.assert_array_equal(image.get_array(), evoked.data)
    assert image.get_clim() == (-1.0, 1.0)
    bold = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_fontweight() == "bold"]
    assert bold == ["Pz"]


def test_channel_time_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="does not match 2 channels x 3 times"):
        plot_channel_time(np.zeros((3, 3)), ch_names=["C3", "C4"], times=[0, 1, 2])


def test_class_averages_have_a_row_per_class(evoked, tmp_path):
    other = evoked.copy()
    other.data *= -1
    other.comment = "non_target"
    fig = plot_class_averages({"non_target": other, "target": evoked}, window=(0.25, 0.35))
    titles = [ax.get_title() for ax in fig.axes]
    assert "target (n=7)" in titles and "non_target (n=7)" in titles
    assert _png_size(save_figure(fig, tmp_path / "avg.png"))[1] > 200


def test_topomap_row_puts_maps_side_by_side(evoked):
    pz = evoked.data[:, 50]
    fig = plot_topomap_row({"relevance": pz, "CSP pattern 1": -3 * pz}, evoked.info)
    assert [ax.get_title() for ax in fig.axes] == ["relevance", "CSP pattern 1"]
