"""`ov3d view`: the running graph in Foxglove, on installs without RViz2 (foxglove-sdk from PyPI).

A node subscribes to what the graph publishes and relays it on a Foxglove WebSocket server (and, with an MCAP
path, into a recording Foxglove opens):

| channel                      | from                                   | Foxglove schema                 |
|------------------------------|----------------------------------------|---------------------------------|
| /ov3d/semantic_map           | the semantic map (PointCloud2)         | foxglove.PointCloud, label RGBA  |
| /ov3d/instances              | instance boxes (MarkerArray)           | foxglove.SceneUpdate            |
| /ov3d/grounding/answer       | the last /ground_object answer         | foxglove.SceneUpdate            |
| the colour topic             | fusion_node's camera (raw / compressed) | foxglove.RawImage / CompressedImage |
| /diagnostics                 | every node's diagnostics               | JSON                            |

`config/ov3d.foxglove.json` is a layout showing them. Conversions are plain functions, tested without a server.
"""
from __future__ import annotations

import signal
import threading
from typing import Any, Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, PointCloud2
from visualization_msgs.msg import Marker, MarkerArray

from ov3d_ros.config import PerceptionConfig
from ov3d_ros.messages import MessageError, pointcloud2_to_array, stamp_to_ns, unpack_rgb
from ov3d_ros.ros.qos import LATCHED, sensor_qos

POINT_STRIDE = 16            # x, y, z float32, then red, green, blue, alpha uint8


