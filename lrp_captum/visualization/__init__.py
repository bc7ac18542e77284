"""Relevance as pictures: heatmaps of image relevance (:mod:`.heatmaps`), the figure of one
explained image (:mod:`.image_figure`) and the colour maps every plot, overlay and page takes its
colours from (:mod:`.colormaps`)."""
from lrp_captum.visualization.heatmaps import colorize, relevance_map, save_heatmap

__all__ = ["relevance_map", "colorize", "save_heatmap"]
