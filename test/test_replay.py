"""`ov3d replay` in its own process publishes a bag over DDS: content, /clock and a latched /tf_static arrive."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from ov3d_ros.data.rosbag import BagWriter, QosSpec  # noqa: E402
from ov3d_ros.messages import image_to_array  # noqa: E402
from ov3d_ros.messages.types import RosbagsMessageTypes, make_header  # noqa: E402
from ov3d_ros.messages.image import array_to_image  # noqa: E402

pytestmark = pytest.mark.ros
FRAMES = 5


def write_bag(path):
    with BagWriter(path, storage="mcap") as bag:
        types = RosbagsMessageTypes(bag.typestore)
        bag.add_topic("/camera/color/image_raw", "sensor_msgs/msg/Image")
        bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", QosSpec("transient_local", "reliable", 1))
        transform = types.get("geometry_msgs/msg/TransformStamped")(
            header=make_header(types, "map", 1_000_000_000), child_frame_id="camera",
            transform=types.get("geometry_msgs/msg/Transform")(
                translation=types.get("geometry_msgs/msg/Vector3")(x=1.0, y=2.0, z=3.0),
                rotation=types.get("geometry_msgs/msg/Quaternion")(x=0.0, y=0.0, z=0.0, w=1.0)))
        bag.write("/tf_static", 1_000_000_000, types.get("tf2_msgs/msg/TFMessage")(transforms=[transform]))
        for i in range(FRAMES):
            pixels = np.full((4, 6, 3), i, dtype=np.uint8)
            stamp = 1_000_000_000 + (i + 1) * 50_000_000
            bag.write("/camera/color/image_raw", stamp, array_to_image(pixels, "rgb8", "camera", stamp, types))


@pytest.fixture
def bag(tmp_path):
    path = tmp_path / "scene"
    write_bag(path)
    return path


@pytest.fixture
def listener(ros_context):
    node = rclpy.create_node("replay_listener", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    yield node, executor
    node.destroy_node()


def start_replay(bag, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ov3d_ros.cli", "replay", str(bag), "--quiet", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_replay_publishes_bag_content_with_clock(bag, listener):
    node, executor = listener
    images, clocks = [], []
    node.create_subscription(Image, "/camera/color/image_raw", images.append, 10)
    node.create_subscription(Clock, "/clock", clocks.append, 10)
    child = start_replay(bag, "--rate", "2", "--topics", "/camera/color/image_raw", "--wait-for-subscribers", "20")
    try:
        deadline = time.monotonic() + 40
        while len(images) < FRAMES and time.monotonic() < deadline and child.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        out = child.communicate(timeout=30)[0]
        assert child.returncode == 0, out
        for _ in range(20):
            executor.spin_once(timeout_sec=0.05)
        assert "published 5 messages" in out
        assert [int(image_to_array(m)[0, 0, 0]) for m in images] == list(range(FRAMES))
        assert len(clocks) >= FRAMES
        assert clocks[-1].clock.sec == 1 and clocks[-1].clock.nanosec == 250_000_000
    finally:
        if child.poll() is None:
            child.kill()


def test_replay_tf_static_is_latched(bag, listener):
    """A subscriber that appears after the replay's /tf_static publisher still receives it (transient local)."""
    node, executor = listener
    child = start_replay(bag, "--rate", "0.05")
    try:
        deadline = time.monotonic() + 30
        while node.count_publishers("/tf_static") == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert node.count_publishers("/tf_static") == 1, "the replay's /tf_static publisher was never discovered"
        received = []
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(TFMessage, "/tf_static", received.append, qos)
        while not received and time.monotonic() < deadline and child.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert received, "no latched /tf_static for a late subscriber"
        t = received[0].transforms[0]
        assert (t.header.frame_id, t.child_frame_id, t.transform.translation.z) == ("map", "camera", 3.0)
    finally:
        child.kill()
        child.wait()
