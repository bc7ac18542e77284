"""One figure per explained image, as Captum's ``visualize_image_attr_multiple`` draws it: the
image, its relevance with a colour bar, and the relevance blended over the image.

Relevance is summed over the colour channels and shown with a diverging map centred on 0
(:data:`lrp_captum.visualization.colormaps.FIGURE_CMAP`: red positive, blue negative) whose ends
are ± the 99.5th percentile of ``|relevance|``, so that a few extreme pixels do not wash out the
rest; the colour bar is in the units of the explained output (a logit by default) per pixel.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from lrp_captum.visualization import colormaps
from lrp_captum.visualization.heatmaps import colorize, relevance_map

#: what the panels show, left to right (also written into the PNG, key ``Panels``)
PANELS = ("image", "relevance (summed over channels)", "overlay (relevance over the image)")
COLOUR_BAR = "relevance per pixel (units of the explained output)"


def explanation_figure(image: np.ndarray, relevance, title: str = "", vmax: Optional[float] = None,
                       percentile: float = 99.5, alpha: float = 0.6, cmap: str = colormaps.FIGURE_CMAP):
    """A matplotlib ``Figure`` with the three :data:`PANELS` and a colour bar.

    Parameters
    ----------
    image : np.ndarray
        ``(H, W, 3)`` uint8 RGB, as given to the model (after resizing).
    relevance : array or Tensor
        ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)``; summed over channels.
    vmax : float, optional
        Relevance shown at full colour; default the ``percentile`` of ``|relevance|``.
    alpha : float
        Weight of the heatmap in the overlay.
    """
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    r = relevance_map(relevance)
    if vmax is None:
        vmax = float(np.percentile(np.abs(r), percentile)) if r.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    heat = colorize(r, vmax=vmax, cmap=cmap)
    overlay = np.clip((1 - alpha) * image[..., :3].astype(float) + alpha * heat, 0, 255).astype(np.uint8)
    fig = Figure(figsize=(10.5, 3.6), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, picture, label in zip(axes, (image, heat, overlay), PANELS):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_axis_off()
    from matplotlib.cm import ScalarMappable

    scale = ScalarMappable(norm=Normalize(-vmax, vmax), cmap=colormaps.matplotlib_colormap(cmap))
    fig.colorbar(scale, ax=list(axes), shrink=0.85, label=COLOUR_BAR.replace(" (", "\n("))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def save_explanation_figure(path, image: np.ndarray, relevance, title: str = "", dpi: int = 120, **kwargs) -> Path:
    """Write :func:`explanation_figure` as a PNG (title, panels and colour bar also in its text
    chunks ``Title``, ``Panels``, ``Colour bar``); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = explanation_figure(image, relevance, title=title, **kwargs)
    fig.savefig(path, dpi=dpi, format="png", bbox_inches="tight",
                metadata={"Title": title, "Panels": "; ".join(PANELS), "Colour bar": COLOUR_BAR})
    return path
