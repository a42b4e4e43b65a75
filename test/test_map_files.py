"""Map snapshots (atomic .npz), keyframe selection, and the ObjectMap message the grounding node reads."""
from __future__ import annotations

import numpy as np
import pytest

from ov3d_ros.geometry.transforms import RigidTransform
from ov3d_ros.grounding.objects import SceneObjects
from ov3d_ros.mapping.keyframes import KeyframePolicy, KeyframeSelector
from ov3d_ros.mapping.sensor_points import PointBatch
from ov3d_ros.mapping.voxel_map import MapFileError, VoxelMap
from ov3d_ros.messages import MessageError
from ov3d_ros.messages.object_map import ObjectMapContent, msg_to_object_map, object_map_to_msg


def filled_map(seed: int = 0, voxels: int = 1000) -> VoxelMap:
    rng = np.random.default_rng(seed)
    vm = VoxelMap(0.02, voxels)
    for stamp in range(1, 4):
        xyz = rng.uniform(0, 1, (500, 3)).astype(np.float32)
        vm.integrate(PointBatch(xyz, rng.integers(0, 255, (500, 3), dtype=np.uint8), stamp * 10**9, "rgbd"))
    return vm


def test_snapshot_round_trip(tmp_path):
    vm = filled_map()
    assert vm.save(tmp_path / "map.npz") == len(vm)
    restored = VoxelMap(0.02, 1000)
    assert restored.load(tmp_path / "map.npz") == len(vm)
    before, after = vm.to_points(), restored.to_points()
    assert np.array_equal(before, after)
    assert restored.newest_stamp_ns == 3 * 10**9 and restored.evicted == vm.evicted
    assert not list(tmp_path.glob("*.partial"))               # the atomic write left nothing behind


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
    filled_map(voxels=100000).save(tmp_path / "big.npz")
    small = VoxelMap(0.02, 200)
    assert small.load(tmp_path / "big.npz") == 200 and small.evicted > 0


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
