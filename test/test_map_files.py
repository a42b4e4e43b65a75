"""The voxel map's colour (camera colour only, colour counts), map snapshots (atomic .npz), keyframe selection, and
the ObjectMap message the grounding node reads."""
from __future__ import annotations

import numpy as np
import pytest

from ov3d_ros.geometry.transforms import RigidTransform
from ov3d_ros.geometry.voxels import pack_coords
from ov3d_ros.grounding.objects import SceneObjects
from ov3d_ros.mapping.keyframes import KeyframePolicy, KeyframeSelector
from ov3d_ros.mapping.sensor_points import LIDAR_GREY, PointBatch, lidar_points
from ov3d_ros.mapping.voxel_map import MapFileError, VoxelMap
from ov3d_ros.messages import MessageError, pack_rgb, unpack_rgb
from ov3d_ros.messages.object_map import ObjectMapContent, msg_to_object_map, object_map_to_msg


def filled_map(seed: int = 0, voxels: int = 1000, lidar: bool = False) -> VoxelMap:
    """Three coloured readings of random points in a 1 m cube, then (`lidar`) an uncoloured one."""
    rng = np.random.default_rng(seed)
    vm = VoxelMap(0.02, voxels)
    for stamp in range(1, 4):
        xyz = rng.uniform(0, 1, (500, 3)).astype(np.float32)
        vm.integrate(PointBatch(xyz, rng.integers(0, 255, (500, 3), dtype=np.uint8), stamp * 10**9, "rgbd"))
    if lidar:
        xyz = rng.uniform(0, 1, (500, 3)).astype(np.float32)
        vm.integrate(PointBatch(xyz, np.full((500, 3), LIDAR_GREY, np.uint8), 4 * 10**9, "lidar", coloured=False))
    return vm


def lidar_cloud(xyz: np.ndarray) -> np.ndarray:
    """A structured LiDAR cloud with x, y, z and no colour field."""
    cloud = np.empty(len(xyz), np.dtype([("x", np.float32), ("y", np.float32), ("z", np.float32)]))
    cloud["x"], cloud["y"], cloud["z"] = xyz.T
    return cloud


def test_uncoloured_lidar_leaves_the_camera_colour_and_is_counted_apart():
    vm = VoxelMap(0.1, 100)
    shared = np.array([[0.01, 0.01, 0.01], [0.02, 0.03, 0.04]], np.float32)     # one voxel at the origin
    red = np.array([[200, 10, 10], [220, 30, 10]], np.uint8)
    vm.integrate(PointBatch(shared, red, 10**9, "rgbd"))
    batch = lidar_points(lidar_cloud(np.concatenate([shared, [[0.55, 0.05, 0.05]]])), RigidTransform.identity(),
                         2 * 10**9, 0.0, 10.0)
    assert not batch.coloured and np.all(batch.rgb == LIDAR_GREY)
    vm.integrate(batch)
    points = vm.to_points()
    assert points["colour_count"].dtype == np.uint32
    points = points[np.argsort(points["x"])]
    camera, lidar_only = points
    assert unpack_rgb(points["rgb"]).tolist() == [[210, 20, 10], [LIDAR_GREY] * 3]
    assert (camera["count"], camera["colour_count"], camera["observations"]) == (4, 2, 2)  # grey not blended in
    assert (lidar_only["count"], lidar_only["colour_count"]) == (1, 0)


def test_lidar_with_an_rgb_field_is_coloured():
    cloud = np.zeros(2, np.dtype([("x", np.float32), ("y", np.float32), ("z", np.float32), ("rgb", np.float32)]))
    cloud["x"], cloud["rgb"] = [1.0, 2.0], pack_rgb(np.array([[1, 2, 3], [4, 5, 6]], np.uint8))
    batch = lidar_points(cloud, RigidTransform.identity(), 0, 0.0, 10.0)
    assert batch.coloured and batch.rgb.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_snapshot_round_trip(tmp_path):
    vm = filled_map(lidar=True)
    before = vm.to_points()
    assert np.any(before["colour_count"] < before["count"]) and np.any(before["colour_count"] == 0)
    assert vm.save(tmp_path / "map.npz") == len(vm)
    restored = VoxelMap(0.02, 1000)
    assert restored.load(tmp_path / "map.npz") == len(vm)
    assert np.array_equal(before, restored.to_points())
    assert restored.newest_stamp_ns == 4 * 10**9 and restored.evicted == vm.evicted
    assert not list(tmp_path.glob("*.partial"))               # the atomic write left nothing behind


