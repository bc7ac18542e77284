"""The viewer's colour maps: :mod:`lrp_captum.visualization.colormaps` (the one source), re-exported here for
the app and the tile server."""
from __future__ import annotations

from lrp_captum.visualization.colormaps import (DIVERGING_CMAPS, RELEVANCE_MODES, SEQUENTIAL_CMAPS, SLIDE_CMAP, colormap_lut,
                                                legend_stops, legend_words, probability_to_rgba, relevance_heatmap_rgb,
                                                relevance_to_rgba)

__all__ = ["DIVERGING_CMAPS", "SEQUENTIAL_CMAPS", "RELEVANCE_MODES", "SLIDE_CMAP", "colormap_lut",
           "relevance_to_rgba", "probability_to_rgba", "legend_stops", "legend_words", "relevance_heatmap_rgb"]
