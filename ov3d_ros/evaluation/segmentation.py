"""Scoring per-point predictions of a dataset split, whatever produced them (2D fusion, a student, a file)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ov3d_ros.config import ConfigError, FusionNodeConfig, LanguageConfig
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.openscene import DataError, SceneCloud, read_fused
from ov3d_ros.evaluation.metrics import ConfusionAccumulator, SegmentationScores, segmentation_scores
from ov3d_ros.language.vocabulary import Vocabulary
from ov3d_ros.mapping.scene_maps import TRANSFER_DISTANCE_M, SceneMap, SceneMapCache, nearest_map_point
from ov3d_ros.mapping.semantic_map import SemanticMapSettings
from ov3d_ros.mapping.superpoints import SuperpointCache, superpoint_labels

VOTE_TEMPERATURE = SemanticMapSettings().temperature     # offline votes weigh classes as the semantic map does

# (scene id, its cloud) -> ((N, D) features, (N,) bool: which points have a feature)
FeatureSource = Callable[[str, SceneCloud], tuple[torch.Tensor, torch.Tensor]]
# (scene id, its cloud) -> (N,) int64 class per point, -1 where there is none
LabelSource = Callable[[str, SceneCloud], torch.Tensor]
# (a student, whether to feed colour) -> a FeatureSource running it on each scene
StudentRunner = Callable[[torch.nn.Module, bool], FeatureSource]
# (scene id, its cloud) -> (N,) int64 superpoint id per point of the cloud that was labelled
SuperpointSource = Callable[[str, SceneCloud], np.ndarray]


@dataclass(frozen=True)
class SplitEvaluation:
    """Scores of a split and the share of points that had a prediction (the rest count as misses)."""

    scores: SegmentationScores
    coverage: float


def evaluate_labels(dataset: Dataset, scenes: list[str], labels: LabelSource,
                    progress: bool = True) -> SplitEvaluation:
    """Score per-point labels (-1 = none: a miss) against the ground truth."""
    accumulator = ConfusionAccumulator(len(dataset.classes), dataset.info.ignore_label)
    covered = total = 0
    for scene in tqdm(scenes, desc="scenes", unit="scene", disable=not progress):
        cloud = dataset.scene_cloud(scene)
        if cloud.labels is None:
            raise DataError(f"scene {scene} has no ground-truth labels")
        pred = labels(scene, cloud)
        if pred.shape != (cloud.num_points,):
            raise DataError(f"scene {scene}: {tuple(pred.shape)} labels for {cloud.num_points} points")
        accumulator.add(pred.numpy(), cloud.labels)
        covered += int((pred >= 0).sum())
        total += cloud.num_points
    scores = segmentation_scores(accumulator.confusion, list(dataset.classes), dataset.groups())
    return SplitEvaluation(scores, covered / max(total, 1))


def evaluate_features(dataset: Dataset, scenes: list[str], features: FeatureSource, vocabulary: Vocabulary,
                      progress: bool = True, superpoints: SuperpointSource | None = None) -> SplitEvaluation:
    """Label every point with its nearest class text embedding and score against the ground truth; with
    `superpoints`, labels are voted inside them (`superpoint_labels`, as the semantic map labels its voxels)."""
    def labels(scene: str, cloud: SceneCloud) -> torch.Tensor:
        feats, valid = features(scene, cloud)
        if feats.shape[1] != vocabulary.dim:
            raise DataError(f"scene {scene}: features are {feats.shape[1]}-d but the text space "
                            f"({vocabulary.encoder_name}) is {vocabulary.dim}-d")
        if superpoints is not None:
            scores = vocabulary.logits(torch.nn.functional.normalize(feats.float(), dim=1))
            voted, _ = superpoint_labels(scores.numpy(), superpoints(scene, cloud), VOTE_TEMPERATURE,
                                         valid=valid.numpy())
            return torch.from_numpy(voted)
        pred = torch.full((cloud.num_points,), -1, dtype=torch.int64)
        pred[valid] = vocabulary.classify(feats[valid])[0]
        return pred
    return evaluate_labels(dataset, scenes, labels, progress)


def cloud_superpoints(dataset: Dataset) -> SuperpointSource:
    """The superpoints of each scene's own cloud (cached under the dataset, shared with training)."""
    cache = SuperpointCache.of_dataset(dataset.root)

    def superpoints(scene: str, cloud: SceneCloud) -> np.ndarray:
        return cache.get(scene, cloud.coords, cloud.colors)
    return superpoints


