"""Object proposals from a labelled point map: label-aware clustering of superpoints into instances.

Each superpoint takes the majority label of its points; two superpoints join when they carry the same label and
touch (points of both within `link_m`, tested on a `link_m` voxel grid); every connected group with at least
`min_points` points is one proposal, with a z-rotated box (yaw from the principal axis of its footprint), its mean
feature, its class distribution (the mean softmax of its points' class scores) and its point count.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ov3d_ros.geometry.boxes import OrientedBox
from ov3d_ros.geometry.voxels import pack_coords, voxel_coords
from ov3d_ros.mapping.superpoints import graph_components


@dataclass(frozen=True)
class ProposalParams:
    link_m: float = 0.05          # superpoints closer than this (voxel grid) are neighbours
    min_points: int = 30          # smaller groups are dropped
    temperature: float = 0.05     # softmax temperature of the class distribution (cosine scores)

    def __post_init__(self) -> None:
        if self.link_m <= 0 or self.min_points < 1 or self.temperature <= 0:
            raise ValueError("link_m and temperature must be > 0 and min_points >= 1")


@dataclass(frozen=True, eq=False)
class Proposal:
    """One instance of the map."""

    box: OrientedBox
    label: int                      # majority class of its points
    class_distribution: np.ndarray  # (C,) mean softmax over the vocabulary
    feature: np.ndarray             # (D,) unit-norm mean feature (empty when no features were given)
    point_count: int
    points: np.ndarray              # (point_count,) indices into the map's points


def fit_box(xyz: np.ndarray) -> OrientedBox:
    """The z-rotated box of points (N, 3): yaw along the principal axis of the footprint, tight extents."""
    xy = xyz[:, :2] - xyz[:, :2].mean(axis=0)
    yaw = 0.0
    if len(xyz) >= 3:
        eigenvalues, eigenvectors = np.linalg.eigh(np.cov(xy.T))
        if eigenvalues[1] > 1.05 * eigenvalues[0]:           # a clear main axis; else keep the map's axes
            major = eigenvectors[:, 1]
            yaw = float(np.arctan2(major[1], major[0]) % np.pi)
    c, s = np.cos(yaw), np.sin(yaw)
    local = xyz[:, :2] @ np.array([[c, -s], [s, c]])
    low = np.r_[local.min(axis=0), xyz[:, 2].min()]
    high = np.r_[local.max(axis=0), xyz[:, 2].max()]
    middle = (low + high) / 2
    centre = np.r_[np.array([[c, -s], [s, c]]) @ middle[:2], middle[2]]
    return OrientedBox(centre, np.maximum(high - low, 1e-3), yaw)


def _superpoint_links(xyz: np.ndarray, superpoints: np.ndarray, link_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a, b) of superpoints with points in the same or neighbouring `link_m` voxels."""
    coords = voxel_coords(xyz, link_m)
    pairs, first = np.unique(np.stack([pack_coords(coords), superpoints], axis=1), axis=0, return_index=True)
    # every (voxel, superpoint) entry within the 26-neighbourhood of another (the same voxel included)
    near = cKDTree(coords[first].astype(np.float64)).query_pairs(r=1.8, output_type="ndarray").reshape(-1, 2)
    a, b = pairs[near[:, 0], 1], pairs[near[:, 1], 1]
    keep = a != b
    return a[keep], b[keep]


def propose_instances(xyz: np.ndarray, labels: np.ndarray, superpoints: np.ndarray,
                      scores: np.ndarray | None = None, features: np.ndarray | None = None,
                      params: ProposalParams = ProposalParams(), weights: np.ndarray | None = None,
                      feature_rows: np.ndarray | None = None) -> list[Proposal]:
    """Proposals of a map: points `xyz` (N, 3), their class `labels` (N,) (-1 = unlabelled, never part of an
    instance), `superpoints` (N,), optional class `scores` (N, C) (cosine similarities) and unit `features`
    (N, D), or (M, D) with `feature_rows` (N,) the row of each point's feature (points that share one: a map's
    cells inside one voxel). `weights` (N,) say how many map points each point stands for (a downsampled
    map): point counts, the size threshold and the means use them. Largest first."""
    xyz, labels, superpoints = np.asarray(xyz, np.float64), np.asarray(labels), np.asarray(superpoints)
    weights = np.ones(len(xyz)) if weights is None else np.asarray(weights, np.float64)
    if not (len(xyz) == len(labels) == len(superpoints)):
        raise ValueError("xyz, labels and superpoints need one row per point")
    labelled = np.flatnonzero(labels >= 0)
    if not len(labelled):
        return []
    _, sp = np.unique(superpoints[labelled], return_inverse=True)
    sp = sp.reshape(-1)
    count = int(sp.max()) + 1
    classes = int(labels.max()) + 1
    votes = np.zeros((count, classes), dtype=np.int64)
    np.add.at(votes, (sp, labels[labelled]), 1)
    sp_label = votes.argmax(axis=1)
    a, b = _superpoint_links(xyz[labelled], sp, params.link_m)
    same = sp_label[a] == sp_label[b]
    group = graph_components(count, a[same], b[same])[sp]
    proposals = []
    for g in np.unique(group):
        members = labelled[group == g]
        weight = weights[members]
        count = int(round(weight.sum()))
        if count < params.min_points:
            continue
        distribution = np.zeros(0) if scores is None else \
            np.average(_softmax(scores[members] / params.temperature), axis=0, weights=weight)
        feature = np.zeros(0) if features is None else _mean_feature(features, feature_rows, members, weight)
        label = int(np.bincount(labels[members], weights=weight).argmax())
        proposals.append(Proposal(fit_box(xyz[members]), label, distribution, feature, count, members))
    proposals.sort(key=lambda p: p.point_count, reverse=True)
    return proposals


def _mean_feature(features: np.ndarray, rows: np.ndarray | None, members: np.ndarray, weight: np.ndarray
                  ) -> np.ndarray:
    """The unit weighted mean of the `members`' features (rows `rows[members]` of `features` when given)."""
    if rows is None:
        mean = np.average(features[members], axis=0, weights=weight)
    else:
        shared, which = np.unique(rows[members], return_inverse=True)
        mean = np.bincount(which.reshape(-1), weight, len(shared)).astype(np.float32) @ \
            features[shared].astype(np.float32)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
