"""The objects a grounder sees: a scene's proposals as arrays, and the geometry its relations need.

Relations such as "left of" are egocentric, so geometry is expressed in a *view frame*: forward, right and up of a
viewer standing at the room's door looking in (the synthetic descriptions, like most human ones, are written that
way), or of a caller-given viewpoint. `view_frame` finds the door among the objects; without one the map's x axis
is forward.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ov3d_ros.files import atomic_path
from ov3d_ros.geometry.boxes import OrientedBox
from ov3d_ros.mapping.instances import Proposal, propose_instances

ABSOLUTE_FEATURES = 7     # log size (3), bottom and top above the floor, log point count, log volume
PAIR_FEATURES = 11        # view-frame offset (3), distance, footprint gap, log size ratio (3), two vertical gaps, 1


@dataclass(frozen=True, eq=False)
class SceneObjects:
    """P objects of one map: boxes (centre, size, yaw), class distributions (P, C), unit features (P, D), mean
    colours in [0, 1] (P, 3), point counts and majority labels."""

    centres: np.ndarray
    sizes: np.ndarray
    yaws: np.ndarray
    distributions: np.ndarray
    features: np.ndarray
    colours: np.ndarray
    counts: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.centres)
        shapes = {"centres": (count, 3), "sizes": (count, 3), "yaws": (count,), "colours": (count, 3),
                  "counts": (count,), "labels": (count,)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"SceneObjects.{name}: shape {getattr(self, name).shape}, expected {shape}")
        for name in ("distributions", "features"):
            if getattr(self, name).ndim != 2 or len(getattr(self, name)) != count:
                raise ValueError(f"SceneObjects.{name}: expected ({count}, *), got {getattr(self, name).shape}")

    def __len__(self) -> int:
        return len(self.centres)

    @property
    def boxes(self) -> list[OrientedBox]:
        return [OrientedBox(c, s, float(y)) for c, s, y in zip(self.centres, self.sizes, self.yaws)]

    @classmethod
    def empty(cls, classes: int, dim: int) -> SceneObjects:
        return cls(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros((0, classes)), np.zeros((0, dim)),
                   np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0, np.int64))

    @classmethod
    def from_proposals(cls, proposals: Sequence[Proposal], colours: np.ndarray, classes: int,
                       dim: int) -> SceneObjects:
        """Objects of proposals over a map whose points have RGB `colours` (N, 3) uint8."""
        if not proposals:
            return cls.empty(classes, dim)
        return cls(np.stack([p.box.centre for p in proposals]), np.stack([p.box.size for p in proposals]),
                   np.array([p.box.yaw for p in proposals]), np.stack([p.class_distribution for p in proposals]),
                   np.stack([p.feature for p in proposals]),
                   np.stack([colours[p.points].mean(axis=0) / 255.0 for p in proposals]),
                   np.array([p.point_count for p in proposals], np.int64), np.array([p.label for p in proposals]))

    def save(self, path: str | Path) -> None:
        """Write as .npz, atomically."""
        with atomic_path(path) as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, **{name: getattr(self, name) for name in self.__dataclass_fields__})

    @classmethod
    def load(cls, path: str | Path) -> SceneObjects:
        with np.load(path, allow_pickle=False) as data:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ViewFrame:
    """A viewer's position on the floor (2,) and unit forward direction (2,)."""

    origin: np.ndarray
    forward: np.ndarray

    @property
    def right(self) -> np.ndarray:
        return np.array([self.forward[1], -self.forward[0]])


def view_frame(objects: SceneObjects, door_label: int | None) -> ViewFrame:
    """Stand in the largest door (by points) looking at the objects' centroid; without a door, at the centroid
    looking along the map's x axis."""
    centroid = objects.centres[:, :2].mean(axis=0) if len(objects) else np.zeros(2)
    doors = np.flatnonzero(objects.labels == door_label) if door_label is not None else np.zeros(0, np.int64)
    if len(doors):
        door = objects.centres[doors[np.argmax(objects.counts[doors])], :2]
        towards = centroid - door
        if np.linalg.norm(towards) > 1e-6:
            return ViewFrame(door, towards / np.linalg.norm(towards))
    return ViewFrame(centroid, np.array([1.0, 0.0]))


