"""Multi-view fusion on a hand-made room with exact depth: visibility, occlusion, frustum, chunking, resumability."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import yaml

from ov3d_ros.config import MultiViewFusionConfig
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.data.openscene import SceneCloud, read_fused, write_scene_pth
from ov3d_ros.data.scannet_export import write_frame
from ov3d_ros.evaluation.bench_fusion import (
    GridTeacher,
    box_faces,
    look_at,
    random_unit_grid,
    reference_fusion,
    render_depth,
    run_fusion_benchmark,
    sample_faces,
    synthetic_room,
)
from ov3d_ros.geometry.camera import PinholeCamera
from ov3d_ros.teachers.base import FeatureGrid, Teacher
from ov3d_ros.teachers.multiview import fuse_dataset, fuse_scene

ROOM = (np.array([0.0, 0.0, 0.0]), np.array([4.0, 4.0, 3.0]))
BOX = (np.array([1.5, 2.0, 0.0]), np.array([2.5, 2.6, 1.0]))
# colour and depth share the pose but not the intrinsics (nor the field of view), as in ScanNet
DEPTH_CAMERA = PinholeCamera(160, 120, 150.0, 150.0, 79.5, 59.5)
COLOR_CAMERA = PinholeCamera(320, 240, 300.0, 290.0, 161.0, 118.0)
POSES = [  # three cameras near the wall y = 0 looking into the room, one looking across it; none sees y = 0
    look_at((1.0, 0.4, 1.4), (1.8, 4.0, 0.5)),
    look_at((2.0, 0.3, 1.6), (2.0, 4.0, 0.6)),
    look_at((3.0, 0.4, 1.4), (2.4, 4.0, 0.5)),
    look_at((3.6, 1.0, 1.5), (0.0, 3.5, 0.5)),
]
CONFIG = MultiViewFusionConfig()
MARGIN_PX = 2.0      # points this close to an image border are ambiguous
MARGIN_M = 0.03      # box inflation/shrinking and depth-gap margin for ambiguous occlusion


def make_frame(k: int, pose: np.ndarray, scene: str = "room") -> PosedFrame:
    color = np.zeros((COLOR_CAMERA.height, COLOR_CAMERA.width, 3), dtype=np.uint8)
    depth = render_depth(DEPTH_CAMERA, pose, ROOM, [BOX])
    return PosedFrame(scene, k, color, COLOR_CAMERA, depth, DEPTH_CAMERA, pose)


FRAMES = [make_frame(k, pose) for k, pose in enumerate(POSES)]


class OneHotTeacher(Teacher):
    """Every pixel of frame k has the feature e_k."""

    name = "one-hot"

    def __init__(self, dim: int = len(POSES)) -> None:
        self.dim = dim
        self.calls = 0

    def features(self, frame: PosedFrame) -> FeatureGrid:
        self.calls += 1
        grid = torch.zeros((self.dim, 3, 4))
        grid[frame.index] = 1.0
        return FeatureGrid(grid, (frame.color_camera.width, frame.color_camera.height))


def linear_grid(width: int, height: int, gw: int, gh: int) -> torch.Tensor:
    """(2, gh, gw): the normalised pixel position (u / width, v / height) of each cell centre."""
    u = (torch.arange(gw) + 0.5) * width / gw - 0.5
    v = (torch.arange(gh) + 0.5) * height / gh - 0.5
    return torch.stack((u[None, :].expand(gh, gw) / width, v[:, None].expand(gh, gw) / height))


class LinearTeacher(Teacher):
    """Features are the normalised colour-pixel position: sampling reveals where a point was projected."""

    name = "linear"
    dim = 2

    def features(self, frame: PosedFrame) -> FeatureGrid:
        camera = frame.color_camera
        return FeatureGrid(linear_grid(camera.width, camera.height, 16, 12), (camera.width, camera.height))


def _frustum(points_cam: np.ndarray, camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray]:
    """(clearly inside, clearly outside) the image of `camera`, with MARGIN_PX of doubt at the borders."""
    uv, z = camera.project(points_cam)
    with np.errstate(invalid="ignore"):
        low, high = -0.5 + MARGIN_PX, np.array([camera.width, camera.height]) - 0.5 - MARGIN_PX
        inside = (z > 0) & (uv >= low).all(1) & (uv <= high).all(1)
        outside = (z <= 0) | (uv < low - 2 * MARGIN_PX).any(1) | (uv > high + 2 * MARGIN_PX).any(1)
    return inside, outside


def _in_box(samples: np.ndarray, margin: float) -> np.ndarray:
    return ((samples > BOX[0] - margin) & (samples < BOX[1] + margin)).all(-1)


def oracle(points: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(visible, ambiguous) per point for one camera, from geometry alone (no depth image).

    A point is visible when it is inside both images and the box, the only possible occluder, is not met along
    the ray farther than the depth tolerance in front of it. The ray is sampled densely; decisions within the
    margins are ambiguous.
    """
    world_to_camera = np.linalg.inv(pose)
    cam = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    in_depth, out_depth = _frustum(cam, DEPTH_CAMERA)
    in_color, out_color = _frustum(cam, COLOR_CAMERA)
    t = np.linspace(0.0, 1.0, 400)
    samples = pose[:3, 3] + t[None, :, None] * (points - pose[:3, 3])[:, None, :]    # (N, S, 3)
    z = cam[:, 2:3]
    gap = (1.0 - t)[None, :] * z                                                      # depth in front of the point
    tolerance = CONFIG.depth_tolerance_m + CONFIG.depth_tolerance_rel * z
    occluded = (_in_box(samples, -MARGIN_M) & (gap > tolerance + MARGIN_M)).any(1)
    clear = ~(_in_box(samples, MARGIN_M) & (gap > tolerance - MARGIN_M)).any(1)
    visible = in_depth & in_color & clear
    hidden = out_depth | out_color | occluded
    return visible, ~(visible | hidden)


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray]:
    """Unambiguous surface points of the room and their (N, views) visibility."""
    rng = np.random.default_rng(3)
    faces = box_faces(ROOM, skip=("top",)) + box_faces(BOX, skip=("bottom",))
    points = sample_faces(faces, 4000, rng).astype(np.float64)
    results = [oracle(points, pose) for pose in POSES]
    ambiguous = np.any([a for _, a in results], axis=0)
    visible = np.stack([v for v, _ in results], axis=1)[~ambiguous]
    return points[~ambiguous].astype(np.float32), visible


