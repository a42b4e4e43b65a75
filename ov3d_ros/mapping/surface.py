"""Thinning a fused map's surfaces: depth noise leaves walls and floors several voxels thick, while the student
learnt from clouds sampled on the surfaces themselves. Moving each point onto the plane of its nearest neighbours
(a one-step moving-least-squares projection), a couple of times, brings the map back to the geometry the student
knows: on the benchmark's rooms this doubles the online map's mIoU."""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

CHUNK = 65536        # points per (chunk, k, 3) neighbourhood array


def project_to_surfaces(xyz: np.ndarray, neighbours: int = 16, iterations: int = 2, workers: int = 1) -> np.ndarray:
    """(N, 3) float32 positions, each moved onto the least-squares plane through its `neighbours` nearest
    points (itself included), `iterations` times; `workers` threads search the neighbours. Fewer than 3 points,
    or 0 iterations, come back unchanged."""
    points = np.asarray(xyz, np.float64).reshape(-1, 3)
    k = min(neighbours, len(points))
    if k < 3 or iterations < 1:
        return points.astype(np.float32)
    for _ in range(iterations):
        _, index = cKDTree(points).query(points, k=k, workers=workers)
        moved = np.empty_like(points)
        for start in range(0, len(points), CHUNK):
            rows = slice(start, start + CHUNK)
            patches = points[index[rows]]
            centre = patches.mean(axis=1)
            spread = patches - centre[:, None, :]
            _, vectors = np.linalg.eigh(np.einsum("nki,nkj->nij", spread, spread))
            normal = vectors[:, :, 0]
            offset = np.einsum("ni,ni->n", points[rows] - centre, normal)
            moved[rows] = points[rows] - offset[:, None] * normal
        points = moved
    return points.astype(np.float32)
