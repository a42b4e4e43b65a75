"""Object proposals: label-aware clustering separates touching classes and distant same-class objects, and the
boxes recover the ground-truth objects of rendered rooms."""
from __future__ import annotations

import json

import numpy as np

from ov3d_ros.geometry.boxes import OrientedBox, box_iou, iou_matrix
from ov3d_ros.mapping.instances import ProposalParams, fit_box, propose_instances
from ov3d_ros.mapping.superpoints import SuperpointCache


def _cube(centre, size, spacing=0.02):
    axes = [np.arange(-s / 2, s / 2 + 1e-9, spacing) for s in size]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    on_surface = (np.abs(np.abs(grid) - np.asarray(size) / 2) < spacing / 2).any(axis=1)
    return grid[on_surface] + centre


def test_touching_classes_and_distant_twins_are_separate_instances():
    parts = [_cube((0, 0, 0.25), (0.5, 0.5, 0.5)), _cube((1.5, 0, 0.25), (0.5, 0.5, 0.5)),
             _cube((0, 0, 0.6), (0.3, 0.3, 0.2))]                   # a box on top of the first one
    xyz = np.vstack(parts)
    labels = np.repeat([3, 3, 7], [len(p) for p in parts])
    superpoints = np.repeat([0, 1, 2], [len(p) for p in parts]) * 10 + (xyz[:, 0] > 0.1)  # split the first
    scores = np.eye(8)[labels] * 0.5
    features = np.eye(8)[labels]
    proposals = propose_instances(xyz, labels, superpoints, scores, features, ProposalParams(min_points=10))
    assert sorted(p.label for p in proposals) == [3, 3, 7]
    assert sorted(p.point_count for p in proposals) == sorted(len(p) for p in parts)
    for proposal in proposals:
        assert proposal.class_distribution.argmax() == proposal.label
        assert np.isclose(proposal.class_distribution.sum(), 1.0) and np.isclose(np.linalg.norm(proposal.feature), 1)
    unlabelled = propose_instances(xyz, np.full(len(xyz), -1), superpoints)
    assert unlabelled == []
    rng = np.random.default_rng(0)
    table = rng.normal(size=(20, 8)).astype(np.float16)                 # points sharing rows of a feature table
    rows = rng.integers(0, len(table), len(xyz))
    weights = rng.uniform(1, 3, len(xyz))
    shared = propose_instances(xyz, labels, superpoints, scores, table, ProposalParams(min_points=10), weights, rows)
    spelled = propose_instances(xyz, labels, superpoints, scores, table[rows].astype(np.float64),
                                ProposalParams(min_points=10), weights)
    assert len(shared) == len(spelled) == 3
    for a, b in zip(shared, spelled):
        np.testing.assert_allclose(a.feature, b.feature, atol=1e-5)


def test_fit_box_recovers_a_rotated_box():
    box = OrientedBox(np.array([1.0, 2.0, 0.4]), np.array([1.2, 0.5, 0.8]), 0.7)
    local = _cube((0, 0, 0), box.size)
    xyz = local @ box.rotation.T + box.centre
    assert box_iou(fit_box(xyz), box) > 0.95


def test_proposals_from_ground_truth_labels_recover_the_rendered_objects(tiny_dataset):
    dataset, _ = tiny_dataset
    cache = SuperpointCache(dataset.root / "superpoints")
    for scene in dataset.scenes("train"):
        cloud = dataset.scene_cloud(scene)
        labels = cloud.labels.astype(np.int64)
        labels[labels == dataset.info.ignore_label] = -1
        proposals = propose_instances(cloud.coords, labels, cache.get(scene, cloud.coords, cloud.colors))
        objects = json.loads((dataset.root / "boxes" / f"{scene}.json").read_text())["objects"]
        truth = []   # each object's observed part: its class's points inside its box (the room is seen in part)
        for o in objects:
            box = OrientedBox(np.array(o["centre"]), np.array(o["size"]), o["yaw"])
            inside = box.contains(cloud.coords, tolerance=0.01) & (labels == o["class_index"])
            if o["label"] not in ("wall", "floor") and inside.sum() >= 50:
                truth.append(fit_box(cloud.coords[inside]))
        best = iou_matrix(truth, [p.box for p in proposals]).max(axis=1)
        assert len(truth) >= 5 and (best >= 0.25).mean() >= 0.8, (scene, best)
