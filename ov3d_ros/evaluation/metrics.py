"""Semantic-segmentation metrics from a confusion matrix: per-class IoU and accuracy, their means, group means.

Conventions (all scores are percentages in 0-100):

* Rows of a confusion matrix are ground-truth classes, columns are predicted classes.
* Points whose ground truth is ``ignore_label`` never count, whatever was predicted for them.
* A prediction outside ``[0, num_classes)`` (``-1`` for "unlabelled", or a class id the benchmark does not score)
  is *unassigned*: it is wrong for its ground-truth class (a false negative) but a false positive for no class.
  Unassigned points are kept in a separate ``(C,)`` count beside the ``(C, C)`` matrix.
* ``IoU_c = TP / (TP + FP + FN)`` and ``accuracy_c = TP / (TP + FN)``, where ``FN`` includes unassigned points.
* A class with no ground-truth point (``TP + FN == 0``) gets IoU and accuracy NaN (``null`` in JSON) and is
  excluded from mIoU, mAcc and every group mean, even if it was predicted. A class with ground-truth points that
  is never predicted correctly gets IoU 0 and accuracy 0 and counts in the means.
* Overall accuracy is ``sum(TP) / (number of non-ignored points)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import numpy as np

UNITS = "percent (0-100) for iou, accuracy, miou, macc and overall_accuracy; *_points are point counts"


class Confusion(NamedTuple):
    """Point counts: ``matrix[g, p]`` points of ground truth ``g`` predicted ``p``; ``unassigned[g]`` predicted
    outside ``[0, C)``. Both int64; unpacks as ``matrix, unassigned = confusion``."""

    matrix: np.ndarray
    unassigned: np.ndarray

    @property
    def gt_points(self) -> np.ndarray:
        """(C,) non-ignored ground-truth points per class (row sums plus unassigned)."""
        return self.matrix.sum(axis=1) + self.unassigned


def as_confusion(confusion: Confusion | np.ndarray) -> Confusion:
    """A :class:`Confusion`; a bare (C, C) matrix is taken to have no unassigned points."""
    if isinstance(confusion, Confusion):
        matrix, unassigned = np.asarray(confusion.matrix), np.asarray(confusion.unassigned)
    else:
        matrix = np.asarray(confusion)
        unassigned = np.zeros(len(matrix), dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or unassigned.shape != matrix.shape[:1]:
        raise ValueError(f"expected a (C, C) matrix and (C,) unassigned, got {matrix.shape} and {unassigned.shape}")
    if (matrix < 0).any() or (unassigned < 0).any():
        raise ValueError("confusion counts must be non-negative")
    return Confusion(matrix.astype(np.int64), unassigned.astype(np.int64))


def _check_labels(name: str, labels: Any) -> np.ndarray:
    array = np.asarray(labels)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} labels must be integers, got dtype {array.dtype}")
    return array.reshape(-1).astype(np.int64)


def _counts(pred: Any, gt: Any, num_classes: int, ignore_label: int) -> np.ndarray:
    """(C, C + 1) int64 counts; the last column holds the unassigned predictions."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if 0 <= ignore_label < num_classes:
        raise ValueError(f"ignore_label {ignore_label} is a valid class id for {num_classes} classes")
    pred, gt = _check_labels("pred", pred), _check_labels("gt", gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt differ in size: {pred.size} vs {gt.size}")
    keep = gt != ignore_label
    pred, gt = pred[keep], gt[keep]
    if gt.size and (gt.min() < 0 or gt.max() >= num_classes):
        bad = gt[(gt < 0) | (gt >= num_classes)][0]
        raise ValueError(f"ground-truth label {bad} is neither in [0, {num_classes}) nor ignore_label {ignore_label}")
    pred = np.where((pred >= 0) & (pred < num_classes), pred, num_classes)
    width = num_classes + 1
    return np.bincount(gt * width + pred, minlength=num_classes * width).reshape(num_classes, width)


def confusion_matrix(pred: Any, gt: Any, num_classes: int, ignore_label: int = 255) -> Confusion:
    """Confusion of integer labels ``pred`` and ``gt`` (same size, any shape).

    Returns ``Confusion(matrix (C, C) int64, unassigned (C,) int64)`` (see the module docstring): points with
    ``gt == ignore_label`` are skipped; predictions outside ``[0, C)`` go to ``unassigned[gt]``. Any other ground
    truth outside ``[0, C)`` raises ValueError.
    """
    counts = _counts(pred, gt, num_classes, ignore_label)
    return Confusion(counts[:, :num_classes], counts[:, num_classes])


class ConfusionAccumulator:
    """Streaming confusion over many scenes: ``add`` each scene's labels, read ``matrix`` / ``confusion``."""

    def __init__(self, num_classes: int, ignore_label: int = 255) -> None:
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self._counts = _counts(np.zeros(0, np.int64), np.zeros(0, np.int64), num_classes, ignore_label)

    def add(self, pred: Any, gt: Any) -> None:
        """Accumulate one scene's point labels (same rules as :func:`confusion_matrix`)."""
        self._counts += _counts(pred, gt, self.num_classes, self.ignore_label)

    @property
    def matrix(self) -> np.ndarray:
        """(C, C) int64 counts so far (a copy)."""
        return self._counts[:, : self.num_classes].copy()

    @property
    def unassigned(self) -> np.ndarray:
        """(C,) int64 unassigned predictions per ground-truth class so far (a copy)."""
        return self._counts[:, self.num_classes].copy()

    @property
    def confusion(self) -> Confusion:
        """Both counts so far, ready for :func:`segmentation_scores`."""
        return Confusion(self.matrix, self.unassigned)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """100 * numerator / denominator, NaN where the denominator is 0."""
    out = np.full(numerator.shape, np.nan)
    np.divide(100.0 * numerator, denominator, out=out, where=denominator > 0)
    return out


def _mean(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean of ``values[mask]``, NaN when the mask is empty."""
    return float(values[mask].mean()) if mask.any() else float("nan")


def _none_if_nan(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


@dataclass(frozen=True, eq=False)
class SegmentationScores:
    """Scores of one confusion (see the module docstring for the conventions); build with
    :func:`segmentation_scores`. Arrays are (C,) in class order; NaN marks a class with no ground truth."""

    class_names: tuple[str, ...]
    confusion: Confusion
    iou: np.ndarray
    accuracy: np.ndarray
    miou: float
    macc: float
    overall_accuracy: float
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    group_miou: dict[str, float] = field(default_factory=dict)
    group_macc: dict[str, float] = field(default_factory=dict)

    @property
    def present(self) -> np.ndarray:
        """(C,) bool: the class has ground-truth points (it counts in the means)."""
        return self.confusion.gt_points > 0

    def group_of(self, groups: dict[str, Sequence[str]] | None = None) -> list[str | None]:
        """Per class, the first group (of ``groups``, default the scored groups) listing it, else None."""
        groups = self.groups if groups is None else groups
        _check_group_names(groups, self.class_names)
        first: dict[str, str] = {}
        for group, names in groups.items():
            for name in names:
                first.setdefault(name, group)
        return [first.get(name) for name in self.class_names]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: scores in percent (``units`` says so), NaN as None, class entries in class order."""
        matrix, unassigned = self.confusion
        gt_points = self.confusion.gt_points
        predicted = matrix.sum(axis=0)
        classes = [
            {
                "name": name,
                "group": group,
                "iou": _none_if_nan(self.iou[i]),
                "accuracy": _none_if_nan(self.accuracy[i]),
                "gt_points": int(gt_points[i]),
                "predicted_points": int(predicted[i]),
                "unassigned_points": int(unassigned[i]),
            }
            for i, (name, group) in enumerate(zip(self.class_names, self.group_of()))
        ]
        groups = {
            group: {
                "classes": list(names),
                "present_classes": int(np.isin(np.array(self.class_names)[self.present], names).sum()),
                "miou": _none_if_nan(self.group_miou[group]),
                "macc": _none_if_nan(self.group_macc[group]),
            }
            for group, names in self.groups.items()
        }
        return {
            "units": UNITS,
            "num_classes": len(self.class_names),
            "present_classes": int(self.present.sum()),
            "num_points": int(gt_points.sum()),
            "unassigned_points": int(unassigned.sum()),
            "miou": _none_if_nan(self.miou),
            "macc": _none_if_nan(self.macc),
            "overall_accuracy": _none_if_nan(self.overall_accuracy),
            "classes": classes,
            "groups": groups,
            "confusion": matrix.tolist(),
            "unassigned": unassigned.tolist(),
        }


def _check_group_names(groups: dict[str, Sequence[str]], class_names: Sequence[str]) -> None:
    unknown = sorted({name for names in groups.values() for name in names} - set(class_names))
    if unknown:
        raise ValueError(f"group classes not in class_names: {unknown}")


def segmentation_scores(
    confusion: Confusion | np.ndarray,
    class_names: Sequence[str],
    groups: dict[str, Sequence[str]] | None = None,
) -> SegmentationScores:
    """Per-class IoU and accuracy, mIoU, mAcc, overall accuracy and per-group means, in percent.

    ``confusion`` is a :class:`Confusion` (or a bare (C, C) matrix: no unassigned points). ``groups`` maps a group
    name (e.g. head / common / tail) to class names; each group's mIoU / mAcc is the mean over its classes that
    have ground-truth points (NaN if none has).
    """
    confusion = as_confusion(confusion)
    class_names = tuple(class_names)
    if len(class_names) != len(confusion.matrix):
        raise ValueError(f"{len(class_names)} class names for a {len(confusion.matrix)}-class confusion")
    groups = {group: tuple(names) for group, names in (groups or {}).items()}
    _check_group_names(groups, class_names)
    matrix = confusion.matrix
    tp = np.diag(matrix)
    gt_points = confusion.gt_points
    false_positives = matrix.sum(axis=0) - tp
    iou = _ratio(tp, gt_points + false_positives)
    accuracy = _ratio(tp, gt_points)
    present = gt_points > 0
    iou[~present] = np.nan  # predicted but absent from the ground truth: not scored
    names = np.array(class_names)
    members = {group: np.isin(names, group_names) & present for group, group_names in groups.items()}
    return SegmentationScores(
        class_names=class_names,
        confusion=confusion,
        iou=iou,
        accuracy=accuracy,
        miou=_mean(iou, present),
        macc=_mean(accuracy, present),
        overall_accuracy=float(_ratio(tp.sum(), gt_points.sum())),
        groups=groups,
        group_miou={group: _mean(iou, mask) for group, mask in members.items()},
        group_macc={group: _mean(accuracy, mask) for group, mask in members.items()},
    )
