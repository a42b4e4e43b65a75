"""Boxes rotated about z (yaw), as indoor objects are: containment, footprints, volume and exact 3D IoU."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rotation_z(angle: float) -> np.ndarray:
    """The 3x3 rotation by `angle` radians about z."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True, eq=False)
class OrientedBox:
    """A box rotated by ``yaw`` about z: ``centre`` (3,) and ``size`` (3,) (extents along its own x, y, z)."""

    centre: np.ndarray
    size: np.ndarray
    yaw: float = 0.0

    @property
    def rotation(self) -> np.ndarray:
        """The 3x3 rotation from the box frame to the world."""
        return rotation_z(self.yaw)

    @property
    def bottom(self) -> float:
        return float(self.centre[2] - self.size[2] / 2)

    @property
    def top(self) -> float:
        return float(self.centre[2] + self.size[2] / 2)

    @property
    def volume(self) -> float:
        return float(np.prod(self.size))

    def to_local(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) in the box frame (origin at the centre)."""
        return (np.asarray(points, dtype=np.float64) - self.centre) @ self.rotation

    def contains(self, points: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
        """Which of the world points (N, 3) lie inside the box grown by ``tolerance`` on every side."""
        return np.all(np.abs(self.to_local(points)) <= self.size / 2 + tolerance, axis=1)

    def corners_xy(self) -> np.ndarray:
        """The four footprint corners (4, 2), counter-clockwise."""
        signs = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
        return self.centre[:2] + (signs * self.size[:2] / 2) @ self.rotation[:2, :2].T


def _clip(polygon: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The part of a convex polygon (K, 2) left of the directed edge a -> b (Sutherland-Hodgman, one edge)."""
    if not len(polygon):
        return polygon
    edge = b - a
    side = edge[0] * (polygon[:, 1] - a[1]) - edge[1] * (polygon[:, 0] - a[0])
    out = []
    for i in range(len(polygon)):
        j = (i + 1) % len(polygon)
        if side[i] >= 0:
            out.append(polygon[i])
        if (side[i] >= 0) != (side[j] >= 0):
            t = side[i] / (side[i] - side[j])
            out.append(polygon[i] + t * (polygon[j] - polygon[i]))
    return np.array(out).reshape(-1, 2)


def _area(polygon: np.ndarray) -> float:
    if len(polygon) < 3:
        return 0.0
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(x @ np.roll(y, -1) - y @ np.roll(x, -1)))


def footprint_intersection(a: OrientedBox, b: OrientedBox) -> float:
    """Area of the intersection of two boxes' footprints (convex polygon clipping)."""
    polygon, clip = a.corners_xy(), b.corners_xy()
    for k in range(4):
        polygon = _clip(polygon, clip[k], clip[(k + 1) % 4])
    return _area(polygon)


def box_iou(a: OrientedBox, b: OrientedBox) -> float:
    """Exact 3D intersection over union of two z-rotated boxes (0 when either is empty)."""
    height = min(a.top, b.top) - max(a.bottom, b.bottom)
    if height <= 0:
        return 0.0
    centre_gap = np.linalg.norm(a.centre[:2] - b.centre[:2])
    if centre_gap > 0.5 * (np.linalg.norm(a.size[:2]) + np.linalg.norm(b.size[:2])):
        return 0.0
    intersection = footprint_intersection(a, b) * height
    union = a.volume + b.volume - intersection
    return float(intersection / union) if union > 0 else 0.0


def iou_matrix(a: list[OrientedBox], b: list[OrientedBox]) -> np.ndarray:
    """(len(a), len(b)) box IoUs."""
    return np.array([[box_iou(x, y) for y in b] for x in a], dtype=np.float64).reshape(len(a), len(b))
