"""Scoring the online graph against a scene's ground truth: the semantic map's labels carried onto the ground-truth
points, the offline evaluation of the same checkpoint on the same scene, grounding answers against the targets,
and a top-down picture of a labelled map. ROS-free: `ov3d replay --eval` and `ov3d demo` feed it what they
received."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from ov3d_ros.config import LanguageConfig
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.openscene import SceneCloud
from ov3d_ros.data.scanrefer import ReferringExpression, read_scanrefer
from ov3d_ros.evaluation.grounding import (GroundingCase, best_overlap, instance_boxes, instance_classes,
                                           labelled_objects, recall_from_overlap, score_case, truth_overlap)
from ov3d_ros.evaluation.metrics import ConfusionAccumulator, SegmentationScores, segmentation_scores
from ov3d_ros.evaluation.segmentation import FeatureSource, checkpoint_source, dataset_vocabulary, evaluate_features
from ov3d_ros.geometry.boxes import OrientedBox
from ov3d_ros.language.vocabulary import Vocabulary
from ov3d_ros.mapping.superpoints import SuperpointCache
from ov3d_ros.mapping.scene_maps import TRANSFER_DISTANCE_M, nearest_map_point


@dataclass(frozen=True)
class LabelledMap:
    """What the semantic map held: points (N, 3), label indices (N,) into `labels`, and colours (N, 3) uint8."""

    xyz: np.ndarray
    label: np.ndarray
    rgb: np.ndarray
    labels: tuple[str, ...]


def transfer_labels(labelled: LabelledMap, points: np.ndarray, classes: Sequence[str],
                    max_distance: float = TRANSFER_DISTANCE_M) -> np.ndarray:
    """(P,) class index (into `classes`) of each of `points` from its nearest map point, -1 when none lies within
    `max_distance` or the map's label is not one of `classes`."""
    out = np.full(len(points), -1, np.int64)
    if not len(labelled.xyz):
        return out
    index = {name.lower(): i for i, name in enumerate(classes)}
    to_class = np.array([index.get(name.lower(), -1) for name in labelled.labels], np.int64)
    hit, nearest = nearest_map_point(labelled.xyz, points, max_distance)
    out[hit] = to_class[labelled.label[nearest[hit]]]
    return out


def online_scores(dataset: Dataset, scene: str, labelled: LabelledMap) -> tuple[SegmentationScores, float]:
    """Scores of the online map on the scene's ground-truth points, and the share of points it covered."""
    cloud = dataset.scene_cloud(scene)
    predicted = transfer_labels(labelled, cloud.coords, dataset.classes)
    accumulator = ConfusionAccumulator(len(dataset.classes), dataset.info.ignore_label)
    accumulator.add(predicted, cloud.labels)
    scores = segmentation_scores(accumulator.confusion, list(dataset.classes), dataset.groups())
    return scores, float((predicted >= 0).mean()) if len(predicted) else 0.0


def offline_student(dataset: Dataset, checkpoint: str | Path, language: LanguageConfig
                    ) -> tuple[FeatureSource, Vocabulary]:
    """A checkpoint run over a scene's own point cloud (what `ov3d eval seg` does) and the space to classify its
    features in; the source keeps the last scene's features, so scores and objects come from one run."""
    source, space, _ = checkpoint_source(checkpoint, dataset_vocabulary(dataset, language))
    kept: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def features(scene: str, cloud: SceneCloud) -> tuple[torch.Tensor, torch.Tensor]:
        if scene not in kept:
            kept.clear()
            kept[scene] = source(scene, cloud)
        return kept[scene]
    return features, space


def offline_scores(dataset: Dataset, scene: str, source: FeatureSource, space: Vocabulary) -> SegmentationScores:
    """The scene's segmentation scores from an `offline_student`."""
    return evaluate_features(dataset, [scene], source, space, progress=False).scores


MISS_IOU = 0.25          # a target is missed when no object's box overlaps its box this much
MISS_REASONS = ("unseen", "mislabelled", "split_or_merged")


def proposal_recalls(dataset: Dataset, scene: str, online: Sequence[OrientedBox], source: FeatureSource,
                     space: Vocabulary, labelled: LabelledMap | None = None) -> dict[str, Any]:
    """Recall of the scene's described targets (one per description, as `ov3d eval ground` counts them) by the
    `online` objects' boxes, and by the objects of an `offline_student` on the scene's own cloud. With the online
    `labelled` map, also why the online objects missed the targets the offline ones found (`missed_online`)."""
    cloud = dataset.scene_cloud(scene)
    truth = instance_boxes(cloud)
    ids = [e.object_id for e in scene_descriptions(dataset, scene) if e.object_id in truth]
    targets = [truth[i] for i in ids]
    superpoints = SuperpointCache.of_dataset(dataset.root).get(scene, cloud.coords, cloud.colors)
    offline = labelled_objects(scene, cloud, source, space, superpoints).boxes
    online_overlap, offline_overlap = truth_overlap(targets, list(online)), truth_overlap(targets, offline)
    recalls: dict[str, Any] = {"online": recall_from_overlap(online_overlap),
                               "offline": recall_from_overlap(offline_overlap)}
    if labelled is not None:
        found = {i for i, on, off in zip(ids, best_overlap(online_overlap), best_overlap(offline_overlap))
                 if on < MISS_IOU <= off}
        recalls["missed_online"] = miss_reasons(cloud, sorted(found), labelled, dataset.classes)
    return recalls


