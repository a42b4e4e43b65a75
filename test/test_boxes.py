"""Oriented-box IoU against a brute-force count of grid points inside both boxes."""
from __future__ import annotations

import numpy as np
import pytest

from ov3d_ros.geometry.boxes import OrientedBox, box_iou, iou_matrix


def brute_force_iou(a: OrientedBox, b: OrientedBox, step: float = 0.01) -> float:
    corners = np.vstack([a.corners_xy(), b.corners_xy()])
    low = np.r_[corners.min(0), min(a.bottom, b.bottom)]
    high = np.r_[corners.max(0), max(a.top, b.top)]
    axes = [np.arange(lo + step / 2, hi, step) for lo, hi in zip(low, high)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    in_a, in_b = a.contains(grid), b.contains(grid)
    return float((in_a & in_b).sum() / max((in_a | in_b).sum(), 1))


@pytest.mark.parametrize("seed", range(6))
def test_iou_matches_brute_force_on_random_rotated_boxes(seed):
    rng = np.random.default_rng(seed)
    a = OrientedBox(rng.uniform(-0.2, 0.2, 3), rng.uniform(0.3, 0.8, 3), rng.uniform(0, np.pi))
    b = OrientedBox(a.centre + rng.uniform(-0.3, 0.3, 3), rng.uniform(0.3, 0.8, 3), rng.uniform(0, np.pi))
    assert box_iou(a, b) == pytest.approx(brute_force_iou(a, b), abs=0.02)
    assert box_iou(a, b) == pytest.approx(box_iou(b, a), abs=1e-12)


def test_iou_special_cases():
    a = OrientedBox(np.zeros(3), np.ones(3), 0.3)
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, OrientedBox(np.array([5.0, 0, 0]), np.ones(3))) == 0.0
    assert box_iou(a, OrientedBox(np.array([0, 0, 2.0]), np.ones(3), 0.3)) == 0.0       # stacked, not touching
    half = OrientedBox(np.array([0.5, 0, 0]), np.ones(3))
    assert box_iou(OrientedBox(np.zeros(3), np.ones(3)), half) == pytest.approx(1 / 3)
    # a quarter turn of a square box is the same box
    assert box_iou(OrientedBox(np.zeros(3), np.array([1, 1, 1.0])),
                   OrientedBox(np.zeros(3), np.array([1, 1, 1.0]), np.pi / 2)) == pytest.approx(1.0)
    assert iou_matrix([a], []).shape == (1, 0)