def test_scene_exercises_every_case(scene):
    points, visible = scene
    assert len(points) > 2500
    back_wall = points[:, 1] == 0.0
    assert back_wall.sum() > 200 and not visible[back_wall].any()
    # occluded in one view yet seen by another
    assert (visible.any(1) & ~visible.all(1)).sum() > 300
    behind_box = (points[:, 1] > BOX[1][1]) & (points[:, 0] > BOX[0][0]) & (points[:, 0] < BOX[1][0]) \
        & (points[:, 2] < 0.3)
    assert behind_box.sum() > 5 and not visible[behind_box, 1].any()


def test_fusion_averages_exactly_the_views_that_see_each_point(scene):
    points, visible = scene
    fused = fuse_scene(points, FRAMES, OneHotTeacher(), CONFIG)
    seen = visible.any(1)
    np.testing.assert_array_equal(fused.mask_full.numpy(), seen)
    np.testing.assert_array_equal(fused.view_counts.numpy(), visible.sum(1))
    expected = visible[seen] / visible[seen].sum(1, keepdims=True)
    assert fused.feat.dtype == torch.float16
    np.testing.assert_allclose(fused.feat.float().numpy(), expected, atol=1e-3)
    dense = fused.dense(len(points)).numpy()
    assert (dense[~seen] == 0).all()
    # an occluded view contributes nothing: its component is exactly zero
    assert (dense[seen][~visible[seen]] == 0).all()


