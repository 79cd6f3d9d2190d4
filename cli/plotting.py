"""Scatter plots of 2-D samples beside the true density, written with Matplotlib's Agg canvas."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

GRID_POINTS = 200
"""Grid resolution (per axis) of the density contours."""
N_CONTOURS = 12
MARGIN = 0.5
"""Extra space around the data (in data units) on every side of the plot."""
QUANTILE_RANGE = (0.001, 0.999)
"""Per-axis quantiles of the plotted points that set the view (outliers do not zoom it out)."""
POINT_SIZE = 2.0
POINT_ALPHA = 0.4
PANEL_SIZE_IN = 4.5
DPI = 110

LogProb = Callable[[np.ndarray], np.ndarray]


def _bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners of the view: quantile range of the points plus a margin."""
    low, high = np.quantile(points, QUANTILE_RANGE, axis=0)
    return low - MARGIN, high + MARGIN


def _density_grid(
    log_prob: LogProb, low: np.ndarray, high: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mesh (X, Y) over the view and the density exp(log_prob) on it."""
    xs = np.linspace(low[0], high[0], GRID_POINTS)
    ys = np.linspace(low[1], high[1], GRID_POINTS)
    X, Y = np.meshgrid(xs, ys)
    density = np.exp(log_prob(np.stack([X.ravel(), Y.ravel()], axis=1))).reshape(X.shape)
    return X, Y, density


def save_scatter(
    path: Path,
    samples: np.ndarray,
    title: str,
    log_prob: LogProb | None = None,
    reference: np.ndarray | None = None,
) -> Path:
    """Write a PNG: the samples (right) beside the true density contours or true draws (left)."""
    samples = np.asarray(samples)[:, :2]
    shown = samples if reference is None else np.concatenate([samples, reference[:, :2]])
    low, high = _bounds(shown)
    fig = Figure(figsize=(2 * PANEL_SIZE_IN, PANEL_SIZE_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    ax_true, ax_samples = fig.subplots(1, 2, sharex=True, sharey=True)
    grid = None if log_prob is None else _density_grid(log_prob, low, high)
    if grid is not None:
        ax_true.contourf(*grid, levels=N_CONTOURS, cmap="viridis")
        ax_samples.contour(*grid, levels=N_CONTOURS, cmap="viridis", linewidths=0.6)
        ax_true.set_title("true density")
    if reference is not None:
        ax_true.scatter(*reference[:, :2].T, s=POINT_SIZE, alpha=POINT_ALPHA, color="tab:gray")
        ax_true.set_title("true samples" if grid is None else "true density and samples")
    ax_samples.scatter(*samples.T, s=POINT_SIZE, alpha=POINT_ALPHA, color="tab:red")
    ax_samples.set_title(title)
    for ax in (ax_true, ax_samples):
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path)
    return path
