"""fusion_node: RGB-D and LiDAR in, transformed with TF into the map frame, fused into the voxel map.

Readings are integrated when they are keyframes (the sensor moved, turned, or enough time passed). The map is
published when it changed, snapshotted atomically every `snapshot_period_s` and at a clean stop, and restored from
the snapshot at start (`resume`). /ov3d/save_map and /ov3d/load_map save to / load from any path.
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from ov3d_interfaces.srv import MapFile

from ov3d_ros.config import FusionNodeConfig, state_dir
from ov3d_ros.evaluation.latency import StageTimes
from ov3d_ros.geometry.tf_buffer import TransformBuffer, TransformLookupError
from ov3d_ros.geometry.transforms import RigidTransform
from ov3d_ros.mapping.keyframes import KeyframePolicy, KeyframeSelector
from ov3d_ros.mapping.sensor_points import PointBatch, lidar_points, rgbd_points
from ov3d_ros.mapping.voxel_map import MapFileError, VoxelMap
from ov3d_ros.messages import (
    MessageError,
    array_to_pointcloud2,
    camera_info_to_camera,
    pointcloud2_to_array,
)
from ov3d_ros.messages.compressed import colour_pixels, depth_metres
from ov3d_ros.messages.time_sync import ApproximateTimeSynchronizer
from ov3d_ros.messages.types import stamp_to_ns
from ov3d_ros.ros.drops import DropCounter, guarded, run_guarded
from ov3d_ros.ros.health import Health
from ov3d_ros.ros.params import declare_config
from ov3d_ros.ros.qos import LATCHED, sensor_qos
from ov3d_ros.ros.tf_listener import TfListenerMixin

SNAPSHOT_NAME = "map.npz"



def _stamp_and_frame(msg: Any, what: str) -> tuple[int, str]:
    """Header stamp (ns) and frame of a sensor message; MessageError when either is unusable."""
    stamp_ns = stamp_to_ns(msg.header.stamp)
    frame = msg.header.frame_id.strip("/")
    if not frame:
        raise MessageError(f"{what} has an empty header.frame_id")
    if stamp_ns <= 0:
        raise MessageError(f"{what} has no header stamp")
    return stamp_ns, frame


class FusionNode(TfListenerMixin, Node):
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
        self.keyframes = KeyframeSelector(KeyframePolicy(c.keyframe_translation_m, c.keyframe_rotation_deg,
                                                         c.keyframe_max_interval_s))
        self.snapshot_path = state_dir(c.snapshot_dir) / SNAPSHOT_NAME
        self.received = {"color": 0, "depth": 0, "info": 0, "lidar": 0}
        self.integrated = {"rgbd": 0, "lidar": 0}
        self.skipped = {"rgbd": 0, "lidar": 0}        # not keyframes
        self.times = StageTimes()
        self._waiting_for_tf: deque[tuple[float, str, str, int, Callable[[], None]]] = deque()
        self._waiting_lock = threading.Lock()
        self._retry = threading.local()          # .active: this thread is re-running a waiting reading
        self._published_version = -1
        self._last_reading = time.monotonic()       # when a reading was last integrated
        self._snapshot_version = 0
        if c.resume and self.snapshot_path.is_file():
            self._resume()
        # RGB-D and LiDAR in their own groups: under a multi-threaded executor a slow depth frame never holds a
        # LiDAR scan back (under the default events executor callbacks run one at a time; bursts wait in the queues)
        tf_group, sensor_group, lidar_group = (MutuallyExclusiveCallbackGroup() for _ in range(3))
        service_group = MutuallyExclusiveCallbackGroup()
        self.listen_to_tf(tf_group)
        sensors = sensor_qos(c.queue_depth)
        self.sync: ApproximateTimeSynchronizer | None = None
        if c.use_rgbd:
            self.sync = ApproximateTimeSynchronizer(["color", "depth", "info"], c.sync_queue_size, c.sync_slop_s,
                                                    callback=self.on_rgbd)
            images = c.image_inputs()
            for name, callback in (("color", self.on_color), ("depth", self.on_depth)):
                topic, kind = images[name]
                self.create_subscription(CompressedImage if kind.endswith("CompressedImage") else Image, topic,
                                         callback, sensors, callback_group=sensor_group)
            self.create_subscription(CameraInfo, c.camera_info_topic, self.on_camera_info, sensors,
                                     callback_group=sensor_group)
        if c.use_lidar:
            self.create_subscription(PointCloud2, c.lidar_topic, self.on_lidar, sensors,
                                     callback_group=lidar_group)
        self.map_publisher = self.create_publisher(PointCloud2, c.map_topic, LATCHED)
        if c.tf_wait_s > 0:
            self.create_timer(0.05, self._retry_waiting_for_tf, callback_group=sensor_group)
        self.create_timer(1.0 / c.map_publish_rate_hz, self.publish_map, callback_group=service_group)
        if c.map_publish_idle_s > 0:
            self.create_timer(c.map_publish_idle_s / 2, self._publish_when_idle, callback_group=service_group)
        self.create_service(MapFile, "/ov3d/save_map", self.on_save_map, callback_group=service_group)
        self.create_service(MapFile, "/ov3d/load_map", self.on_load_map, callback_group=service_group)
        if c.snapshot_period_s > 0:
            self.create_timer(c.snapshot_period_s, self.snapshot, callback_group=service_group)
        self.health = Health(self, self.drops, self.times, c.diagnostics_period_s, self._health_values,
                             callback_group=service_group)
        self.get_logger().info(f"fusing {'RGB-D ' if c.use_rgbd else ''}{'LiDAR ' if c.use_lidar else ''}"
                               f"into '{c.map_frame}' at {c.voxel_size_m * 100:.1f} cm voxels")

    @guarded("malformed_color")
    def on_color(self, msg: Image | CompressedImage) -> None:
        self._queue_for_sync("color", msg)

    @guarded("malformed_depth")
    def on_depth(self, msg: Image | CompressedImage) -> None:
        self._queue_for_sync("depth", msg)

    @guarded("malformed_camera_info")
    def on_camera_info(self, msg: CameraInfo) -> None:
        self._queue_for_sync("info", msg)

    def _queue_for_sync(self, topic: str, msg: Any) -> None:
        self.received[topic] += 1
        stamp_ns, _ = _stamp_and_frame(msg, topic)
        assert self.sync is not None
        before = self.sync.stats.get("unmatched", 0)
        self.sync.add(topic, stamp_ns, msg)
        unmatched = self.sync.stats.get("unmatched", 0) - before
        for _ in range(unmatched):
            self.drops.drop("unsynchronised_rgbd", f"no colour/depth/info set within {self.config.sync_slop_s} s")

    @guarded("malformed_rgbd")
    def on_rgbd(self, color_msg: Image | CompressedImage, depth_msg: Image | CompressedImage,
                info_msg: CameraInfo) -> None:
        """A synchronised colour + depth + camera-info set: decode, then back-project and integrate once posed."""
        c = self.config
        stamp_ns, frame = _stamp_and_frame(depth_msg, "depth image")
        camera = camera_info_to_camera(info_msg)
        depth = depth_metres(depth_msg)
        if depth.shape != (camera.height, camera.width):
            raise MessageError(f"depth image is {depth.shape[1]}x{depth.shape[0]} but camera_info says "
                               f"{camera.width}x{camera.height}")
        color = colour_pixels(color_msg)
        self._integrate_when_posed("rgbd", frame, stamp_ns, lambda pose: rgbd_points(
            color, depth, camera, pose, stamp_ns, c.depth_stride, c.depth_min_m, c.depth_max_m))

    @guarded("malformed_lidar")
    def on_lidar(self, msg: PointCloud2) -> None:
        c = self.config
        self.received["lidar"] += 1
        stamp_ns, frame = _stamp_and_frame(msg, "point cloud")
        cloud = pointcloud2_to_array(msg)
        self._integrate_when_posed("lidar", frame, stamp_ns, lambda pose: lidar_points(
            cloud, pose, stamp_ns, c.lidar_min_m, c.lidar_max_m))

    def _integrate_when_posed(self, source: str, frame: str, stamp_ns: int,
                              points: Callable[[RigidTransform], PointBatch]) -> None:
        """Integrate a decoded reading once its pose in the map is known (it may wait for TF) and it is a
        keyframe."""
        pose = self._lookup_or_wait(source, frame, stamp_ns,
                                    lambda: self._integrate_when_posed(source, frame, stamp_ns, points))
        if pose is None:
            return
        if not self.keyframes.due(frame, pose, stamp_ns):
            self.skipped[source] += 1
            return
        if self._integrate(points(pose)):
            self.keyframes.mark(frame, pose, stamp_ns)

    def _lookup_or_wait(self, source: str, frame: str, stamp_ns: int,
                        retry: Callable[[], None]) -> RigidTransform | None:
        """map <- frame at the reading's stamp; None when the transform may still arrive (the reading waits up to
        tf_wait_s and `retry` runs it again). Raises TransformLookupError when waiting is over or off."""
        try:
            return self.tf.lookup_transform(self.config.map_frame, frame, stamp_ns)
        except TransformLookupError:
            if getattr(self._retry, "active", False) or self.config.tf_wait_s <= 0:
                raise
        with self._waiting_lock:
            overflow = len(self._waiting_for_tf) >= self.config.sync_queue_size
            if overflow:
                self._waiting_for_tf.popleft()
            self._waiting_for_tf.append((time.monotonic() + self.config.tf_wait_s, source, frame, stamp_ns, retry))
        if overflow:
            self.drops.drop("tf_lookup_failed", "too many readings waiting for their transforms")
        return None

    def _retry_waiting_for_tf(self) -> None:
        """Run again the readings whose transform arrived, and those whose wait is over (they then fail)."""
        with self._waiting_lock:
            waiting, self._waiting_for_tf = self._waiting_for_tf, deque()
        now, still = time.monotonic(), []
        for item in waiting:
            deadline, source, frame, stamp_ns, retry = item
            if now < deadline and not self.tf.can_transform(self.config.map_frame, frame, stamp_ns):
                still.append(item)
                continue
            self._retry.active = True
            try:
                run_guarded(self, f"malformed_{source}", retry)
            finally:
                self._retry.active = False
        with self._waiting_lock:
            self._waiting_for_tf.extendleft(reversed(still))

    def _integrate(self, batch: PointBatch) -> bool:
        """Fuse a reading into the map; False (counted) when it holds no valid point."""
        if len(batch) == 0:
            self.drops.drop(f"empty_{batch.source}", "no valid points in range")
            return False
        with self.times.measure(f"integrate_{batch.source}"):
            self.map.integrate(batch)
        self.integrated[batch.source] += 1
        self._last_reading = time.monotonic()
        return True

    def _publish_when_idle(self) -> None:
        """Publish a changed map once the readings have paused for map_publish_idle_s."""
        if time.monotonic() - self._last_reading >= self.config.map_publish_idle_s:
            self.publish_map()

    @guarded("map_publish")
    def publish_map(self) -> None:
        """Publish the map when it changed; its stamp is that of the newest reading it holds."""
        version = self.map.version
        if len(self.map) == 0 or version == self._published_version or \
                self.map_publisher.get_subscription_count() == 0:
            return
        with self.times.measure("publish_map"):
            msg = array_to_pointcloud2(self.map.to_points(), self.config.map_frame, self.map.newest_stamp_ns)
            self.map_publisher.publish(msg)
        self._published_version = version

    def _resume(self) -> None:
        try:
            count = self.map.load(self.snapshot_path)
        except MapFileError as exc:
            self.get_logger().error(f"not resuming: {exc}")
            return
        self._snapshot_version = self.map.version
        age = time.time() - self.snapshot_path.stat().st_mtime
        self.get_logger().info(f"resumed {count} voxels from {self.snapshot_path} (written {age:.0f} s ago)")

    def snapshot(self) -> None:
        """Write the periodic snapshot when the map changed since the last one."""
        version = self.map.version
        if version == self._snapshot_version or len(self.map) == 0:
            return
        try:
            with self.times.measure("snapshot"):
                self.map.save(self.snapshot_path)
            self._snapshot_version = version
        except OSError as exc:
            self.drops.drop("snapshot_failed", f"cannot write {self.snapshot_path}: {exc}")

    def on_save_map(self, request: MapFile.Request, response: MapFile.Response) -> MapFile.Response:
        path = Path(request.path).expanduser() if request.path.strip() else self.snapshot_path
        try:
            count = self.map.save(path)
            response.success, response.message = True, f"saved {count} voxels to {path}"
        except OSError as exc:
            response.success, response.message = False, f"cannot write {path}: {exc.strerror or exc}"
        return response

    def on_load_map(self, request: MapFile.Request, response: MapFile.Response) -> MapFile.Response:
        path = Path(request.path).expanduser() if request.path.strip() else self.snapshot_path
        try:
            count = self.map.load(path)
            self.keyframes.reset()
            response.success, response.message = True, f"loaded {count} voxels from {path}"
        except MapFileError as exc:
            response.success, response.message = False, str(exc)
        return response

    def _health_values(self) -> dict[str, Any]:
        values: dict[str, Any] = {"map.voxels": len(self.map), "map.evicted": self.map.evicted,
                                  "map.budget": self.map.max_voxels, "map.stamp_ns": self.map.newest_stamp_ns,
                                  "map.version": self.map.version, "published.version": self._published_version,
                                  "queue.waiting_for_tf": len(self._waiting_for_tf)}
        values.update({f"received.{topic}": count for topic, count in self.received.items()})
        values.update({f"integrated.{source}": count for source, count in self.integrated.items()})
        values.update({f"skipped_not_keyframe.{source}": count for source, count in self.skipped.items()})
        if self.sync is not None:
            values.update({f"queue.sync_{topic}": depth for topic, depth in self.sync.queue_depths().items()})
        return values

    def close(self) -> None:
        """A clean stop: write the last snapshot."""
        self.snapshot()


def main(args: list[str] | None = None) -> int:
    from ov3d_ros.ros.launcher import run_nodes
    return run_nodes([FusionNode], ros_args=sys.argv if args is None else args)
