"""Malformed sensor and TF messages go through the fusion node's real callbacks: nothing raises, every drop is
counted by reason and logged; valid data still reaches the map, and the map is published once the readings pause."""
from __future__ import annotations

import copy
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import TransformStamped  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from ov3d_ros.geometry.camera import PinholeCamera  # noqa: E402
from ov3d_ros.messages import array_to_image, array_to_pointcloud2, camera_to_camera_info  # noqa: E402
from ov3d_ros.ros.drops import DropCounter  # noqa: E402
from ov3d_ros.ros.nodes.fusion import FusionNode  # noqa: E402

STAMP = 5_000_000_000
TF_WAIT_S = 0.05
CAMERA = PinholeCamera(width=32, height=24, fx=30.0, fy=30.0, cx=15.5, cy=11.5)


class RecordingLogger:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, text: str) -> None:
        self.warnings.append(text)


def transform(parent: str, child: str, xyz=(0.0, 0.0, 1.0), quat=(0.0, 0.0, 0.0, 1.0), stamp=STAMP):
    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = parent, child
    t.header.stamp.sec, t.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = xyz
    q = t.transform.rotation
    q.x, q.y, q.z, q.w = quat
    return t


def rgbd(stamp=STAMP, frame="camera"):
    color = np.random.default_rng(0).integers(0, 255, (CAMERA.height, CAMERA.width, 3), dtype=np.uint8)
    depth = np.full((CAMERA.height, CAMERA.width), 1500, dtype=np.uint16)
    return (array_to_image(color, "rgb8", frame, stamp), array_to_image(depth, "16UC1", frame, stamp),
            camera_to_camera_info(CAMERA, frame, stamp))


def cloud(n=50, stamp=STAMP, frame="lidar"):
    points = np.zeros(n, dtype=[("x", np.float32), ("y", np.float32), ("z", np.float32),
                                ("intensity", np.float32)])
    points["x"] = np.linspace(1.0, 5.0, n)
    return array_to_pointcloud2(points, frame, stamp)


@pytest.fixture
def node(ros_context):
    node = FusionNode(context=ros_context, parameter_overrides=[Parameter("tf_wait_s", value=TF_WAIT_S)])
    node.drops = DropCounter(RecordingLogger(), throttle_s=0.0)
    node.on_tf_static(TFMessage(transforms=[transform("map", "camera"), transform("map", "lidar")]))
    yield node
    node.destroy_node()


def feed_rgbd(node, color, depth, info):
    node.on_color(color)
    node.on_depth(depth)
    node.on_camera_info(info)


def test_valid_rgbd_and_lidar_reach_the_map(node):
    feed_rgbd(node, *rgbd())
    node.on_lidar(cloud())
    assert node.integrated == {"rgbd": 1, "lidar": 1}
    assert len(node.map) > 0
    assert node.drops.total == 0


def _bad_image(msg, **changes):
    bad = copy.deepcopy(msg)
    for name, value in changes.items():
        setattr(bad, name, value)
    return bad


@pytest.mark.parametrize("part,changes,reason", [
    ("depth", {"encoding": "weird"}, "malformed_rgbd"),
    ("depth", {"data": bytes(10)}, "malformed_rgbd"),
    ("depth", {"width": 0, "height": 0, "step": 0, "data": b""}, "malformed_rgbd"),
    ("color", {"step": 1}, "malformed_rgbd"),
    ("color", {"encoding": "yuv422_yuy2"}, "malformed_rgbd"),
    ("info", {"k": [0.0] * 9}, "malformed_rgbd"),
    ("info", {"k": [float("inf")] * 9}, "malformed_rgbd"),
    ("info", {"width": 64}, "malformed_rgbd"),
])
def test_malformed_rgbd_is_dropped_and_counted(node, part, changes, reason):
    color, depth, info = rgbd()
    parts = {"color": color, "depth": depth, "info": info}
    parts[part] = _bad_image(parts[part], **changes)
    feed_rgbd(node, parts["color"], parts["depth"], parts["info"])
    assert node.drops.counts == {reason: 1}
    assert len(node.drops._logger.warnings) == 1 and reason in node.drops._logger.warnings[0]
    assert node.integrated["rgbd"] == 0


def test_all_nan_depth_counts_as_empty(node):
    color, _, info = rgbd()
    depth = array_to_image(np.full((CAMERA.height, CAMERA.width), np.nan, np.float32), "32FC1", "camera", STAMP)
    feed_rgbd(node, color, depth, info)
    assert node.drops.counts == {"empty_rgbd": 1}