def _timestamp(stamp_ns: int) -> Any:
    from foxglove.messages import Timestamp
    return Timestamp(sec=int(stamp_ns // 1_000_000_000), nsec=int(stamp_ns % 1_000_000_000))


def semantic_map_cloud(msg: PointCloud2) -> Any:
    """A foxglove.PointCloud of a semantic map message: positions and the label colour (opaque RGBA)."""
    from foxglove.messages import PackedElementField, PackedElementFieldNumericType, PointCloud

    cloud = pointcloud2_to_array(msg)
    packed = np.zeros(len(cloud), np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgba", "u1", 4)]))
    for axis in "xyz":
        packed[axis] = cloud[axis]
    packed["rgba"][:, :3] = unpack_rgb(cloud["rgb"]) if "rgb" in (cloud.dtype.names or ()) else 255
    packed["rgba"][:, 3] = 255
    kinds = PackedElementFieldNumericType
    fields = [PackedElementField(name=axis, offset=4 * i, type=kinds.Float32) for i, axis in enumerate("xyz")]
    fields += [PackedElementField(name=name, offset=12 + i, type=kinds.Uint8)
               for i, name in enumerate(("red", "green", "blue", "alpha"))]
    return PointCloud(timestamp=_timestamp(stamp_to_ns(msg.header.stamp)), frame_id=msg.header.frame_id,
                      point_stride=POINT_STRIDE, fields=fields, data=packed.tobytes())


def marker_scene(msg: MarkerArray) -> Any:
    """A foxglove.SceneUpdate of captioned-box markers: a DELETEALL clears the scene, each CUBE becomes an entity
    (`<ns>/<id>`) with its caption (the TEXT marker of the same id) as a billboard text."""
    from foxglove.messages import (Color, CubePrimitive, Pose, Quaternion, SceneEntity, SceneEntityDeletion,
                                   SceneEntityDeletionType, SceneUpdate, TextPrimitive, Vector3)

    def pose(marker: Marker) -> Any:
        p, q = marker.pose.position, marker.pose.orientation
        return Pose(position=Vector3(x=p.x, y=p.y, z=p.z), orientation=Quaternion(x=q.x, y=q.y, z=q.z, w=q.w))

    def colour(marker: Marker) -> Any:
        return Color(r=marker.color.r, g=marker.color.g, b=marker.color.b, a=marker.color.a)

    deletions, cubes, texts = [], {}, {}
    stamp_ns = 0
    for marker in msg.markers:
        if marker.action == Marker.DELETEALL:
            deletions.append(SceneEntityDeletion(type=SceneEntityDeletionType.All))
        elif marker.type == Marker.CUBE:
            s = marker.scale
            cubes[marker.id] = (marker, CubePrimitive(pose=pose(marker), size=Vector3(x=s.x, y=s.y, z=s.z),
                                                      color=colour(marker)))
            stamp_ns = max(stamp_ns, stamp_to_ns(marker.header.stamp))
        elif marker.type == Marker.TEXT_VIEW_FACING:
            texts[marker.id] = TextPrimitive(pose=pose(marker), billboard=True, font_size=marker.scale.z,
                                             color=colour(marker), text=marker.text)
    entities = [SceneEntity(timestamp=_timestamp(stamp_to_ns(marker.header.stamp)), frame_id=marker.header.frame_id,
                            id=f"{marker.ns}/{marker_id}", cubes=[cube],
                            texts=[texts[marker_id]] if marker_id in texts else [])
                for marker_id, (marker, cube) in cubes.items()]
    return SceneUpdate(deletions=deletions, entities=entities)


def camera_image(msg: Image | CompressedImage) -> Any:
    """A foxglove.RawImage or CompressedImage of a camera message (the bytes as they are)."""
    from foxglove.messages import CompressedImage as FoxgloveCompressed
    from foxglove.messages import RawImage

    stamp = _timestamp(stamp_to_ns(msg.header.stamp))
    if isinstance(msg, CompressedImage):
        codec = "png" if "png" in msg.format.lower() else "jpeg"
        return FoxgloveCompressed(timestamp=stamp, frame_id=msg.header.frame_id, data=bytes(msg.data), format=codec)
    return RawImage(timestamp=stamp, frame_id=msg.header.frame_id, width=msg.width, height=msg.height,
                    encoding=msg.encoding, step=msg.step, data=bytes(msg.data))


def diagnostics_json(msg: DiagnosticArray) -> dict[str, Any]:
    """The diagnostics as JSON: one entry per status, its level, message and values."""
    return {"stamp_ns": stamp_to_ns(msg.header.stamp),
            "status": [{"name": s.name, "level": _level(s.level), "message": s.message,
                        "values": {v.key: v.value for v in s.values}} for s in msg.status]}


def _level(level: bytes | int) -> int:
    """A DiagnosticStatus level (rclpy gives the `byte` field as bytes) as an int."""
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)


class ViewNode(Node):
    """Relays the graph's outputs to Foxglove channels (see the module docstring)."""

    def __init__(self, config: PerceptionConfig, channels_context: Any = None, **kwargs: Any) -> None:
        import foxglove
        from foxglove.channels import CompressedImageChannel, PointCloudChannel, RawImageChannel, SceneUpdateChannel

        super().__init__("ov3d_view", **kwargs)
        seg, ground, fusion = config.segmentation_node, config.grounding_node, config.fusion_node
        self.relayed: dict[str, int] = {}
        self.dropped = 0
        self._latest: dict[str, tuple[Any, Any]] = {}      # latched topics: (channel, newest converted message)
        self._lock = threading.Lock()
        colour_topic, colour_type = fusion.image_inputs()["color"]
        compressed = colour_type.endswith("CompressedImage")
        channels = {
            seg.semantic_map_topic: (PointCloud2, LATCHED, PointCloudChannel, semantic_map_cloud),
            seg.markers_topic: (MarkerArray, LATCHED, SceneUpdateChannel, marker_scene),
            ground.answer_markers_topic: (MarkerArray, LATCHED, SceneUpdateChannel, marker_scene),
            colour_topic: (CompressedImage if compressed else Image, sensor_qos(2),
                           CompressedImageChannel if compressed else RawImageChannel, camera_image),
            "/diagnostics": (DiagnosticArray, sensor_qos(10), None, diagnostics_json),
        }
        for topic, (kind, qos, channel_type, convert) in channels.items():
            channel = channel_type(topic, context=channels_context) if channel_type else \
                foxglove.Channel(topic, schema={"type": "object"}, context=channels_context)
            self.create_subscription(kind, topic, self._relay(topic, channel, convert, qos is LATCHED), qos)

    def _relay(self, topic: str, channel: Any, convert: Any, latched: bool) -> Any:
        def callback(msg: Any) -> None:
            try:
                converted = convert(msg)
            except (MessageError, ValueError) as exc:
                self.dropped += 1
                self.get_logger().warning(f"{topic}: not relayed ({exc})", throttle_duration_sec=5.0)
                return
            with self._lock:
                if latched:
                    self._latest[topic] = (channel, converted)
                channel.log(converted)
                self.relayed[topic] = self.relayed.get(topic, 0) + 1
        return callback

    def resend_latched(self, topic: str) -> None:
        """Log a latched topic's newest message again (for a client that subscribed after it came)."""
        with self._lock:
            if topic in self._latest:
                channel, converted = self._latest[topic]
                channel.log(converted)


def run_view(config: PerceptionConfig, host: str, port: int, mcap: str | None,
             on_ready: Callable[[int], None] | None = None, stop: threading.Event | None = None) -> int:
    """Serve the graph's outputs on ws://host:port (and record them into `mcap`) until SIGINT / SIGTERM or `stop`;
    `on_ready` gets the port once the server listens (port 0 picks a free one). 0 on a clean stop."""
    import foxglove
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    from foxglove.websocket import ServerListener

    views: list[ViewNode] = []

    class Latching(ServerListener):
        """Late subscribers get the newest message of a latched topic, as ROS's transient-local QoS gives it."""

        def on_subscribe(self, client: Any, channel: Any) -> None:
            for node in views:
                node.resend_latched(channel.topic)

    channels = foxglove.Context()             # this view's channels and sinks only
    writer = foxglove.open_mcap(mcap, allow_overwrite=True, context=channels) if mcap else None
    server = foxglove.start_server(name="ov3d_ros", host=host, port=port, context=channels,
                                   server_listener=Latching())
    context = rclpy.context.Context()
    rclpy.init(context=context)
    try:
        node = ViewNode(config, channels, context=context)
        views.append(node)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        print(f"Foxglove: ws://{host}:{server.port} (layout config/ov3d.foxglove.json)"
              + (f"; recording {mcap}" if mcap else ""), flush=True)
        if on_ready is not None:
            on_ready(server.port)
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
        executor.shutdown()
        node.destroy_node()
    finally:
        server.stop()
        if writer is not None:
            writer.close()
        rclpy.shutdown(context=context)
    return 0
