"""TransformBuffer: tree walks, interpolation, errors, cache bounds and thread safety (no ROS needed)."""
import math
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from ov3d_ros.geometry.tf_buffer import (
    ConnectivityError,
    ExtrapolationError,
    StampedTransform,
    TransformBuffer,
    UnknownFrameError,
)
from ov3d_ros.geometry.transforms import RigidTransform, TransformError, quaternion_from_euler

S = 1_000_000_000


def tf_msg(parent, child, stamp_ns, xyz=(0.0, 0.0, 0.0), quat=(0.0, 0.0, 0.0, 1.0)):
    """A duck-typed geometry_msgs/TransformStamped."""
    return SimpleNamespace(
        header=SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // S, nanosec=stamp_ns % S), frame_id=parent),
        child_frame_id=child,
        transform=SimpleNamespace(
            translation=SimpleNamespace(x=xyz[0], y=xyz[1], z=xyz[2]),
            rotation=SimpleNamespace(x=quat[0], y=quat[1], z=quat[2], w=quat[3]),
        ),
    )


def yaw_quat(yaw):
    return quaternion_from_euler(0.0, 0.0, yaw)


def matrix(xyz, quat):
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat(quat).as_matrix()
    m[:3, 3] = xyz
    return m


def interpolated_matrix(t, t0, xyz0, q0, t1, xyz1, q1):
    f = (t - t0) / (t1 - t0)
    rot = Slerp([t0, t1], Rotation.from_quat([q0, q1]))(t)
    m = np.eye(4)
    m[:3, :3] = rot.as_matrix()
    m[:3, 3] = (1 - f) * np.asarray(xyz0) + f * np.asarray(xyz1)
    return m


# map -> odom (dynamic), odom -> base_link (dynamic), base_link -> camera (static), base_link -> lidar (static)
MAP_ODOM = [(10 * S, (1.0, 0.0, 0.0), yaw_quat(0.0)), (12 * S, (1.2, 0.1, 0.0), yaw_quat(0.2))]
ODOM_BASE = [(10 * S, (0.0, 0.0, 0.0), yaw_quat(0.0)), (11 * S, (1.0, 0.5, 0.0), yaw_quat(math.pi / 2)),
             (12 * S, (2.0, 1.0, 0.0), yaw_quat(math.pi))]
BASE_CAMERA = ((0.2, 0.0, 0.5), quaternion_from_euler(-math.pi / 2, 0.0, -math.pi / 2))
BASE_LIDAR = ((0.0, 0.0, 0.8), yaw_quat(0.1))


@pytest.fixture
def buffer():
    buf = TransformBuffer(cache_time_s=10.0)
    for stamp, xyz, q in MAP_ODOM:
        buf.set_transform(tf_msg("map", "odom", stamp, xyz, q), authority="localiser", static=False)
    for stamp, xyz, q in ODOM_BASE:
        buf.set_transform(tf_msg("odom", "base_link", stamp, xyz, q), authority="odometry", static=False)
    buf.set_transform(tf_msg("base_link", "camera", 0, *BASE_CAMERA), authority="urdf", static=True)
    buf.set_transform(tf_msg("/base_link", "/lidar", 0, *BASE_LIDAR), authority="urdf", static=True)
    return buf


def test_lookup_at_interpolated_time_matches_hand_computed_matrix(buffer):
    t = 11 * S + 250_000_000
    expected = (
        interpolated_matrix(t, *MAP_ODOM[0], *MAP_ODOM[1])
        @ interpolated_matrix(t, *ODOM_BASE[1], *ODOM_BASE[2])
        @ matrix(*BASE_CAMERA)
    )
    map_from_camera = buffer.lookup_transform("map", "camera", t)
    np.testing.assert_allclose(map_from_camera.matrix, expected, atol=1e-9)
    camera_from_map = buffer.lookup_transform("camera", "map", t)
    np.testing.assert_allclose(camera_from_map.matrix, np.linalg.inv(expected), atol=1e-9)
    point = np.array([[0.0, 0.0, 2.0]])
    np.testing.assert_allclose(map_from_camera.apply(point)[0], (expected @ [0.0, 0.0, 2.0, 1.0])[:3], atol=1e-9)


def test_lookup_between_siblings_only_uses_links_below_common_ancestor(buffer):
    expected = np.linalg.inv(matrix(*BASE_CAMERA)) @ matrix(*BASE_LIDAR)
    # static-only path: any time works, even far outside the dynamic histories
    for t in (None, 0, 5 * S, 1000 * S):
        np.testing.assert_allclose(buffer.lookup_transform("camera", "lidar", t).matrix, expected, atol=1e-12)
    assert buffer.latest_common_time("camera", "lidar") is None
    assert buffer.lookup_transform("odom", "odom").almost_equal(RigidTransform.identity())


