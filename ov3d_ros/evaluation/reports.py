"""Evaluation reports: atomic JSON (NaN as null) and the segmentation report (JSON + confusion and IoU plots)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ov3d_ros.evaluation.metrics import SegmentationScores
from ov3d_ros.evaluation.plots import plot_confusion, plot_per_class_iou
from ov3d_ros.files import atomic_path


def _jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars / arrays and tuples become Python ones, paths strings, NaN / inf None."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(item) for item in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as JSON (sorted keys, indent 2, NaN / inf as null) atomically; returns ``path``."""
    text = json.dumps(_jsonable(data), sort_keys=True, indent=2, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def segmentation_report(
    scores: SegmentationScores, out_json: str | os.PathLike, plots_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Write ``scores`` to ``out_json`` with its plots ``<stem>_confusion.png`` and ``<stem>_per_class_iou.png``.

    Plots go to ``plots_dir`` (default: beside the JSON) and are written before the JSON, so a JSON on disk means
    a complete report. Returns the dict written: ``scores.to_dict()`` plus ``plots`` (``confusion``,
    ``per_class_iou``), plot paths relative to the JSON's folder.
    """
    out_json = Path(out_json)
    plots_dir = out_json.parent if plots_dir is None else Path(plots_dir)
    confusion_png = plot_confusion(scores.confusion, scores.class_names, plots_dir / f"{out_json.stem}_confusion.png")
    iou_png = plot_per_class_iou(scores, plots_dir / f"{out_json.stem}_per_class_iou.png")
    report = _jsonable(scores.to_dict())
    report["plots"] = {
        "confusion": os.path.relpath(confusion_png, out_json.parent),
        "per_class_iou": os.path.relpath(iou_png, out_json.parent),
    }
    write_json(out_json, report)
    return report
