"""fusion_node: RGB-D and LiDAR in, transformed with TF into the map frame, fused into the voxel map."""
from __future__ import annotations

import sys
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from tf2_msgs.msg import TFMessage

from ov3d_ros.config import FusionNodeConfig
from ov3d_ros.geometry.tf_buffer import TransformBuffer
from ov3d_ros.mapping.sensor_points import PointBatch, lidar_points, rgbd_points
from ov3d_ros.mapping.voxel_map import VoxelMap
from ov3d_ros.messages import (
    MessageError,
    array_to_pointcloud2,
    camera_info_to_camera,
    depth_to_metres,
    image_to_array,
    pointcloud2_to_array,
)
from ov3d_ros.messages.time_sync import ApproximateTimeSynchronizer
from ov3d_ros.messages.types import stamp_to_ns
from ov3d_ros.ros.drops import DropCounter, guarded
from ov3d_ros.ros.params import declare_config

TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
MAP_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _stamp_and_frame(msg: Any, what: str) -> tuple[int, str]:
    """Header stamp (ns) and frame of a sensor message; MessageError when either is unusable."""
    stamp_ns = stamp_to_ns(msg.header.stamp)
    frame = msg.header.frame_id.strip("/")
    if not frame:
        raise MessageError(f"{what} has an empty header.frame_id")
    if stamp_ns <= 0:
        raise MessageError(f"{what} has no header stamp")
    return stamp_ns, frame


class FusionNode(Node):
    """Subscribes to the configured sensors and /tf, /tf_static; integrates every valid reading into the map.

    Bad input never raises out of a callback: it is dropped, counted in `drops` by reason, and logged (throttled).
    """

    NODE_NAME = "fusion_node"

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(self.NODE_NAME, **node_kwargs)
        self.config = c = declare_config(self, FusionNodeConfig)
        self.drops = DropCounter(self.get_logger(), c.log_throttle_s)
        self.tf = TransformBuffer(cache_time_s=c.tf_cache_s, extrapolation_tolerance_s=c.tf_tolerance_s)
        self.map = VoxelMap(c.voxel_size_m, c.max_voxels)
        self.integrated = {"rgbd": 0, "lidar": 0}
        tf_group, sensor_group = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        self.create_subscription(TFMessage, "/tf", self.on_tf, TF_QOS, callback_group=tf_group)
        self.create_subscription(TFMessage, "/tf_static", self.on_tf_static, TF_STATIC_QOS, callback_group=tf_group)
        sensor_qos = QoSProfile(depth=c.queue_depth, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.sync: ApproximateTimeSynchronizer | None = None
        if c.use_rgbd:
            self.sync = ApproximateTimeSynchronizer(["color", "depth", "info"], c.sync_queue_size, c.sync_slop_s,
                                                    callback=self.on_rgbd)
            self.create_subscription(Image, c.color_topic, self.on_color, sensor_qos, callback_group=sensor_group)
            self.create_subscription(Image, c.depth_topic, self.on_depth, sensor_qos, callback_group=sensor_group)
            self.create_subscription(CameraInfo, c.camera_info_topic, self.on_camera_info, sensor_qos,
                                     callback_group=sensor_group)
        if c.use_lidar:
            self.create_subscription(PointCloud2, c.lidar_topic, self.on_lidar, sensor_qos,
                                     callback_group=sensor_group)
        self.map_publisher = self.create_publisher(PointCloud2, c.map_topic, MAP_QOS)
        self.create_timer(1.0 / c.map_publish_rate_hz, self.publish_map, callback_group=sensor_group)
        self.get_logger().info(f"fusing {'RGB-D ' if c.use_rgbd else ''}{'LiDAR ' if c.use_lidar else ''}"
                               f"into '{c.map_frame}' at {c.voxel_size_m * 100:.1f} cm voxels")

    @guarded("malformed_tf")
    def on_tf(self, msg: TFMessage) -> None:
        self._ingest_tf(msg, static=False)

    @guarded("malformed_tf")
    def on_tf_static(self, msg: TFMessage) -> None:
        self._ingest_tf(msg, static=True)

    def _ingest_tf(self, msg: TFMessage, static: bool) -> None:
        _, rejected = self.tf.ingest_tf_message(msg, static=static)
        for reason in rejected:
            self.drops.drop("malformed_tf", reason)

    @guarded("malformed_color")
    def on_color(self, msg: Image) -> None:
        self._queue_for_sync("color", msg)

    @guarded("malformed_depth")
    def on_depth(self, msg: Image) -> None:
        self._queue_for_sync("depth", msg)

    @guarded("malformed_camera_info")
    def on_camera_info(self, msg: CameraInfo) -> None:
        self._queue_for_sync("info", msg)

    def _queue_for_sync(self, topic: str, msg: Any) -> None:
        stamp_ns, _ = _stamp_and_frame(msg, topic)
        assert self.sync is not None
        before = self.sync.stats.get("unmatched", 0)
        self.sync.add(topic, stamp_ns, msg)
        unmatched = self.sync.stats.get("unmatched", 0) - before
        for _ in range(unmatched):
            self.drops.drop("unsynchronised_rgbd", f"no colour/depth/info set within {self.config.sync_slop_s} s")

    @guarded("malformed_rgbd")
    def on_rgbd(self, color_msg: Image, depth_msg: Image, info_msg: CameraInfo) -> None:
        """A synchronised colour + depth + camera-info set: back-project, transform, integrate."""
        c = self.config
        stamp_ns, frame = _stamp_and_frame(depth_msg, "depth image")
        camera = camera_info_to_camera(info_msg)
        depth = depth_to_metres(depth_msg)
        if depth.shape != (camera.height, camera.width):
            raise MessageError(f"depth image is {depth.shape[1]}x{depth.shape[0]} but camera_info says "
                               f"{camera.width}x{camera.height}")
        color = image_to_array(color_msg)
        map_from_camera = self.tf.lookup_transform(c.map_frame, frame, stamp_ns)
        self._integrate(rgbd_points(color, depth, camera, map_from_camera, stamp_ns, c.depth_stride,
                                    c.depth_min_m, c.depth_max_m))

    @guarded("malformed_lidar")
    def on_lidar(self, msg: PointCloud2) -> None:
        c = self.config
        stamp_ns, frame = _stamp_and_frame(msg, "point cloud")
        cloud = pointcloud2_to_array(msg)
        map_from_lidar = self.tf.lookup_transform(c.map_frame, frame, stamp_ns)
        self._integrate(lidar_points(cloud, map_from_lidar, stamp_ns, c.lidar_min_m, c.lidar_max_m))

    def _integrate(self, batch: PointBatch) -> None:
        if len(batch) == 0:
            self.drops.drop(f"empty_{batch.source}", "no valid points in range")
            return
        self.map.integrate(batch)
        self.integrated[batch.source] += 1

    @guarded("map_publish")
    def publish_map(self) -> None:
        if len(self.map) == 0 or self.map_publisher.get_subscription_count() == 0:
            return
        stamp_ns = self.get_clock().now().nanoseconds
        self.map_publisher.publish(array_to_pointcloud2(self.map.to_points(), self.config.map_frame, stamp_ns))


def main(args: list[str] | None = None) -> int:
    from ov3d_ros.ros.launcher import run_nodes
    return run_nodes([FusionNode], ros_args=sys.argv if args is None else args)
