"""The calibrated noise model of the simulated 2D teacher: exact at noise 0, realistic failure modes above it."""
from __future__ import annotations

import numpy as np
import pytest

from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.geometry.camera import PinholeCamera
from ov3d_ros.teachers.simulated import CalibratedNoiseModel, NoiseParameters, SimulatedTeacher

CAMERA = PinholeCamera(128, 96, 100.0, 100.0, 63.5, 47.5)


def class_space(count: int = 6, dim: int = 16, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    vectors[1] = vectors[0] + 0.3 * vectors[1]      # class 1 looks like class 0
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def frame(index: int = 0, brightness: int = 150) -> PosedFrame:
    """Left half class 0 (instance 1), right half class 2 (instance 2), a small class-4 blob (instance 3)."""
    labels = np.zeros((CAMERA.height, CAMERA.width), np.int64)
    labels[:, 64:] = 2
    labels[10:14, 10:14] = 4
    labels[:4, :] = 255
    instances = np.where(labels == 0, 1, np.where(labels == 2, 2, 3))
    instances[labels == 255] = 0
    color = np.full((CAMERA.height, CAMERA.width, 3), brightness, np.uint8)
    depth = np.full((CAMERA.height, CAMERA.width), 2.0, np.float32)
    return PosedFrame("s", index, color, CAMERA, depth, CAMERA, np.eye(4), labels, instances)


def cell_classes(model: CalibratedNoiseModel, grid) -> np.ndarray:
    features = grid.features.numpy().reshape(model.dim, -1).T
    return (features @ model.embeddings.T).argmax(1).reshape(grid.features.shape[1:])


def test_noise_zero_reproduces_the_labels_on_pure_cells():
    model = CalibratedNoiseModel(class_space(), noise=0.0)
    grid = SimulatedTeacher(model).features(frame())
    assert grid.features.shape == (16, 6, 8) and grid.image_size == (128, 96)
    classes = cell_classes(model, grid)
    assert (classes[1:, :4] == 0).all() and (classes[1:, 4:] == 2).all()
    assert np.allclose(np.linalg.norm(grid.features.numpy(), axis=0), 1.0, atol=1e-5)


def test_deterministic_per_frame_and_different_across_frames():
    model = CalibratedNoiseModel(class_space(), noise=1.0, seed=7)
    a, b = model(frame(0)), model(frame(0))
    assert np.array_equal(a.features.numpy(), b.features.numpy())
    assert not np.array_equal(a.features.numpy(), model(frame(1)).features.numpy())


def test_confusions_go_to_similar_classes_and_persist_across_views():
    params = NoiseParameters(persistent_confusion=1.0, view_confusion=0.0, cell_noise=0.0, swallow_area=0.0)
    model = CalibratedNoiseModel(class_space(), noise=1.0, params=params)
    assert model.confusion[0].argmax() == 1 and model.confusion[0, 0] == 0
    views = [cell_classes(model, model(frame(i))) for i in range(4)]
    for view in views[1:]:
        np.testing.assert_array_equal(view, views[0])    # the same mistake from every view
    assert (views[0][1:, :4] != 0).all()                  # instance 1 (class 0) is always mistaken


def test_small_segments_are_swallowed_and_darkness_adds_noise():
    params = NoiseParameters(persistent_confusion=0.0, view_confusion=0.0, swallow_area=0.01,
                             swallow_probability=1.0, cell_noise=0.0, patch_px=4)
    model = CalibratedNoiseModel(class_space(), noise=1.0, params=params)
    assert 4 not in cell_classes(model, model(frame()))
    noisy = NoiseParameters(persistent_confusion=0.0, view_confusion=0.0, swallow_area=0.0, cell_noise=0.05)
    model = CalibratedNoiseModel(class_space(), noise=1.0, params=noisy)
    clean = CalibratedNoiseModel(class_space(), noise=0.0)(frame()).features.numpy()

    def deviation(brightness: int) -> float:
        return float(np.abs(model(frame(brightness=brightness)).features.numpy() - clean).mean())
    assert deviation(10) > 1.5 * deviation(200)


def test_frame_without_labels_is_refused():
    plain = PosedFrame("s", 0, np.zeros((96, 128, 3), np.uint8), CAMERA, np.ones((96, 128), np.float32), CAMERA,
                       np.eye(4))
    with pytest.raises(ValueError, match="needs ground-truth labels"):
        SimulatedTeacher(CalibratedNoiseModel(class_space())).features(plain)
