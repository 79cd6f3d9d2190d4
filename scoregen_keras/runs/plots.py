"""PNG figures of samples: an image grid, or a 2-D scatter beside the training data (Agg only)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm.auto import tqdm

PANEL_SIZE_IN = 4.5
DPI = 110
POINT_SIZE = 2.0
POINT_ALPHA = 0.4
LEGEND_MARKER_SCALE = 5.0  # legend dots readable beside points of size POINT_SIZE
QUANTILE_RANGE = (0.001, 0.999)
"""Per-axis quantiles of the plotted points that set the view (outliers do not zoom it out)."""
MARGIN_FRACTION = 0.1
"""Extra space around the view, as a fraction of its extent."""
GRID_PAD = 1
"""Pixels of padding between images of a grid."""
MAX_GRID_IMAGES = 100
PATH_MARKER_SIZE = 3.0
"""Marker size (points) of the frames of a path; its two ends are drawn twice as large."""
UINT8_MAX = 255
IMAGE_FILE_DIGITS = 6


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write the figure to `path` atomically (temporary name, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path


def _bounds(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners of the view: the quantile range of the points plus a margin."""
    low, high = np.quantile(points, QUANTILE_RANGE, axis=0)
    pad = MARGIN_FRACTION * np.maximum(high - low, np.finfo(np.float32).eps)
    return low - pad, high + pad


def save_scatter(
    path: str | os.PathLike[str],
    samples: np.ndarray,
    title: str = "samples",
    reference: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    class_names: Sequence[str] = (),
) -> Path:
    """PNG scatter of the first two coordinates: samples, beside reference points when given.

    With ``labels`` each class of samples has its own colour, named in a legend by
    ``class_names`` (default: the label).
    """
    samples = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)[:, :2]
    is_finite = np.all(np.isfinite(samples), axis=1)
    finite = samples[is_finite]
    shown = finite if reference is None else np.concatenate([finite, reference[:, :2]])
    low, high = _bounds(shown) if len(shown) else (np.full(2, -1.0), np.full(2, 1.0))
    panels = 1 if reference is None else 2
    fig = Figure(figsize=(panels * PANEL_SIZE_IN, PANEL_SIZE_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, panels, sharex=True, sharey=True))
    if reference is not None:
        axes[0].scatter(*reference[:, :2].T, s=POINT_SIZE, alpha=POINT_ALPHA, color="tab:gray")
        axes[0].set_title("training data")
    if labels is None:
        axes[-1].scatter(*finite.T, s=POINT_SIZE, alpha=POINT_ALPHA, color="tab:red")
    else:
        labels = np.asarray(labels)[is_finite]
        for label in np.unique(labels):
            name = class_names[label] if label < len(class_names) else str(label)
            points = finite[labels == label]
            axes[-1].scatter(*points.T, s=POINT_SIZE, alpha=POINT_ALPHA, label=name)
        axes[-1].legend(markerscale=LEGEND_MARKER_SCALE, fontsize="small", loc="best")
    axes[-1].set_title(title)
    for ax in axes:
        ax.set_xlim(low[0], high[0])
        ax.set_ylim(low[1], high[1])
        ax.set_aspect("equal")
    fig.tight_layout()
    return _save(fig, path)