def test_latest_common_time_and_default_lookup(buffer):
    assert buffer.latest_common_time("map", "camera") == 12 * S
    buffer.set_transform(tf_msg("odom", "base_link", 12_500_000_000, (3.0, 1.0, 0.0)), "odometry", False)
    assert buffer.latest_common_time("map", "camera") == 12 * S  # map->odom is the laggard
    assert buffer.latest_common_time("odom", "camera") == 12_500_000_000
    latest = buffer.lookup_transform("map", "base_link")
    assert latest.almost_equal(buffer.lookup_transform("map", "base_link", 12 * S))
    assert buffer.lookup_transform("map", "base_link", 0).almost_equal(latest)


def test_unknown_frame_error_lists_known_frames(buffer):
    with pytest.raises(UnknownFrameError) as info:
        buffer.lookup_transform("map", "gripper")
    assert str(info.value) == (
        "frame 'gripper' does not exist; known frames: base_link, camera, lidar, map, odom"
    )
    assert isinstance(info.value, LookupError)
    assert not buffer.can_transform("gripper", "map")
    with pytest.raises(UnknownFrameError):
        buffer.lookup_transform("", "map")


def test_extrapolation_errors_and_tolerance(buffer):
    with pytest.raises(ExtrapolationError) as future:
        buffer.lookup_transform("map", "base_link", 12 * S + 500_000_000)
    message = str(future.value)
    assert "0.500000000 s into the future" in message
    assert "latest data for 'odom'->'base_link' (published by 'odometry') is at t=12.000000000 s" in message
    assert "tolerance 0 s" in message
    with pytest.raises(ExtrapolationError, match="2.000000000 s into the past: earliest data for 'map'->'odom'"):
        buffer.lookup_transform("map", "odom", 8 * S)
    assert not buffer.can_transform("map", "camera", 13 * S)
    assert buffer.can_transform("map", "camera", 12 * S)

    tolerant = TransformBuffer(extrapolation_tolerance_s=0.1)
    tolerant.set_transform(tf_msg("odom", "base_link", 10 * S, (1.0, 0.0, 0.0)), "odometry", False)
    tolerant.set_transform(tf_msg("odom", "base_link", 11 * S, (2.0, 0.0, 0.0)), "odometry", False)
    late = tolerant.lookup_transform("odom", "base_link", 11 * S + 50_000_000)
    np.testing.assert_allclose(late.translation, [2.0, 0.0, 0.0])  # clamped to the newest sample
    with pytest.raises(ExtrapolationError, match="tolerance 0.1 s"):
        tolerant.lookup_transform("odom", "base_link", 11 * S + 200_000_000)


def test_disconnected_trees_raise_connectivity_error(buffer):
    buffer.set_transform(tf_msg("world", "robot2/odom", 0), "other", static=True)
    with pytest.raises(ConnectivityError) as info:
        buffer.lookup_transform("camera", "robot2/odom")
    assert str(info.value) == (
        "frames 'camera' and 'robot2/odom' are not connected: 'camera' belongs to the tree rooted at 'map', "
        "'robot2/odom' to the tree rooted at 'world'"
    )
    assert not buffer.can_transform("map", "world")


@pytest.mark.parametrize(
    ("msg", "message"),
    [
        (tf_msg("map", "map", 0), "to itself"),
        (tf_msg("", "odom", 0), "parent frame id is empty"),
        (tf_msg("map", "/", 0), "child frame id is empty"),
        (tf_msg("map", "odom", 0, (float("nan"), 0.0, 0.0)), "non-finite"),
        (tf_msg("map", "odom", 0, quat=(0.0, 0.0, 0.0, 0.0)), "near-zero norm"),
        (SimpleNamespace(header=None), "TransformStamped"),
    ],
)
def test_invalid_transforms_are_rejected(msg, message):
    buf = TransformBuffer()
    with pytest.raises(TransformError, match=message):
        buf.set_transform(msg, authority="test", static=False)
    assert buf.frames() == []


def test_leading_slash_is_stripped_and_values_form_accepted():
    buf = TransformBuffer()
    buf.set_transform(StampedTransform("/map", "/odom", 5, RigidTransform.from_xyz_quat([1, 2, 3], [0, 0, 0, 1])))
    assert buf.frames() == ["map", "odom"]
    np.testing.assert_allclose(buf.lookup_transform("/map", "odom", 5).translation, [1, 2, 3])


def test_cycles_are_rejected(buffer):
    with pytest.raises(TransformError, match="cycle"):
        buffer.set_transform(tf_msg("camera", "map", 0), "bad", static=True)
    assert buffer.can_transform("map", "camera")


def test_reparenting_replaces_the_link(buffer):
    buffer.set_transform(tf_msg("lidar", "camera", 0, (0.0, 0.0, 1.0)), "recalibration", static=True)
    np.testing.assert_allclose(buffer.lookup_transform("lidar", "camera").translation, [0.0, 0.0, 1.0])
    expected = matrix(*BASE_LIDAR) @ matrix((0.0, 0.0, 1.0), (0.0, 0.0, 0.0, 1.0))
    np.testing.assert_allclose(buffer.lookup_transform("base_link", "camera").matrix, expected, atol=1e-12)
    # switching odom -> base_link from dynamic to static drops its history
    buffer.set_transform(tf_msg("odom", "base_link", 0, (5.0, 0.0, 0.0)), "mock", static=True)
    assert buffer.latest_common_time("odom", "camera") is None
    np.testing.assert_allclose(buffer.lookup_transform("odom", "base_link", 3 * S).translation, [5.0, 0.0, 0.0])


