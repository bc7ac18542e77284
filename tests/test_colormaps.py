"""Colour maps: one source for every caller, and a slide map whose negative colour is not a stain."""
import colorsys

import numpy as np
import pytest
from skimage.color import deltaE_ciede2000, rgb2lab, rgb_from_hed

from lrp_captum.visualization import colormaps

# Machado, Oliveira & Fernandes (2009), severity 1.0, on linear RGB
CVD = {"deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413],
                                 [-0.011820, 0.042940, 0.968881]]),
       "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
                               [-0.003882, -0.048116, 1.051998]])}


def _hue(rgb) -> float:
    return colorsys.rgb_to_hsv(*(np.asarray(rgb, float) / 255))[0] * 360


def _hue_distance(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return min(d, 360 - d)


def _stain_hues() -> dict:
    """Hue of each stain at optical densities 0.3-1.5 (Ruifrok & Johnston vectors, Beer-Lambert)."""
    out = {}
    for name, vector in zip(("haematoxylin", "eosin", "DAB"), rgb_from_hed):
        out[name] = [_hue(255 * 10 ** (-od * vector)) for od in (0.3, 0.6, 1.0, 1.5)]
    return out


def test_slide_map_negative_colour_is_far_in_hue_from_every_stain():
    lut = colormaps.colormap_lut(colormaps.SLIDE_CMAP)
    for name, hues in _stain_hues().items():
        for k in (0, 32, 64):  # strong to moderate negative relevance
            assert min(_hue_distance(_hue(lut[k]), h) for h in hues) >= 60, (name, k)
    # the reason for the slide map: the blue of bwr is a haematoxylin hue
    bwr_blue = _hue(colormaps.colormap_lut("bwr")[0])
    assert min(_hue_distance(bwr_blue, h) for h in _stain_hues()["haematoxylin"]) < 15


def _stain_colours() -> list:
    """RGB of each stain at optical densities 0.3-1.5 (what the slide shows under the overlay)."""
    return [255 * 10 ** (-od * vector) for vector in rgb_from_hed for od in (0.3, 0.6, 1.0, 1.5)]


def _delta_e(a, b) -> float:
    return float(deltaE_ciede2000(rgb2lab(np.asarray(a, float)[None, None] / 255),
                                  rgb2lab(np.asarray(b, float)[None, None] / 255))[0, 0])


def test_slide_map_positive_colour_is_far_in_hue_from_every_stain():
    """Red lies 13-21 degrees from DAB's brown: positive relevance on an IHC slide read as stain."""
    lut = colormaps.colormap_lut(colormaps.SLIDE_CMAP)
    for name, hues in _stain_hues().items():
        for k in (255, 223, 191):  # strong to moderate positive relevance
            assert min(_hue_distance(_hue(lut[k]), h) for h in hues) >= 60, (name, k)


@pytest.mark.parametrize("k", [0, 32, 64, 191, 223, 255])
def test_slide_map_colours_differ_from_every_stain_colour_by_a_clear_margin(k):
    """CIEDE2000 from the nearest haematoxylin, eosin or DAB colour: 13 for the former red on DAB."""
    colour = colormaps.colormap_lut(colormaps.SLIDE_CMAP)[k]
    assert min(_delta_e(colour, stain) for stain in _stain_colours()) >= 25


def _simulate(rgb, matrix):
    c = np.asarray(rgb, float) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    out = np.clip(lin @ matrix.T, 0, 1)
    return np.where(out <= 0.0031308, 12.92 * out, 1.055 * out ** (1 / 2.4) - 0.055)


@pytest.mark.parametrize("vision", [None, *CVD])
def test_slide_map_signs_stay_apart_with_colour_vision_deficiencies(vision):
    lut = colormaps.colormap_lut(colormaps.SLIDE_CMAP)
    for k in (0, 32, 64):
        neg, pos = lut[k], lut[255 - k]
        if vision:
            neg, pos = _simulate(neg, CVD[vision]), _simulate(pos, CVD[vision])
        else:
            neg, pos = neg / 255, pos / 255
        assert deltaE_ciede2000(rgb2lab(neg[None, None]), rgb2lab(pos[None, None]))[0, 0] > 12


def test_anchor_map_matches_matplotlibs_rdbu():
    from matplotlib import colormaps as mpl

    ref = np.round(mpl["RdBu_r"](np.linspace(0, 1, 256))[:, :3] * 255)
    np.testing.assert_allclose(colormaps.colormap_lut("RdBu_r").astype(float), ref, atol=1)


def test_diverging_maps_put_zero_at_the_centre_and_clip_beyond_vmax():
    rgb = colormaps.colorize(np.array([[-2.0, -1.0, 0.0, 1.0, 2.0, np.nan]]), vmax=1.0)
    lut = colormaps.colormap_lut(colormaps.SLIDE_CMAP)
    assert (rgb[0, 0] == lut[0]).all() and (rgb[0, 1] == lut[0]).all()
    assert (rgb[0, 3] == lut[255]).all() and (rgb[0, 4] == lut[255]).all()
    assert (rgb[0, 2] == rgb[0, 5]).all() and rgb[0, 2].min() > 240  # 0 and NaN: near white


def test_every_caller_takes_its_colours_from_the_one_module():
    from lrp_captum import visualization
    from lrp_captum.eeg import plots
    from lrp_captum.text import render
    from lrp_captum.viewer import colormaps as viewer

    assert viewer.relevance_to_rgba is colormaps.relevance_to_rgba
    assert plots.CMAP == colormaps.FIGURE_CMAP
    assert (render.POSITIVE_RGB, render.NEGATIVE_RGB) == (colormaps.POSITIVE_RGB, colormaps.NEGATIVE_RGB)
    ends = visualization.colorize(np.array([[-1.0, 1.0]]), vmax=1.0)
    lut = colormaps.colormap_lut(colormaps.FIGURE_CMAP)
    assert (ends[0, 0] == lut[0]).all() and (ends[0, 1] == lut[255]).all()