def to_uint8(images: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """8-bit pixels of images: value_range's low is black (0) and high white (255), clipped;
    NaN is black."""
    low, high = value_range
    images = np.nan_to_num(np.asarray(images, dtype=np.float64), nan=low)
    return np.round(np.clip((images - low) / (high - low), 0.0, 1.0) * UINT8_MAX).astype(np.uint8)


def image_grid(
    images: np.ndarray, value_range: tuple[float, float], columns: int | None = None
) -> np.ndarray:
    """Tile (n, H, W, C) images into one uint8 (rows*H, cols*W, C) array, clipped to the range.

    The grid is square unless `columns` is given; images fill it row by row.
    """
    pixels = to_uint8(np.asarray(images)[:MAX_GRID_IMAGES], value_range)
    n, height, width, channels = pixels.shape
    cols = math.ceil(math.sqrt(n)) if columns is None else max(1, min(int(columns), n))
    rows = math.ceil(n / cols)
    cell_h, cell_w = height + GRID_PAD, width + GRID_PAD
    grid = np.full((rows * cell_h + GRID_PAD, cols * cell_w + GRID_PAD, channels), UINT8_MAX)
    for k in range(n):
        r, c = divmod(k, cols)
        top, left = GRID_PAD + r * cell_h, GRID_PAD + c * cell_w
        grid[top : top + height, left : left + width] = pixels[k]
    return grid.astype(np.uint8)


def class_rows(
    images: np.ndarray, labels: np.ndarray, max_columns: int | None = None
) -> tuple[np.ndarray, int | None]:
    """Images laid out one class per row for `image_grid`, and the grid's width.

    Rows follow the classes that occur, in order, each as long as the commonest class (at most
    ``max_columns``, and MAX_GRID_IMAGES in all); a shorter row ends in NaN cells, which draw
    black. Images of a single class come back as they are, for a square grid (width None).
    """
    images, labels = np.asarray(images), np.asarray(labels)
    present, counts = np.unique(labels, return_counts=True)
    if len(present) == 1:
        return images, None
    columns = min(int(counts.max()), MAX_GRID_IMAGES // len(present))
    if max_columns is not None:
        columns = min(columns, max_columns)
    columns = max(1, columns)
    grid = np.full((len(present) * columns, *images.shape[1:]), np.nan, dtype=np.float32)
    for row, label in enumerate(present):
        members = images[labels == label][:columns]
        grid[row * columns : row * columns + len(members)] = members
    return grid, columns


def save_image_files(
    folder: str | os.PathLike[str],
    images: np.ndarray,
    value_range: tuple[float, float] = (0.0, 1.0),
    progress: bool = False,
    names: Sequence[str] | None = None,
) -> Path:
    """Each of (n, H, W, C) images as an 8-bit PNG (grey for one channel) in folder, under its
    name in ``names``; by default 000000.png on, counting from 0 with at least six digits, so
    that they sort in sample order."""
    from PIL import Image

    folder = Path(folder)
    if names is None:
        digits = max(IMAGE_FILE_DIGITS, len(str(len(images) - 1)))
        names = [f"{k:0{digits}d}.png" for k in range(len(images))]
    bar = tqdm(range(len(images)), desc="writing images", disable=None if progress else True)
    for k in bar:
        pixels = to_uint8(images[k], value_range)
        picture = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        picture.save(folder / names[k])
    return folder


def save_image_grid(
    path: str | os.PathLike[str],
    images: np.ndarray,
    value_range: tuple[float, float] = (0.0, 1.0),
    columns: int | None = None,
) -> Path:
    """PNG of (n, H, W, C) images in a grid (square, or `columns` wide), mapped from value_range."""
    grid = image_grid(images, value_range, columns)
    height, width = grid.shape[:2]
    scale = PANEL_SIZE_IN / max(height, width)
    fig = Figure(figsize=(max(width * scale, 1.0), max(height * scale, 1.0)), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    if grid.shape[2] == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=UINT8_MAX, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    return _save(fig, path)


def save_path(
    path: str | os.PathLike[str],
    points: np.ndarray,
    title: str = "path",
    reference: np.ndarray | None = None,
) -> Path:
    """PNG of a path through the plane: (n, 2) points joined in order, over reference points."""
    points = np.asarray(points, dtype=np.float64).reshape(len(points), -1)[:, :2]
    shown = points if reference is None else np.concatenate([points, reference[:, :2]])
    finite = shown[np.all(np.isfinite(shown), axis=1)]
    low, high = _bounds(finite) if len(finite) else (np.full(2, -1.0), np.full(2, 1.0))
    fig = Figure(figsize=(PANEL_SIZE_IN, PANEL_SIZE_IN), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if reference is not None:
        ax.scatter(*reference[:, :2].T, s=POINT_SIZE, alpha=POINT_ALPHA, color="tab:gray")
    ax.plot(*points.T, "-o", color="tab:red", markersize=PATH_MARKER_SIZE)
    ax.plot(*points[[0, -1]].T, "s", color="tab:blue", markersize=2 * PATH_MARKER_SIZE)
    ax.set_title(title)
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_aspect("equal")
    fig.tight_layout()
    return _save(fig, path)
