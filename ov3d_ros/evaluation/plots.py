"""Evaluation plots (PNG, Agg, no display): confusion heat map and per-class IoU bars; atomic file output.

Figures are built with :class:`matplotlib.figure.Figure` on an Agg canvas, never through pyplot, so no global
figure registry or GUI backend is involved and a figure is freed as soon as it is saved.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ov3d_ros.evaluation.metrics import Confusion, SegmentationScores, as_confusion
from ov3d_ros.files import atomic_path

Normalize = Literal["true", "pred", "all"] | None
_UNGROUPED = "ungrouped"
_UNGROUPED_COLOR = "0.6"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)


def _tick_fontsize(count: int) -> float:
    """Readable tick labels: 10 pt for a few classes down to 6 pt for many."""
    return float(np.clip(300.0 / max(count, 1), 6.0, 10.0))


def plot_confusion(
    confusion: Confusion | np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    normalize: Normalize = "true",
) -> Path:
    """Heat map of a confusion (rows ground truth, columns prediction) written to ``path`` as PNG.

    ``normalize``: ``"true"`` divides each row by its ground-truth points (rows sum to 1), ``"pred"`` each column
    by its predicted points, ``"all"`` by all points, None keeps counts. Unassigned predictions, if any, get an
    extra last column. Empty rows / columns are drawn grey. Returns ``path``.
    """
    matrix, unassigned = as_confusion(confusion)
    labels = list(class_names)
    if len(labels) != len(matrix):
        raise ValueError(f"{len(labels)} class names for a {len(matrix)}-class confusion")
    values = matrix.astype(np.float64)
    if unassigned.any():
        values = np.column_stack([values, unassigned])
        column_labels = labels + ["(unassigned)"]
    else:
        column_labels = labels
    denominators = {
        "true": values.sum(axis=1, keepdims=True),
        "pred": values.sum(axis=0, keepdims=True),
        "all": np.array(values.sum()),
        None: np.array(1.0),
    }
    if normalize not in denominators:
        raise ValueError(f"normalize must be 'true', 'pred', 'all' or None, got {normalize!r}")
    denominator = np.broadcast_to(denominators[normalize], values.shape)
    shown = np.full(values.shape, np.nan)
    np.divide(values, denominator, out=shown, where=denominator > 0)

    count = len(labels)
    side = max(6.0, 0.28 * count + 3.0)
    fig = _new_figure(side + 1.5, side)
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="0.85")
    limits = {"vmin": 0.0, "vmax": 1.0} if normalize is not None else {}
    image = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, interpolation="nearest", **limits)
    fontsize = _tick_fontsize(count)
    ax.set_xticks(np.arange(len(column_labels)), column_labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(np.arange(count), labels, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title("confusion" if normalize is None else f"confusion (normalised over {normalize})")
    colorbar = fig.colorbar(image, ax=ax, shrink=0.8)
    colorbar.set_label("points" if normalize is None else "fraction of points")
    return _save_png(fig, path)


def plot_per_class_iou(
    scores: SegmentationScores,
    path: str | os.PathLike,
    groups: dict[str, Sequence[str]] | None = None,
    order: Literal["iou", "class"] = "iou",
) -> Path:
    """Horizontal IoU bars (percent) of the classes with ground truth, written to ``path`` as PNG.

    Bars are sorted by IoU (best on top) or kept in class order, coloured by group (``groups``, default the scored
    groups; a class in several groups takes the first), with a dashed mIoU line. Returns ``path``.
    """
    if order not in ("iou", "class"):
        raise ValueError(f"order must be 'iou' or 'class', got {order!r}")
    group_names = list(scores.groups if groups is None else groups)
    class_groups = np.array([g or _UNGROUPED for g in scores.group_of(groups)], dtype=object)
    shown = np.flatnonzero(scores.present)
    if order == "iou":
        shown = shown[np.argsort(-scores.iou[shown], kind="stable")]

    legend_groups = [g for g in group_names + [_UNGROUPED] if (class_groups[shown] == g).any()]
    palette = matplotlib.colormaps["tab10"].colors
    colours = {g: palette[i % len(palette)] for i, g in enumerate(group_names)} | {_UNGROUPED: _UNGROUPED_COLOR}

    fig = _new_figure(8.0, max(3.0, 0.25 * len(shown) + 1.5))
    ax = fig.add_subplot()
    bars = ax.barh(
        np.arange(len(shown)),
        scores.iou[shown],
        color=[colours[g] for g in class_groups[shown]],
        tick_label=np.array(scores.class_names)[shown],
    )
    ax.bar_label(bars, fmt="%.1f", padding=2, fontsize=_tick_fontsize(len(shown)) - 1)
    ax.tick_params(axis="y", labelsize=_tick_fontsize(len(shown)))
    ax.invert_yaxis()
    ax.set_xlim(0.0, 105.0)
    ax.set_xlabel("IoU (%)")
    handles = [Patch(color=colours[g], label=g) for g in legend_groups]
    if not np.isnan(scores.miou):
        handles.append(ax.axvline(scores.miou, color="k", linestyle="--", label=f"mIoU {scores.miou:.1f}"))
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=8)
    ax.set_title(f"per-class IoU ({len(shown)} of {len(scores.class_names)} classes have ground truth)")
    return _save_png(fig, path)


def plot_curve(x: Sequence[float], series: dict[str, Sequence[float]], xlabel: str, ylabel: str,
               path: str | os.PathLike) -> Path:
    """Line plot of one or more series against `x` (e.g. mIoU against a noise level), written atomically."""
    fig = _new_figure(5.0, 3.5)
    axes = fig.add_subplot()
    for name, values in series.items():
        axes.plot(x, values, marker="o", label=name)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend()
    return _save_png(fig, path)


def plot_method_bars(methods: Sequence[str], series: dict[str, Sequence[float]], ylabel: str,
                     path: str | os.PathLike) -> Path:
    """Grouped bars: one group per method (e.g. a table's rows), one bar per series (mIoU, mAcc, ...)."""
    fig = _new_figure(max(5.0, 1.1 * len(methods) + 2.0), 4.0)
    axes = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(methods))
    for i, (name, values) in enumerate(series.items()):
        axes.bar(x + (i - (len(series) - 1) / 2) * width, np.nan_to_num(np.asarray(values, dtype=float)), width,
                 label=name)
    axes.set_xticks(x, methods, rotation=20, ha="right", fontsize=_tick_fontsize(len(methods)))
    axes.set_ylabel(ylabel)
    axes.grid(True, axis="y", alpha=0.3)
    axes.legend()
    return _save_png(fig, path)


def plot_reliability(report: dict, path: str | os.PathLike) -> Path:
    """The reliability curve of an `answer_report`: share right against mean score per bin (the diagonal is a
    calibrated score), with the answers per bin as bars."""
    rows = [r for r in report["reliability"] if r["count"]]
    fig = _new_figure(5.0, 4.0)
    axes = fig.add_subplot()
    axes.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="calibrated")
    axes.plot([r["mean_score"] for r in rows], [r["right"] for r in rows], marker="o",
              label=f"answers (precision {100 * report['precision_answered']:.0f} %)")
    counts = axes.twinx()
    counts.bar([(r["low"] + r["high"]) / 2 for r in report["reliability"]],
               [r["count"] for r in report["reliability"]], width=0.08, alpha=0.2, color="C1")
    counts.set_ylabel("answers in the bin")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("score of the top candidate")
    axes.set_ylabel(f"share right (IoU >= {report['right_iou']})")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left")
    return _save_png(fig, path)
