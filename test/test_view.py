"""`ov3d view`: a WebSocket client sees the advertised channels and receives the semantic map with the right point
count (decoded with the schema the server sends); the boxes of an answer arrive as a scene update; the MCAP
recording holds the same channels; a view stops cleanly."""
from __future__ import annotations

import base64
import json
import struct
import threading
import time

import numpy as np
import pytest

pytest.importorskip("foxglove")
websockets_client = pytest.importorskip("websockets.sync.client")

from ov3d_ros.config import load_perception_config  # noqa: E402
from ov3d_ros.messages import array_to_pointcloud2, pack_rgb  # noqa: E402

POINTS = 1234


def semantic_map_message():
    from ov3d_ros.ros.nodes.segmentation import SEMANTIC_POINT_DTYPE
    points = np.zeros(POINTS, SEMANTIC_POINT_DTYPE)
    points["x"] = np.linspace(0, 3, POINTS)
    points["rgb"] = pack_rgb(np.tile(np.array([[200, 30, 40]], np.uint8), (POINTS, 1)))
    points["label"] = 2
    return array_to_pointcloud2(points, "map", 7_000_000_000)


def answer_markers():
    from builtin_interfaces.msg import Time

    from ov3d_ros.messages.markers import CaptionedBox, box_markers
    return box_markers([CaptionedBox(0, np.array([1.0, 2.0, 0.5]), np.array([0.5, 0.5, 1.0]),
                                     np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0]), 0.5, "chair 0.83")],
                       "map", Time(sec=7))


def decoder(channel: dict):
    """The protobuf class of an advertised channel, built from the schema the server sent."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    files = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(channel["schema"]))
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(channel["schemaName"]))


@pytest.fixture
def publisher(ros_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import PointCloud2
    from visualization_msgs.msg import MarkerArray

    from ov3d_ros.ros.qos import LATCHED

    node = rclpy.create_node("view_test_graph", context=ros_context)
    node.create_publisher(PointCloud2, "/ov3d/semantic_map", LATCHED).publish(semantic_map_message())
    node.create_publisher(MarkerArray, "/ov3d/grounding/answer", LATCHED).publish(answer_markers())
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown()
    node.destroy_node()


def test_a_websocket_client_receives_the_semantic_map_and_the_answer(publisher, tmp_path):
    from ov3d_ros.ros.view import run_view

    ports: list[int] = []
    stop = threading.Event()
    mcap = tmp_path / "view.mcap"
    view = threading.Thread(target=run_view, args=(load_perception_config(), "127.0.0.1", 0, str(mcap)),
                            kwargs={"on_ready": ports.append, "stop": stop}, daemon=True)
    view.start()
    deadline = time.monotonic() + 20
    while not ports and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ports, "the view did not start"
    received: dict[str, object] = {}
    with websockets_client.connect(f"ws://127.0.0.1:{ports[0]}", subprotocols=["foxglove.sdk.v1"],
                                   open_timeout=10) as socket:
        channels: dict[str, dict] = {}
        subscribed: dict[int, dict] = {}
        while time.monotonic() < deadline and len(received) < 2:
            frame = socket.recv(timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(frame, str):
                message = json.loads(frame)
                if message.get("op") == "advertise":
                    for channel in message["channels"]:
                        channels[channel["topic"]] = channel
                    wanted = [c for t, c in channels.items() if t in ("/ov3d/semantic_map", "/ov3d/grounding/answer")
                              and c["id"] not in [s["channelId"] for s in subscribed.values()]]
                    if wanted:
                        start = len(subscribed) + 1
                        subs = [{"id": start + i, "channelId": c["id"]} for i, c in enumerate(wanted)]
                        subscribed.update({s["id"]: {"channelId": s["channelId"], "channel": c}
                                           for s, c in zip(subs, wanted)})
                        socket.send(json.dumps({"op": "subscribe", "subscriptions": subs}))
            elif frame[0] == 1:                                     # message data
                subscription = struct.unpack_from("<I", frame, 1)[0]
                channel = subscribed[subscription]["channel"]
                received[channel["topic"]] = decoder(channel).FromString(frame[13:])
    stop.set()
    view.join(timeout=20)
    assert not view.is_alive()
    assert {"/ov3d/semantic_map", "/ov3d/instances", "/ov3d/grounding/answer", "/diagnostics"} <= set(channels)
    assert channels["/ov3d/semantic_map"]["schemaName"] == "foxglove.PointCloud"
    cloud = received["/ov3d/semantic_map"]
    assert len(cloud.data) // cloud.point_stride == POINTS and cloud.frame_id == "map"
    first = np.frombuffer(cloud.data[:cloud.point_stride], np.uint8)
    assert list(first[12:16]) == [200, 30, 40, 255]                          # the label colour, opaque
    answer = received["/ov3d/grounding/answer"]
    assert len(answer.entities) == 1 and answer.entities[0].texts[0].text == "chair 0.83"
    assert mcap.is_file() and b"/ov3d/semantic_map" in mcap.read_bytes()


def test_the_layout_shows_the_channels_the_view_relays():
    from ov3d_ros.config import default_config_path

    layout = json.loads(default_config_path("ov3d.foxglove.json").read_text())
    config = load_perception_config()
    panels = layout["configById"]
    assert set(panels["3D!ov3d"]["topics"]) == {config.segmentation_node.semantic_map_topic,
                                                 config.segmentation_node.markers_topic,
                                                 config.grounding_node.answer_markers_topic}
    assert panels["Image!camera"]["imageMode"]["imageTopic"] == config.fusion_node.color_topic
    assert panels["3D!ov3d"]["followTf"] == config.segmentation_node.map_frame


def test_sigint_stops_the_view_cleanly(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "ov3d_ros.cli", "view", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stdout.readline()
        assert line.startswith("Foxglove: ws://127.0.0.1:"), line
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
