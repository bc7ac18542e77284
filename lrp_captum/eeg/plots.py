"""Figures of EEG relevance: topomaps, channel x time heatmaps, class averages.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (safe in
Streamlit and scripts); :func:`save_figure` writes PNG. Relevance is signed: red supports the
explained output, blue speaks against it; colour limits are symmetric around zero and shared
across the panels of one figure.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import mne
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from lrp_captum.visualization.colormaps import FIGURE_CMAP as CMAP


def _symmetric_limit(*arrays) -> float:
    vmax = max(float(np.abs(a).max()) for a in arrays)
    return vmax if vmax > 0 else 1.0


def _window_mean(evoked: mne.Evoked, tmin: float, tmax: float) -> np.ndarray:
    sel = (evoked.times >= tmin - 1e-9) & (evoked.times <= tmax + 1e-9)
    if not sel.any():
        raise ValueError(f"window {tmin:g}-{tmax:g} s lies outside the epoch "
                         f"({evoked.times[0]:g} to {evoked.times[-1]:g} s).")
    return evoked.data[:, sel].mean(1)


def _topomap(ax, data, info, vlim, title, mask=None):
    mask_params = dict(marker="o", markerfacecolor="k", markeredgecolor="k", markersize=5)
    im, _ = mne.viz.plot_topomap(data, info, axes=ax, show=False, cmap=CMAP, vlim=vlim,
                                 contours=0, sensors=True, mask=mask, mask_params=mask_params)
    ax.set_title(title, fontsize=9)
    return im


def _channel_mask(info, channels) -> Optional[np.ndarray]:
    if not channels:
        return None
    return np.array([name in channels for name in info["ch_names"]])


def plot_topomaps(evoked: mne.Evoked, times: Sequence[float] = (),
                  windows: Sequence[tuple[float, float]] = (),
                  highlight: Sequence[str] = (), title: str = "") -> Figure:
    """Relevance topomaps at single time points and averaged over time windows.

    Parameters
    ----------
    evoked : mne.Evoked
        Relevance (e.g. a class average from :func:`lrp_captum.eeg.explain.explain_epochs`).
    times : sequence of float
        Time points (s); the nearest sample is shown.
    windows : sequence of (tmin, tmax)
        Time windows (s) whose mean relevance is shown.
    highlight : sequence of str
        Channels to mark with black dots (e.g. the ground truth).
    """
    panels = []
    for t in times:
        i = int(np.argmin(np.abs(evoked.times - t)))
        panels.append((evoked.data[:, i], f"{evoked.times[i]:.2f} s"))
    for tmin, tmax in windows:
        panels.append((_window_mean(evoked, tmin, tmax), f"{tmin:.2f}-{tmax:.2f} s"))
    if not panels:
        raise ValueError("give at least one time or window.")
    vmax = _symmetric_limit(*[p[0] for p in panels])
    fig = Figure(figsize=(2.2 * len(panels) + 0.8, 2.6), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    mask = _channel_mask(evoked.info, highlight)
    for ax, (data, label) in zip(axes, panels):
        im = _topomap(ax, data, evoked.info, (-vmax, vmax), label, mask)
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="relevance")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_channel_time(data, ch_names: Sequence[str] = (), times: Sequence[float] = (),
                      window: Optional[tuple[float, float]] = None,
                      highlight: Sequence[str] = (), title: str = "", ax=None) -> Figure:
    """Channel x time heatmap of relevance.

    Parameters
    ----------
    data : mne.Evoked or np.ndarray of shape (C, T)
        Relevance; with an array, give ``ch_names`` and ``times`` (s).
    window : (tmin, tmax), optional
        Time window (s) outlined on the highlighted channels (or all channels).
    highlight : sequence of str
        Channel labels drawn in bold.
    ax : matplotlib Axes, optional
        Draw into this axes (its figure is returned) instead of a new figure.
    """
    if isinstance(data, mne.Evoked):
        ch_names, times, data = data.ch_names, data.times, data.data
    data = np.asarray(data)
    times = np.asarray(times)
    if data.shape != (len(ch_names), len(times)):
        raise ValueError(f"data of shape {data.shape} does not match {len(ch_names)} channels "
                         f"x {len(times)} times.")
    if ax is None:
        fig = Figure(figsize=(7, 0.18 * len(ch_names) + 1.4), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    vmax = _symmetric_limit(data)
    dt = times[1] - times[0] if len(times) > 1 else 1.0
    im = ax.imshow(data, aspect="auto", cmap=CMAP, vmin=-vmax, vmax=vmax, interpolation="nearest",
                   extent=(times[0] - dt / 2, times[-1] + dt / 2, len(ch_names) - 0.5, -0.5))
    ax.set_yticks(range(len(ch_names)), ch_names, fontsize=6)
    for label in ax.get_yticklabels():
        if label.get_text() in highlight:
            label.set_fontweight("bold")
    ax.set_xlabel("time (s)")
    if window is not None:
        rows = [i for i, c in enumerate(ch_names) if c in highlight] or list(range(len(ch_names)))
        for r in rows:
            ax.add_patch(Rectangle((window[0], r - 0.5), window[1] - window[0], 1.0,
                                   fill=False, edgecolor="k", linewidth=1.0))
    fig.colorbar(im, ax=ax, label="relevance", shrink=0.8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_class_averages(evokeds: dict, window: Optional[tuple[float, float]] = None,
                        highlight: Sequence[str] = (), title: str = "") -> Figure:
    """One row per class: channel x time heatmap and (with ``window``) its window topomap.

    Parameters
    ----------
    evokeds : dict of str -> mne.Evoked
        Class-average relevance (``EEGRelevance.evokeds``).
    window : (tmin, tmax), optional
        Time window (s) averaged for the topomap and outlined on the heatmap.
    title : str
        Figure title, e.g. which epochs were averaged (held-out or training).
    """
    names = list(evokeds)
    ncols = 2 if window is not None else 1
    first = evokeds[names[0]]
    fig = Figure(figsize=(4.5 + 2.8 * (ncols - 1), (0.13 * len(first.ch_names) + 1.2) * len(names)),
                 layout="constrained")
    grid = fig.subplots(len(names), ncols, squeeze=False,
                        gridspec_kw=dict(width_ratios=[2.4, 1][:ncols]))
    vmax = _symmetric_limit(*[_window_mean(e, *window) for e in evokeds.values()]) \
        if window is not None else None
    for row, name in zip(grid, names):
        ev = evokeds[name]
        plot_channel_time(ev, window=window, highlight=highlight,
                          title=f"{name} (n={ev.nave})", ax=row[0])
        if window is not None:
            _topomap(row[1], _window_mean(ev, *window), ev.info, (-vmax, vmax),
                     f"{window[0]:.2f}-{window[1]:.2f} s", _channel_mask(ev.info, highlight))
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_topomap_row(maps: dict, info: mne.Info, highlight: Sequence[str] = (),
                     symmetric_each: bool = True, title: str = "") -> Figure:
    """Several scalp maps side by side (e.g. relevance next to CSP patterns).

    Parameters
    ----------
    maps : dict of str -> np.ndarray of shape (C,)
        Panel title -> one value per channel of ``info``.
    symmetric_each : bool
        Scale each panel to its own symmetric range (maps in different units, like CSP
        patterns and relevance); otherwise one shared range.
    """
    fig = Figure(figsize=(2.3 * len(maps), 2.6), layout="constrained")
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    shared = _symmetric_limit(*maps.values())
    mask = _channel_mask(info, highlight)
    for ax, (label, data) in zip(axes, maps.items()):
        v = _symmetric_limit(data) if symmetric_each else shared
        _topomap(ax, np.asarray(data), info, (-v, v), label, mask)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def save_figure(fig: Figure, path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG (parent folders created); returns the path.

    The figure's title, if any, is also stored as the PNG's ``Title`` text chunk, so a file
    says which epochs it shows (held-out or training) without being looked at.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    title = fig.get_suptitle()
    fig.savefig(path, dpi=dpi, format="png", metadata={"Title": title} if title else None)
    return path
