"""Grounding evaluation: ground-truth boxes from instance points, proposal recall, and Acc@0.25 / Acc@0.5 over
referring expressions (overall / unique / multiple, as ScanRefer reports them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch.nn.functional as F

from ov3d_ros.data.openscene import IGNORE_LABEL, SceneCloud
from ov3d_ros.evaluation.segmentation import FeatureSource
from ov3d_ros.geometry.boxes import OrientedBox, box_iou, iou_matrix
from ov3d_ros.grounding.objects import SceneObjects, map_objects
from ov3d_ros.language.vocabulary import Vocabulary
from ov3d_ros.mapping.instances import fit_box

THRESHOLDS = (0.25, 0.5)
MIN_INSTANCE_POINTS = 10


def instance_boxes(cloud: SceneCloud, min_points: int = MIN_INSTANCE_POINTS) -> dict[int, OrientedBox]:
    """Instance id -> the box of its observed points (instances with at least `min_points` points)."""
    if cloud.instance_labels is None:
        raise ValueError(f"scene {cloud.scene} has no instance labels to take ground-truth boxes from")
    ids, counts = np.unique(cloud.instance_labels, return_counts=True)
    return {int(i): fit_box(cloud.coords[cloud.instance_labels == i].astype(np.float64))
            for i, n in zip(ids, counts) if i >= 0 and n >= min_points}


def instance_classes(cloud: SceneCloud) -> dict[int, int]:
    """Instance id -> the class index most of its points carry (instances whose points are all unlabelled are
    left out)."""
    if cloud.instance_labels is None or cloud.labels is None:
        raise ValueError(f"scene {cloud.scene} has no instance and class labels")
    classes: dict[int, int] = {}
    for instance in np.unique(cloud.instance_labels):
        labels = cloud.labels[(cloud.instance_labels == instance) & (cloud.labels != IGNORE_LABEL)]
        if instance >= 0 and len(labels):
            classes[int(instance)] = int(np.bincount(labels).argmax())
    return classes


def labelled_objects(scene: str, cloud: SceneCloud, source: FeatureSource, space: Vocabulary,
                     superpoints: np.ndarray) -> SceneObjects:
    """The objects of a scene's cloud labelled by a feature source (2D fusion or a student): its features scored
    against `space`'s classes, then the map's instance proposals."""
    features, valid = source(scene, cloud)
    unit = F.normalize(features.float(), dim=1)
    return map_objects(cloud.coords, cloud.colors, unit.numpy(), valid.numpy(), space.logits(unit).numpy(),
                       superpoints)


def proposal_recall(truth: Sequence[OrientedBox], proposals: Sequence[OrientedBox],
                    thresholds: Iterable[float] = THRESHOLDS) -> dict[str, float]:
    """Share of the ground-truth boxes that some proposal overlaps with IoU >= each threshold."""
    return recall_from_overlap(truth_overlap(truth, proposals), thresholds)


def truth_overlap(truth: Sequence[OrientedBox], proposals: Sequence[OrientedBox]) -> np.ndarray:
    """(T, P) IoU of every ground-truth box with every proposal."""
    return iou_matrix(list(truth), list(proposals)) if len(truth) and len(proposals) else \
        np.zeros((len(truth), len(proposals)))


def best_overlap(overlap: np.ndarray) -> np.ndarray:
    """(T,) each ground-truth box's best IoU in a `truth_overlap` matrix (0 without proposals)."""
    return overlap.max(axis=1) if overlap.shape[1] else np.zeros(len(overlap))


def recall_from_overlap(overlap: np.ndarray, thresholds: Iterable[float] = THRESHOLDS) -> dict[str, float]:
    """`proposal_recall` from a `truth_overlap` matrix."""
    best = best_overlap(overlap)
    return {f"recall@{t}": float((best >= t).mean()) if len(overlap) else float("nan") for t in thresholds}


@dataclass(frozen=True)
class GroundingCase:
    """One referring expression's outcome: the IoU of the predicted box with the target's (0 when none)."""

    eval_type: str      # "unique" / "multiple" (or "unknown")
    iou: float


def score_case(eval_type: str | None, predicted: OrientedBox | None, target: OrientedBox | None) -> GroundingCase:
    iou = box_iou(predicted, target) if predicted is not None and target is not None else 0.0
    return GroundingCase(eval_type or "unknown", iou)


def grounding_accuracy(cases: Sequence[GroundingCase],
                       thresholds: Iterable[float] = THRESHOLDS) -> dict[str, dict[str, float]]:
    """Acc@t in % and the count, overall and per eval type."""
    groups = {"overall": list(cases)}
    for case in cases:
        groups.setdefault(case.eval_type, []).append(case)
    return {name: {"count": len(members),
                   **{f"acc@{t}": 100.0 * float(np.mean([c.iou >= t for c in members])) if members else
                      float("nan") for t in thresholds}}
            for name, members in groups.items()}