def test_features_are_sampled_at_the_colour_pixel(scene):
    points, visible = scene
    pose = POSES[1]
    fused = fuse_scene(points, [FRAMES[1]], LinearTeacher(), CONFIG)
    np.testing.assert_array_equal(fused.mask_full.numpy(), visible[:, 1])
    world_to_camera = np.linalg.inv(pose)
    cam = points[visible[:, 1]].astype(np.float64) @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    uv = cam[:, :2] / cam[:, 2:] * [COLOR_CAMERA.fx, COLOR_CAMERA.fy] + [COLOR_CAMERA.cx, COLOR_CAMERA.cy]
    # beyond the outermost cell centres the grid holds its edge value
    centres = linear_grid(COLOR_CAMERA.width, COLOR_CAMERA.height, 16, 12).numpy()
    lo = [centres[0].min() * COLOR_CAMERA.width, centres[1].min() * COLOR_CAMERA.height]
    hi = [centres[0].max() * COLOR_CAMERA.width, centres[1].max() * COLOR_CAMERA.height]
    interior = ((uv > lo) & (uv < hi)).all(1)
    assert interior.sum() > 300
    expected = uv / [COLOR_CAMERA.width, COLOR_CAMERA.height]
    np.testing.assert_allclose(fused.feat.float().numpy()[interior], expected[interior], atol=1e-3)


def test_chunking_and_frame_stride(scene):
    points, _ = scene
    whole = fuse_scene(points, FRAMES, OneHotTeacher(), dataclasses.replace(CONFIG, point_chunk=10**6))
    chunked = fuse_scene(points, iter(FRAMES), OneHotTeacher(), dataclasses.replace(CONFIG, point_chunk=1000))
    assert torch.equal(whole.feat, chunked.feat) and torch.equal(whole.mask_full, chunked.mask_full)
    assert torch.equal(whole.view_counts, chunked.view_counts)
    strided = fuse_scene(points, FRAMES, OneHotTeacher(), dataclasses.replace(CONFIG, frame_stride=2))
    direct = fuse_scene(points, FRAMES[::2], OneHotTeacher(), CONFIG)
    assert torch.equal(strided.feat, direct.feat) and torch.equal(strided.view_counts, direct.view_counts)


def test_no_view_sees_anything():
    points = np.array([[2.0, -5.0, 1.0], [2.0, 0.0, 1.0]], dtype=np.float32)  # outside the room, on the wall y=0
    teacher = OneHotTeacher()
    fused = fuse_scene(points, FRAMES, teacher, CONFIG)
    assert not fused.mask_full.any() and fused.feat.shape == (0, teacher.dim)
    assert teacher.calls == 0  # the teacher is not run for a frame that sees no point


class WrongGridTeacher(OneHotTeacher):
    """Declares `dim` channels over the colour image but gives another channel count or image size."""

    def __init__(self, extra_channels: int, size_divisor: int) -> None:
        super().__init__()
        self.extra_channels, self.size_divisor = extra_channels, size_divisor

    def features(self, frame: PosedFrame) -> FeatureGrid:
        width, height = frame.color_camera.width // self.size_divisor, frame.color_camera.height // self.size_divisor
        return FeatureGrid(torch.zeros((self.dim + self.extra_channels, 2, 2)), (width, height))


@pytest.mark.parametrize("extra_channels, size_divisor", [(1, 1), (0, 2)])
def test_teacher_that_disagrees_is_reported(scene, extra_channels, size_divisor):
    with pytest.raises(ValueError, match="teacher one-hot gave .* expected 4 channels over \\(320, 240\\)"):
        fuse_scene(scene[0], FRAMES, WrongGridTeacher(extra_channels, size_divisor), CONFIG)