def miss_reasons(cloud: SceneCloud, instances: Sequence[int], labelled: LabelledMap,
                 classes: Sequence[str]) -> dict[str, int]:
    """How many of the ground-truth `instances` the online map did not see (fewer than half of their points near a
    map point), mislabelled (most of the seen points carry another class) or labelled right but split or merged
    into boxes that miss theirs."""
    truth_class = instance_classes(cloud)
    reasons = dict.fromkeys(MISS_REASONS, 0)
    members = np.isin(cloud.instance_labels, instances)
    owner = cloud.instance_labels[members]
    transferred = transfer_labels(labelled, cloud.coords[members], classes)     # one search of the map for all
    for instance in instances:
        predicted = transferred[owner == instance]
        seen = predicted[predicted >= 0]
        if len(seen) < 0.5 * len(predicted):
            reasons["unseen"] += 1
        elif (seen == truth_class.get(instance, -1)).mean() < 0.5:
            reasons["mislabelled"] += 1
        else:
            reasons["split_or_merged"] += 1
    return reasons


def answer_box(position: Sequence[float], orientation_xyzw: Sequence[float], size: Sequence[float]) -> OrientedBox:
    """The z-rotated box of a /ground_object candidate (its yaw from the pose's orientation)."""
    yaw = float(Rotation.from_quat(np.asarray(orientation_xyzw, np.float64)).as_euler("zyx")[0])
    return OrientedBox(np.asarray(position, np.float64), np.maximum(np.asarray(size, np.float64), 1e-3), yaw)


def scene_descriptions(dataset: Dataset, scene: str) -> list[ReferringExpression]:
    """The referring expressions of `scene` from the split file it belongs to."""
    split = dataset.info.split_of(scene)
    path = dataset.root / "scanrefer" / f"{split}.json"
    return [e for e in read_scanrefer(path) if e.scene_id == scene] if path.is_file() else []


def grounding_cases(dataset: Dataset, scene: str, expressions: Sequence[ReferringExpression],
                    answers: Sequence[OrientedBox | None]) -> list[GroundingCase]:
    """One case per expression: the IoU of the answer's box with its target's."""
    truth = instance_boxes(dataset.scene_cloud(scene))
    return [score_case(e.eval_type, answer, truth.get(e.object_id)) for e, answer in zip(expressions, answers)]


def plot_top_down(labelled: LabelledMap, path: str | os.PathLike, title: str,
                  boxes: Sequence[tuple[OrientedBox, str]] = ()) -> Path:
    """A top-down picture of a labelled map (points coloured by label, highest on top) with optional boxes and
    their captions, and a legend of the most frequent labels. Labels get colours CIE76-distinct from each other,
    the most distinct going to the most frequent (wall and floor): the picture's palette, not the map topic's."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, Polygon

    from ov3d_ros.files import atomic_path
    from ov3d_ros.mapping.label_colours import distinct_colours

    counts = np.bincount(labelled.label, minlength=len(labelled.labels)) if len(labelled.label) else \
        np.zeros(len(labelled.labels), np.int64)
    by_count = np.argsort(-counts, kind="stable")
    colours = np.empty((len(labelled.labels), 3))
    colours[by_count] = distinct_colours(len(labelled.labels))     # the most frequent labels: the most distinct
    order = np.argsort(labelled.xyz[:, 2]) if len(labelled.xyz) else np.zeros(0, np.int64)
    fig = Figure(figsize=(7, 6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(labelled.xyz[order, 0], labelled.xyz[order, 1], c=colours[labelled.label[order]], s=0.5,
               linewidths=0, rasterized=True)
    for box, caption in boxes:
        ax.add_patch(Polygon(box.corners_xy(), closed=True, fill=False, edgecolor="black", linewidth=1.5))
        ax.annotate(caption, box.centre[:2], fontsize=8, ha="center", va="center",
                    bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8})
    frequent = [i for i in by_count[:12] if counts[i]]
    ax.legend(handles=[Patch(color=colours[i], label=labelled.labels[i]) for i in frequent], loc="upper left",
              bbox_to_anchor=(1.0, 1.0), fontsize=8, title="labels")
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_title(title)
    path = Path(path)
    with atomic_path(path) as temporary:
        fig.savefig(temporary, format="png", dpi=120)
    return path


def segmentation_summary(scores: SegmentationScores) -> dict[str, Any]:
    """mIoU / mAcc and the per-class IoU of the classes present, for a report."""
    data = scores.to_dict()
    return {"miou": data["miou"], "macc": data["macc"], "overall_accuracy": data["overall_accuracy"],
            "per_class_iou": {c["name"]: c["iou"] for c in data["classes"] if c["iou"] is not None}}
