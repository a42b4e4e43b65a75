"""Training scenes for the student: points, fused 2D features, superpoints; random crops and augmentation."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from ov3d_ros.config import GGSDConfig
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.openscene import read_fused
from ov3d_ros.language.vocabulary import Vocabulary
from ov3d_ros.mapping.scene_maps import TRANSFER_DISTANCE_M, SceneMap
from ov3d_ros.mapping.superpoints import SuperpointCache
from ov3d_ros.models.inputs import floor_height, point_inputs


@dataclass
class TrainingScene:
    """One scene in memory: coordinates, colours in [0, 1], fused 2D features in the training space and the class
    each one is nearest to, superpoints, scene-level labels and (for monitoring) the ground truth."""

    name: str
    xyz: np.ndarray              # (N, 3) float32
    rgb: np.ndarray              # (N, 3) float32 in [0, 1]
    target: torch.Tensor | None  # (N, D) float16 unit rows (zeros where unseen); None when no loss needs them
    seen: torch.Tensor           # (N,) bool
    teacher_class: torch.Tensor  # (N,) int64 nearest class text embedding of the target (-1 where unseen)
    superpoints: np.ndarray      # (N,) int64
    labels: np.ndarray | None    # (N,) ground truth (monitoring, and the fully supervised upper bound)
    present: torch.Tensor | None = None  # (C,) bool scene-level labels, when known
    floor_z: float = 0.0         # the scene's floor (`floor_height`), for the height input
    fused_map: TrainingScene | None = None  # the same room as the fusion node maps it (`with_fused_map`)


def training_space(vocabulary: Vocabulary, centred: bool) -> tuple[Vocabulary, np.ndarray | None]:
    """The text space a student is trained and classified in: the vocabulary, or (centred) the vocabulary relative
    to the mean of its class embeddings; and that mean (None when not centred)."""
    if not centred:
        return vocabulary, None
    offset = vocabulary.label_embeddings.mean(axis=0)
    return vocabulary.centred(offset), offset


def space_rows(features: torch.Tensor, offset: np.ndarray | None = None) -> torch.Tensor:
    """(M, D) fused features as unit float32 rows of the training space: unit(f), or unit(unit(f) - offset)."""
    unit = F.normalize(features.float(), dim=1)
    return unit if offset is None else F.normalize(unit - torch.from_numpy(offset).float(), dim=1)


TargetMap = Callable[[torch.Tensor], torch.Tensor]  # (M, D) unit rows -> (M, D) unit rows (e.g. an adapter)


def load_training_scene(dataset: Dataset, scene: str, fused: str, superpoints: SuperpointCache,
                        text: torch.Tensor, offset: np.ndarray | None = None, target_map: TargetMap | None = None,
                        present: np.ndarray | None = None, keep_targets: bool = True) -> TrainingScene:
    """A scene with its fused features as unit rows of the training space (`space_rows`), once, so no step redoes
    it; `text` (C, D) are the class embeddings of that space. `target_map` replaces the rows by its output (the
    3DSS-VLG adapter's embeddings); `present` (C,) are the scene-level labels, when known. Without `keep_targets`
    only the teacher's classes are kept (the vocabulary loss needs no (N, D) rows)."""
    cloud = dataset.scene_cloud(scene)
    features = read_fused(dataset.fused_path(fused, scene))
    unit = space_rows(features.feat, offset)
    if target_map is not None:
        unit = target_map(unit)
    dense = None
    if keep_targets:
        dense = torch.zeros((cloud.num_points, features.dim), dtype=torch.float16)
        dense[features.mask_full] = unit.half()
    classes = torch.full((cloud.num_points,), -1, dtype=torch.int64)
    classes[features.mask_full] = (unit @ text.T).argmax(dim=1)
    return TrainingScene(scene, cloud.coords, cloud.colors.astype(np.float32) / 255.0, dense, features.mask_full,
                         classes, superpoints.get(scene, cloud.coords, cloud.colors), cloud.labels,
                         None if present is None else torch.from_numpy(np.asarray(present, dtype=bool)),
                         floor_height(cloud.coords[:, 2]))


def with_fused_map(scene: TrainingScene, fused: SceneMap, ignore_label: int) -> TrainingScene:
    """`scene` with its fused RGB-D map attached as `fused_map`: the map's surface points and colours, each taking
    the training signals (target, teacher class, superpoint, ground truth) of the nearest point of the scene's
    cloud; map points with no cloud point within TRANSFER_DISTANCE_M count as unseen (ground truth: the ignore
    label) but keep the nearest point's superpoint."""
    distance, nearest = cKDTree(scene.xyz).query(fused.surface)
    near = distance <= TRANSFER_DISTANCE_M
    index = torch.from_numpy(nearest)
    hit = torch.from_numpy(near)
    labels = None
    if scene.labels is not None:
        labels = np.where(near, scene.labels[nearest], ignore_label).astype(scene.labels.dtype)
    twin = TrainingScene(f"{scene.name} (fused map)", fused.surface, fused.rgb.astype(np.float32) / 255.0,
                         None if scene.target is None else scene.target[index] * hit[:, None].to(scene.target.dtype),
                         scene.seen[index] & hit, torch.where(hit, scene.teacher_class[index], -1),
                         consecutive_ids(scene.superpoints[nearest]), labels, scene.present,
                         floor_height(fused.surface[:, 2]))
    return dataclasses.replace(scene, fused_map=twin)


@dataclass
class Sample:
    """A crop of a scene ready for the student: augmented points and the per-point training signals."""

    xyz: torch.Tensor
    inputs: torch.Tensor | None  # (M, channels - 1) the student's per-point inputs (`point_inputs`)
    target: torch.Tensor | None  # (M, D) float32 unit rows (None when the scene keeps no targets)
    seen: torch.Tensor
    teacher_class: torch.Tensor  # (M,) as in TrainingScene
    superpoints: torch.Tensor    # (M,) consecutive ids within the crop (within the batch when collated)
    labels: torch.Tensor | None  # (M,) ground truth (monitoring, and the fully supervised upper bound)
    batch: torch.Tensor | None = None    # (M,) which crop of a collated batch each point is from


def collate(samples: list[Sample]) -> Sample:
    """Several crops as one batch for one forward pass: points concatenated, `batch` telling them apart,
    superpoint ids made distinct across crops."""
    if len(samples) == 1:
        return samples[0]
    offsets = np.cumsum([0] + [int(s.superpoints.max()) + 1 if len(s.superpoints) else 0 for s in samples[:-1]])
    labels = None if any(s.labels is None for s in samples) else torch.cat([s.labels for s in samples])
    inputs = None if samples[0].inputs is None else torch.cat([s.inputs for s in samples])
    target = None if samples[0].target is None else torch.cat([s.target for s in samples])
    return Sample(torch.cat([s.xyz for s in samples]), inputs, target,
                  torch.cat([s.seen for s in samples]), torch.cat([s.teacher_class for s in samples]),
                  torch.cat([s.superpoints + int(o) for s, o in zip(samples, offsets)]), labels,
                  torch.cat([torch.full((len(s.xyz),), i, dtype=torch.int64) for i, s in enumerate(samples)]))


def make_sample(scene: TrainingScene, config: GGSDConfig, rng: np.random.Generator,
                inputs: tuple[str, ...] = ()) -> Sample:
    """A sample of the scene's fused map (a share `fused_map_share` of the samples of scenes that have one) or of
    its clean cloud: a random crop (square of side `crop_m` around a random point, or the whole scene) with point
    noise (`jitter_m`), rotation / mirror / scale / elastic jitter, and the student's `inputs` built from the noisy
    points before the crop is moved (height is above the scene's floor); colour is withheld from a share
    `colour_dropout` of the samples."""
    if scene.fused_map is not None and config.fused_map_share > 0 and rng.random() < config.fused_map_share:
        scene = scene.fused_map
    keep = np.arange(len(scene.xyz))
    if config.crop_m > 0:
        centre = scene.xyz[rng.integers(len(scene.xyz)), :2]
        inside = (np.abs(scene.xyz[:, :2] - centre) <= config.crop_m / 2).all(axis=1)
        keep = np.flatnonzero(inside)
    points = scene.xyz[keep].astype(np.float64)
    if config.jitter_m > 0:
        points += rng.normal(0.0, rng.uniform(0.0, config.jitter_m), points.shape)
    xyz = points - points.mean(axis=0)
    if config.rotate:
        angle = rng.uniform(0.0, 2.0 * math.pi)
        c, s = math.cos(angle), math.sin(angle)
        xyz = xyz @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T
    if config.flip and rng.random() < 0.5:
        xyz[:, 0] = -xyz[:, 0]
    xyz *= rng.uniform(1.0 - config.scale_range, 1.0 + config.scale_range)
    if config.elastic:
        xyz = elastic_distortion(xyz, rng, granularity=0.2, magnitude=0.4)
        xyz = elastic_distortion(xyz, rng, granularity=0.8, magnitude=1.6)
    index = torch.from_numpy(keep)
    labels = None if scene.labels is None else torch.from_numpy(scene.labels[keep])
    dropped = "colour" in inputs and config.colour_dropout > 0 and rng.random() < config.colour_dropout
    colour = None if dropped else scene.rgb[keep]
    return Sample(torch.from_numpy(xyz.astype(np.float32)),
                  point_inputs(inputs, points, colour, scene.floor_z),
                  None if scene.target is None else scene.target[index].float(), scene.seen[index],
                  scene.teacher_class[index],
                  torch.from_numpy(consecutive_ids(scene.superpoints[keep])), labels)


def consecutive_ids(ids: np.ndarray) -> np.ndarray:
    """Non-negative ids renumbered 0..K-1 in increasing order (np.unique's inverse, by a lookup, not a sort)."""
    if not len(ids):
        return ids.astype(np.int64)
    present = np.zeros(int(ids.max()) + 1, dtype=bool)
    present[ids] = True
    return (np.cumsum(present) - 1)[ids].astype(np.int64)


def elastic_distortion(xyz: np.ndarray, rng: np.random.Generator, granularity: float,
                       magnitude: float) -> np.ndarray:
    """Smooth random displacement field (OpenScene / MinkowskiEngine style), in units of `granularity` metres."""
    low = xyz.min(axis=0) - granularity
    shape = ((xyz.max(axis=0) - low) // granularity).astype(int) + 3
    axes = [low[i] + granularity * np.arange(shape[i]) for i in range(3)]
    displacement = np.stack([RegularGridInterpolator(axes, gaussian_filter(rng.standard_normal(shape), sigma=1.0,
                                                                           mode="constant"))(xyz)
                             for _ in range(3)], axis=1)
    return xyz + displacement * magnitude * granularity