def test_a_snapshot_without_colour_counts_loads_as_all_coloured(tmp_path):
    vm = filled_map()
    vm.save(tmp_path / "map.npz")
    with np.load(tmp_path / "map.npz") as data:
        old_format = {name: data[name] for name in data.files if name != "colour_count"}
    np.savez(tmp_path / "old.npz", **old_format)
    restored = VoxelMap(0.02, 1000)
    assert restored.load(tmp_path / "old.npz") == len(vm)
    points = restored.to_points()
    assert np.array_equal(points["colour_count"], points["count"]) and np.array_equal(points, vm.to_points())


def test_bad_snapshots_leave_the_map_unchanged(tmp_path):
    vm = filled_map()
    before = vm.to_points()
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    for path, reason in [(tmp_path / "missing.npz", "not a readable map"), (tmp_path / "junk.npz", "not a readable")]:
        with pytest.raises(MapFileError, match=reason):
            vm.load(path)
    VoxelMap(0.05, 10).save(tmp_path / "coarse.npz")
    with pytest.raises(MapFileError, match="5.0 cm voxels"):
        vm.load(tmp_path / "coarse.npz")
    assert np.array_equal(vm.to_points(), before)


def test_a_snapshot_over_budget_is_trimmed(tmp_path):
    big = filled_map(voxels=100000, lidar=True)
    big.save(tmp_path / "big.npz")
    small = VoxelMap(0.02, 200)
    assert small.load(tmp_path / "big.npz") == 200 and small.evicted > 0
    kept = np.searchsorted(pack_coords(big.voxel_coords()), pack_coords(small.voxel_coords()))
    assert np.array_equal(small.to_points(), big.to_points()[kept])        # every per-voxel array kept aligned


def test_keyframes_by_motion_turn_and_time():
    selector = KeyframeSelector(KeyframePolicy(translation_m=0.1, rotation_deg=10.0, max_interval_s=1.0))
    here = RigidTransform.identity()
    assert selector.due("cam", here, 0)
    selector.mark("cam", here, 0)
    assert not selector.due("cam", RigidTransform.from_euler([0.05, 0, 0], 0, 0, 0), 10**8)
    assert selector.due("cam", RigidTransform.from_euler([0.2, 0, 0], 0, 0, 0), 10**8)
    assert selector.due("cam", RigidTransform.from_euler([0, 0, 0], 0, 0, np.radians(15)), 10**8)
    assert selector.due("cam", here, 2 * 10**9)
    assert selector.due("other_sensor", here, 10**8)


def objects(count: int = 3, classes: int = 4, dim: int = 8) -> SceneObjects:
    rng = np.random.default_rng(0)
    distributions = rng.dirichlet(np.ones(classes), count)
    return SceneObjects(rng.normal(size=(count, 3)), rng.uniform(0.1, 1, (count, 3)), rng.uniform(0, 3, count),
                        distributions, rng.normal(size=(count, dim)), rng.uniform(0, 1, (count, 3)),
                        rng.integers(10, 100, count), distributions.argmax(axis=1))


def test_object_map_message_round_trip():
    pytest.importorskip("ov3d_interfaces")
    content = ObjectMapContent(objects(), np.array([4, 7, 9]), ("chair", "table: desk", "lamp", "rug"), "minilm",
                               np.ones(8, np.float32), "map", 12 * 10**9)
    back = msg_to_object_map(object_map_to_msg(content))
    assert back.vocabulary == content.vocabulary and back.text_space == "minilm" and back.frame_id == "map"
    assert back.stamp_ns == content.stamp_ns and list(back.instance_ids) == [4, 7, 9]
    for name in ("centres", "sizes", "yaws", "distributions", "features", "colours", "counts", "labels"):
        assert np.allclose(getattr(back.objects, name), getattr(content.objects, name), atol=1e-6), name
    assert np.allclose(back.text_offset, 1.0)


@pytest.mark.parametrize("field,value,reason", [
    ("centres", [0.0] * 5, "centres has 5 values"),
    ("labels", [0, 1, 9], "labels"),
    ("features", [float("nan")] * 24, "non-finite"),
    ("vocabulary", [], "empty vocabulary"),
    ("text_offset", [1.0, 2.0], "text_offset"),
])
def test_malformed_object_maps_are_refused(field, value, reason):
    pytest.importorskip("ov3d_interfaces")
    msg = object_map_to_msg(ObjectMapContent(objects(), np.arange(3), ("a", "b", "c", "d"), "minilm", None, "map",
                                             10**9))
    setattr(msg, field, value)
    with pytest.raises(MessageError, match=reason):
        msg_to_object_map(msg)