def test_missing_header_and_unknown_frame(node):
    color, depth, info = rgbd(frame="")
    node.on_color(color)
    node.on_lidar(cloud(stamp=0))
    assert node.drops.counts == {"malformed_color": 1, "malformed_lidar": 1}
    node.on_lidar(cloud(frame="nowhere"))
    assert "tf_lookup_failed" not in node.drops.counts      # it waits for its transform first
    time.sleep(TF_WAIT_S * 1.5)
    node._retry_waiting_for_tf()
    assert node.drops.counts["tf_lookup_failed"] == 1
    assert not node._waiting_for_tf


def test_a_reading_waits_for_its_transform(node):
    node.on_lidar(cloud(frame="late_lidar", stamp=STAMP + 10))
    node._retry_waiting_for_tf()
    assert node.integrated["lidar"] == 0 and len(node._waiting_for_tf) == 1
    node.on_tf(TFMessage(transforms=[transform("map", "late_lidar", stamp=STAMP + 10)]))
    node._retry_waiting_for_tf()
    assert node.integrated["lidar"] == 1 and node.drops.total == 0


@pytest.mark.parametrize("changes", [
    {"is_bigendian": True},
    {"data": bytes(7)},
    {"point_step": 2},
    {"row_step": 3},
    {"fields": []},
])
def test_malformed_point_clouds(node, changes):
    node.on_lidar(_bad_image(cloud(), **changes))
    assert node.drops.counts == {"malformed_lidar": 1}


def test_zero_points_and_nonfinite_points(node):
    node.on_lidar(cloud(n=0))
    assert node.drops.counts == {"empty_lidar": 1}
    nan_cloud = np.full(10, np.nan, dtype=[("x", np.float32), ("y", np.float32), ("z", np.float32)])
    node.on_lidar(array_to_pointcloud2(nan_cloud, "lidar", STAMP))
    assert node.drops.counts == {"empty_lidar": 2}


def test_malformed_transforms(node):
    bad = [transform("map", "a", xyz=(np.nan, 0.0, 0.0)), transform("map", "b", quat=(0.0, 0.0, 0.0, 0.0)),
           transform("map", "c", xyz=(np.inf, 0.0, 0.0)), transform("", "d"), transform("e", "e"),
           transform("map", "")]
    node.on_tf(TFMessage(transforms=bad + [transform("map", "ok")]))
    assert node.drops.counts == {"malformed_tf": len(bad)}
    assert "ok" in node.tf.frames()


def test_random_byte_fuzz_never_raises(node):
    """Random truncations and corruptions of valid messages: every call returns, the map stays consistent."""
    rng = np.random.default_rng(1234)
    color, depth, info = rgbd()
    lidar = cloud()
    for i in range(150):
        msg = copy.deepcopy([color, depth, lidar][i % 3])
        data = np.frombuffer(bytes(msg.data), np.uint8).copy()
        data = data[: rng.integers(0, data.size + 1)]
        if data.size:
            data[rng.integers(0, data.size, 5)] = rng.integers(0, 256, 5)
        msg.data = data.tobytes()
        for name in ("width", "height", "step", "point_step", "row_step"):
            if hasattr(msg, name) and rng.random() < 0.2:
                setattr(msg, name, int(rng.integers(0, 100)))
        if i % 3 == 2:
            node.on_lidar(msg)
        else:
            stamp = STAMP + i * 1_000_000
            for m in (msg, info):
                m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            pair = (msg, copy.deepcopy(depth if i % 3 == 0 else color))
            pair[1].header.stamp = msg.header.stamp
            feed_rgbd(node, *(pair if i % 3 == 1 else pair[::-1]), info)
    assert node.drops.total > 0
    assert "internal_error" not in node.drops.counts, node.drops._logger.warnings[-3:]
    assert len(node.map.to_points()) == len(node.map)


def test_the_map_is_published_once_the_readings_pause(node, monkeypatch):
    published = []
    monkeypatch.setattr(node, "publish_map", lambda: published.append(node.map.version))
    node.on_lidar(cloud())
    node._publish_when_idle()
    assert published == []                                   # a reading has just come: wait for the rate's tick
    node._last_reading -= node.config.map_publish_idle_s
    node._publish_when_idle()
    assert published == [node.map.version]
