"""Training scenes for the student: points, fused 2D features, superpoints; random crops and augmentation."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import gaussian_filter

from ov3d_ros.config import GGSDConfig
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.openscene import read_fused
from ov3d_ros.mapping.superpoints import SuperpointCache


@dataclass
class TrainingScene:
    """One scene in memory: coordinates, colours in [0, 1], fused 2D features in the training space and the class
    each one is nearest to, superpoints and (for monitoring) the ground truth."""

    name: str
    xyz: np.ndarray              # (N, 3) float32
    rgb: np.ndarray              # (N, 3) float32 in [0, 1]
    target: torch.Tensor         # (N, D) float16 unit rows (zeros where unseen)
    seen: torch.Tensor           # (N,) bool
    teacher_class: torch.Tensor  # (N,) int64 nearest class text embedding of the target (-1 where unseen)
    superpoints: np.ndarray      # (N,) int64
    labels: np.ndarray | None    # (N,) ground truth, for evaluation only


def load_training_scene(dataset: Dataset, scene: str, fused: str, superpoints: SuperpointCache,
                        text: torch.Tensor, offset: np.ndarray | None = None) -> TrainingScene:
    """A scene with its fused features as unit rows of the training space, once, so no step redoes it: the
    normalised features, or with `offset` (the mean class embedding of a centred space) unit(unit(f) - offset);
    `text` (C, D) are the class embeddings of that space."""
    cloud = dataset.scene_cloud(scene)
    features = read_fused(dataset.fused_path(fused, scene))
    unit = F.normalize(features.feat.float(), dim=1)
    if offset is not None:
        unit = F.normalize(unit - torch.from_numpy(offset).float(), dim=1)
    dense = torch.zeros((cloud.num_points, features.dim), dtype=torch.float16)
    dense[features.mask_full] = unit.half()
    classes = torch.full((cloud.num_points,), -1, dtype=torch.int64)
    classes[features.mask_full] = (unit @ text.T).argmax(dim=1)
    return TrainingScene(scene, cloud.coords, cloud.colors.astype(np.float32) / 255.0, dense, features.mask_full,
                         classes, superpoints.get(scene, cloud.coords, cloud.colors), cloud.labels)


@dataclass
class Sample:
    """A crop of a scene ready for the student: augmented points and the per-point training signals."""

    xyz: torch.Tensor
    rgb: torch.Tensor
    target: torch.Tensor         # (M, D) float32 unit rows
    seen: torch.Tensor
    teacher_class: torch.Tensor  # (M,) as in TrainingScene
    superpoints: torch.Tensor    # (M,) consecutive ids within the crop
    labels: torch.Tensor | None  # (M,) ground truth, for monitoring only


def make_sample(scene: TrainingScene, config: GGSDConfig, rng: np.random.Generator) -> Sample:
    """A random crop (square of side `crop_m` around a random point) with rotation / scale / elastic jitter."""
    keep = np.arange(len(scene.xyz))
    if config.crop_m > 0:
        centre = scene.xyz[rng.integers(len(scene.xyz)), :2]
        inside = (np.abs(scene.xyz[:, :2] - centre) <= config.crop_m / 2).all(axis=1)
        keep = np.flatnonzero(inside)
    xyz = scene.xyz[keep].astype(np.float64)
    xyz -= xyz.mean(axis=0)
    if config.rotate:
        angle = rng.uniform(0.0, 2.0 * math.pi)
        c, s = math.cos(angle), math.sin(angle)
        xyz = xyz @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]).T
    xyz *= rng.uniform(1.0 - config.scale_range, 1.0 + config.scale_range)
    if config.elastic:
        xyz = elastic_distortion(xyz, rng, granularity=0.2, magnitude=0.4)
        xyz = elastic_distortion(xyz, rng, granularity=0.8, magnitude=1.6)
    index = torch.from_numpy(keep)
    labels = None if scene.labels is None else torch.from_numpy(scene.labels[keep])
    return Sample(torch.from_numpy(xyz.astype(np.float32)), torch.from_numpy(scene.rgb[keep]),
                  scene.target[index].float(), scene.seen[index], scene.teacher_class[index],
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