def absolute_geometry(objects: SceneObjects) -> np.ndarray:
    """(P, ABSOLUTE_FEATURES) per-object shape and height features."""
    if not len(objects):
        return np.zeros((0, ABSOLUTE_FEATURES), np.float32)
    floor = float((objects.centres[:, 2] - objects.sizes[:, 2] / 2).min())
    bottom = objects.centres[:, 2] - objects.sizes[:, 2] / 2 - floor
    top = bottom + objects.sizes[:, 2]
    log_size = np.log(np.maximum(objects.sizes, 1e-3))
    return np.column_stack([log_size, bottom, top, np.log1p(objects.counts) / 5.0,
                            log_size.sum(axis=1) / 3.0]).astype(np.float32)


def pair_geometry(objects: SceneObjects, view: ViewFrame) -> np.ndarray:
    """(P, P, PAIR_FEATURES): object j as seen from object i, in the view frame: offset forward / right / up,
    horizontal distance, gap between the footprints' bounding circles, log size ratio, the gap of i's bottom
    over j's top ("on") and of j's bottom over i's top, and a constant 1."""
    centres, sizes = objects.centres, objects.sizes
    offset = centres[None, :, :] - centres[:, None, :]
    forward = offset[..., :2] @ view.forward
    right = offset[..., :2] @ view.right
    distance = np.hypot(offset[..., 0], offset[..., 1])
    radius = 0.5 * np.hypot(sizes[:, 0], sizes[:, 1])
    gap = distance - radius[:, None] - radius[None, :]
    ratio = np.log(np.maximum(sizes[None, :, :], 1e-3)) - np.log(np.maximum(sizes[:, None, :], 1e-3))
    bottom, top = centres[:, 2] - sizes[:, 2] / 2, centres[:, 2] + sizes[:, 2] / 2
    on = bottom[:, None] - top[None, :]
    under = bottom[None, :] - top[:, None]
    ones = np.ones_like(distance)
    return np.concatenate([np.stack([forward, right, offset[..., 2], distance, gap], axis=-1), ratio,
                           np.stack([on, under, ones], axis=-1)], axis=-1).astype(np.float32)


@dataclass(frozen=True)
class Neighbourhoods:
    """Each object's neighbourhood: itself first, then its `size` nearest objects by footprint gap. index
    (P, K) into the objects, pairs (P, K, PAIR_FEATURES) relative to the object, padding (P, K) True where a
    scene has fewer than K objects."""

    index: np.ndarray
    pairs: np.ndarray
    padding: np.ndarray


def neighbourhoods(objects: SceneObjects, view: ViewFrame, size: int) -> Neighbourhoods:
    count, width = len(objects), size + 1
    if not count:
        return Neighbourhoods(np.zeros((0, width), np.int64), np.zeros((0, width, PAIR_FEATURES), np.float32),
                              np.zeros((0, width), bool))
    pairs = pair_geometry(objects, view)
    gap = pairs[..., 4].copy()
    np.fill_diagonal(gap, -np.inf)
    order = np.argsort(gap, axis=1, kind="stable")[:, :width]
    index = np.zeros((count, width), np.int64)
    index[:, :order.shape[1]] = order
    padding = np.ones((count, width), bool)
    padding[:, :order.shape[1]] = False
    rows = np.arange(count)[:, None]
    gathered = pairs[rows, index] * ~padding[..., None]
    return Neighbourhoods(index, gathered.astype(np.float32), padding)


def object_inputs(objects: SceneObjects) -> np.ndarray:
    """(P, D + 3 + ABSOLUTE_FEATURES) float32 inputs of the grounding networks: feature, colour, shape."""
    return np.concatenate([objects.features, objects.colours, absolute_geometry(objects)], axis=1).astype(np.float32)


def map_objects(xyz: np.ndarray, colours: np.ndarray, features: np.ndarray, valid: np.ndarray,
                class_scores: np.ndarray, superpoints: np.ndarray, weights: np.ndarray | None = None,
                feature_rows: np.ndarray | None = None) -> SceneObjects:
    """The objects of a labelled map: points (N, 3) with RGB `colours` (N, 3) uint8, unit `features` (N, D) (or
    (M, D) and each point's row `feature_rows`), `valid` (N,) bool (points with a feature), cosine `class_scores`
    (N, C) and `superpoints` (N,); `weights` (N,) when each point stands for several map points (see
    `propose_instances`)."""
    labels = np.where(valid, class_scores.argmax(axis=1), -1)
    proposals = propose_instances(xyz, labels, superpoints, class_scores, features, weights=weights,
                                  feature_rows=feature_rows)
    return SceneObjects.from_proposals(proposals, colours, class_scores.shape[1], features.shape[1])