def dataset_vocabulary(dataset: Dataset, language: LanguageConfig) -> Vocabulary:
    """The dataset's class names embedded in the configured text space (cached on disk)."""
    from ov3d_ros.language.vocabulary import configured_vocabulary
    return configured_vocabulary(list(dataset.classes), language)


def fused_source(dataset: Dataset, name: str) -> FeatureSource:
    """A FeatureSource of the dataset's fused 2D features called `name` (2D fusion)."""
    def features(scene: str, cloud: SceneCloud) -> tuple[torch.Tensor, torch.Tensor]:
        fused = read_fused(dataset.fused_path(name, scene))
        return fused.dense(cloud.num_points), fused.mask_full
    return features


def checkpoint_source(checkpoint: str | Path, vocabulary: Vocabulary, with_colour: bool = True,
                      runner: StudentRunner | None = None,
                      ) -> tuple[FeatureSource, Vocabulary, np.ndarray | None]:
    """A FeatureSource running a checkpoint's student (or 'default') through `runner` (default `student_source`:
    on the scenes' own clouds), the space to classify its features in (the vocabulary, centred when the student
    was trained centred) and that text offset. ConfigError when the checkpoint's text space is not the
    vocabulary's."""
    from ov3d_ros.training.checkpoint import load_student_and_offset

    student, text_space, offset = load_student_and_offset(checkpoint)
    if text_space != vocabulary.encoder_name:
        raise ConfigError(f"{checkpoint} was trained in the text space {text_space!r}, but the config's encoder is "
                          f"{vocabulary.encoder_name!r}")
    source = (runner or student_source)(student, with_colour)
    return source, vocabulary if offset is None else vocabulary.centred(offset), offset


class FusedMaps:
    """The maps fused from each scene's RGB-D frames (`SceneMapCache`: fused with `fusion`, projected onto their
    surfaces as the segmentation node does), for scoring a student on what the running graph labels: each
    ground-truth point takes the signals of its nearest map point within TRANSFER_DISTANCE_M (farther points have
    none and count as misses)."""

    def __init__(self, dataset: Dataset, fusion: FusionNodeConfig) -> None:
        self.maps = SceneMapCache(dataset, fusion, workers=torch.get_num_threads())
        self.superpoint_cache = SuperpointCache.of_dataset(dataset.root)

    def _nearest(self, scene: str, cloud: SceneCloud) -> tuple[SceneMap, np.ndarray, np.ndarray]:
        fused = self.maps.get(scene)
        return (fused, *nearest_map_point(fused.xyz, cloud.coords))

    def runner(self, student: torch.nn.Module, with_colour: bool = True) -> FeatureSource:
        """A StudentRunner (for `checkpoint_source`) labelling the fused maps instead of the clean clouds."""
        @torch.no_grad()
        def features(scene: str, cloud: SceneCloud) -> tuple[torch.Tensor, torch.Tensor]:
            fused, hit, nearest = self._nearest(scene, cloud)
            map_features = student.run_on_map(fused.surface, fused.rgb if with_colour else None)
            valid = torch.from_numpy(hit)
            out = torch.zeros((cloud.num_points, map_features.shape[1]), dtype=map_features.dtype)
            out[valid] = map_features[torch.from_numpy(nearest[hit])]
            return out, valid
        return features

    def superpoints(self, scene: str, cloud: SceneCloud) -> np.ndarray:
        """A SuperpointSource: the superpoint of each ground-truth point's nearest map point, the superpoints
        computed on the map's surface points (cached beside the clouds')."""
        fused, _, nearest = self._nearest(scene, cloud)
        return self.superpoint_cache.get(f"{scene}-map", fused.surface, fused.rgb)[nearest]


def student_source(student: torch.nn.Module, with_colour: bool = True) -> FeatureSource:
    """A FeatureSource running a student on whole scenes, fed the inputs it takes (`Student.run_on_map`); with
    `with_colour` False the scenes' colours are withheld, as from a LiDAR-only map."""
    @torch.no_grad()
    def features(scene: str, cloud: SceneCloud) -> tuple[torch.Tensor, torch.Tensor]:
        return (student.run_on_map(cloud.coords, cloud.colors if with_colour else None),
                torch.ones(cloud.num_points, dtype=torch.bool))
    return features