def test_cache_bound_holds_after_10k_inserts():
    buf = TransformBuffer(cache_time_s=1.0)
    period = 10_000_000  # 100 Hz
    for i in range(10_000):
        buf.set_transform(tf_msg("odom", "base_link", i * period, (i * 0.01, 0.0, 0.0)), "odometry", False)
    newest = 9_999 * period
    assert buf.latest_common_time("odom", "base_link") == newest
    np.testing.assert_allclose(buf.lookup_transform("odom", "base_link", newest - S).translation, [98.99, 0, 0])
    with pytest.raises(ExtrapolationError, match="into the past"):
        buf.lookup_transform("odom", "base_link", newest - S - period)
    with pytest.raises(TransformError, match="older than the cache window"):
        buf.set_transform(tf_msg("odom", "base_link", newest - 2 * S), "odometry", False)

    capped = TransformBuffer(cache_time_s=100.0, max_entries_per_frame=50)
    for i in range(1_000):
        capped.set_transform(tf_msg("odom", "base_link", i * period), "odometry", False)
    assert capped.can_transform("odom", "base_link", 950 * period)
    assert not capped.can_transform("odom", "base_link", 949 * period)


def test_repeated_stamp_replaces_sample():
    buf = TransformBuffer()
    buf.set_transform(tf_msg("odom", "base_link", S, (1.0, 0.0, 0.0)), "a", False)
    buf.set_transform(tf_msg("odom", "base_link", S, (2.0, 0.0, 0.0)), "a", False)
    np.testing.assert_allclose(buf.lookup_transform("odom", "base_link", S).translation, [2.0, 0.0, 0.0])


def test_max_frames_is_enforced():
    buf = TransformBuffer(max_frames=3)
    buf.set_transform(tf_msg("a", "b", 0), "t", static=True)
    buf.set_transform(tf_msg("b", "c", 0), "t", static=True)
    with pytest.raises(TransformError, match="limit of 3 frames"):
        buf.set_transform(tf_msg("c", "d", 0), "t", static=True)
    buf.set_transform(tf_msg("a", "c", 0), "t", static=True)  # re-parenting adds no frame


def test_ingest_tf_message_counts_rejections_without_raising():
    buf = TransformBuffer()
    msg = SimpleNamespace(transforms=[
        tf_msg("map", "odom", S),
        tf_msg("odom", "odom", S),
        tf_msg("odom", "base_link", S, quat=(0.0, 0.0, 0.0, 0.0)),
        SimpleNamespace(),
        tf_msg("odom", "base_link", S),
    ])
    accepted, rejected = buf.ingest_tf_message(msg, static=False, authority="bag")
    assert accepted == 2
    assert len(rejected) == 3
    assert "to itself" in rejected[0] and "near-zero norm" in rejected[1]
    assert buf.frames() == ["base_link", "map", "odom"]
    accepted, rejected = buf.ingest_tf_message(None)
    assert accepted == 0 and rejected[0].startswith("not a tf2_msgs/TFMessage")
    buf.clear()
    assert buf.frames() == []


def test_concurrent_inserts_and_lookups():
    buf = TransformBuffer(cache_time_s=1.0)
    buf.set_transform(tf_msg("base_link", "camera", 0, (0.1, 0.0, 0.0)), "urdf", static=True)
    buf.set_transform(tf_msg("odom", "base_link", 0), "odometry", static=False)
    errors = []
    done = threading.Event()

    def writer():
        try:
            for i in range(1, 3_000):
                buf.set_transform(tf_msg("odom", "base_link", i * 1_000_000, (i * 1e-3, 0.0, 0.0)), "odo", False)
        except Exception as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)
        finally:
            done.set()

    def reader():
        try:
            while not done.is_set():
                t = buf.lookup_transform("odom", "camera")
                assert t.translation[0] >= 0.1
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    np.testing.assert_allclose(buf.lookup_transform("odom", "camera").translation, [2.999 + 0.1, 0.0, 0.0])


def test_lookup_cost_with_20_frames_is_well_under_a_millisecond():
    buf = TransformBuffer()
    rng = np.random.default_rng(0)
    frames = [f"link{i}" for i in range(20)]
    for parent, child in zip(frames, frames[1:]):
        static = child.endswith(("3", "6", "9"))
        for k in range(100):
            buf.set_transform(tf_msg(parent, child, k * 10_000_000, rng.normal(size=3), rng.normal(size=4)),
                              "perf", static=static)
    n = 200
    start = time.perf_counter()
    for k in range(n):
        buf.lookup_transform("link0", "link19", 5_000_000 + k * 3_000_000)
    per_lookup = (time.perf_counter() - start) / n
    assert per_lookup < 1e-3, f"{per_lookup * 1e6:.0f} us per lookup"