def test_feature_grid_samples_a_linear_function_exactly():
    width, height = 640, 480
    grid = linear_grid(width, height, 40, 30)
    features = FeatureGrid(torch.stack((2.0 * grid[0] + 3.0 * grid[1] + 1.0, -grid[1])), (width, height))
    rng = np.random.default_rng(0)
    # between the outermost cell centres: u in [7.5, 631.5], v in [7.5, 471.5]
    uv = rng.uniform([7.5, 7.5], [631.5, 471.5], size=(1000, 2))
    sampled = features.sample(torch.from_numpy(uv).float()).numpy()
    u, v = uv[:, 0] / width, uv[:, 1] / height
    np.testing.assert_allclose(sampled, np.stack((2 * u + 3 * v + 1, -v), axis=1), atol=1e-5)


def test_agrees_with_the_plain_numpy_reference():
    points, frames = synthetic_room(points=5000, frames=6, width=160, height=120, seed=1)
    teacher = GridTeacher(random_unit_grid(16, seed=1))
    fused = fuse_scene(points, frames, teacher, CONFIG)
    feat, mask = reference_fusion(points, frames, teacher, CONFIG)
    assert mask.sum() > 2000
    np.testing.assert_array_equal(fused.mask_full.numpy(), mask)
    np.testing.assert_allclose(fused.feat.float().numpy(), feat, atol=1e-3)


def test_fusion_benchmark_runs_small():
    result = run_fusion_benchmark(points=3000, frames=3, width=160, height=120, dim=8)
    assert result["fused_points"] > 0 and result["max_abs_diff"] < 1e-3
    ours, reference = result["rows"]
    assert ours["name"].startswith("ours") and reference["name"].startswith("reference")
    for row in result["rows"]:
        assert row["points_per_s"] > 0 and row["peak_mb"] >= row["peak_increase_mb"]
    assert result["speedup"] == pytest.approx(reference["seconds"] / ours["seconds"])


def write_dataset(root, splits: dict[str, dict[str, np.ndarray]]) -> Dataset:
    """A dataset of the room: split -> scene -> points, every scene seen by the same four frames."""
    (root / "dataset.yaml").write_text(yaml.safe_dump(
        {"classes": ["wall", "box"], "splits": {split: list(scenes) for split, scenes in splits.items()}}))
    for split, scenes in splits.items():
        for name, points in scenes.items():
            write_scene_pth(root / "3d" / split / f"{name}.pth",
                            SceneCloud(name, points, np.zeros((len(points), 3), np.uint8)))
            for k, pose in enumerate(POSES):
                write_frame(root / "2d" / name, make_frame(k, pose, name))
    return Dataset(root)


def test_fuse_dataset_is_resumable(tmp_path, scene):
    points, visible = scene
    dataset = write_dataset(tmp_path, {"train": {"a": points}, "val": {"b": points[:500]}})
    out = tmp_path / "fused" / "one-hot"
    teacher = OneHotTeacher()
    summary = fuse_dataset(dataset, teacher, out, CONFIG, progress=False)
    assert summary["fused"] == 2 and summary["skipped"] == 0
    stats = summary["scenes"]["a"]
    assert stats["points"] == len(points) and stats["frames"] == len(POSES) and stats["invalid_poses"] == 0
    # depth went through millimetre PNGs: visibility matches the exact-depth oracle
    fused = read_fused(dataset.fused_path("one-hot", "a"))
    np.testing.assert_array_equal(fused.mask_full.numpy(), visible.any(1))
    assert stats["fused_points"] == int(visible.any(1).sum())
    assert stats["mean_views"] == pytest.approx(visible.sum(1)[visible.any(1)].mean())
    calls, mtime = teacher.calls, dataset.fused_path("one-hot", "a").stat().st_mtime_ns

    again = fuse_dataset(dataset, teacher, out, CONFIG, progress=False)
    assert again["fused"] == 0 and again["skipped"] == 2 and teacher.calls == calls
    assert dataset.fused_path("one-hot", "a").stat().st_mtime_ns == mtime

    redone = fuse_dataset(dataset, teacher, out, CONFIG, scenes=["b"], overwrite=True, progress=False)
    assert redone["fused"] == 1 and list(redone["scenes"]) == ["b"] and teacher.calls > calls
    assert sorted(p.name for p in out.iterdir()) == ["a_0.pt", "b_0.pt"]  # no temporary files left
