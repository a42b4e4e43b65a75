"""segmentation_node: the student over the fused map, labels for the current vocabulary, instances for grounding.

Three threads do the work, so the executor keeps serving /set_vocabulary and new data never waits for the
network (`ov3d_ros.mapping.semantic_map`):
- labels: each new /ov3d/map is taken at once (one that arrives while another waits replaces it: counted as
  `superseded`); new voxels are labelled from their neighbours, and the semantic map is published;
- network: the student catches up over the changed regions one tile at a time;
- objects: once the network has caught up (and every `objects_period_s` while it has not) the instances are
  refreshed and published (boxes for RViz, objects for the grounding node) and the semantic map is published
  again with the network's new features (a map is megabytes: not after every tile). A refresh started while the
  network was behind stops as soon as it catches up, and the refresh of the caught-up map starts at once: the
  last answers after the sensors stop never wait for a pass over a map already overtaken.
The network thread runs at the lowest normal priority (`network_nice` 19), the objects thread below it (SCHED_IDLE),
so sensor ingestion and the labels keep up when the machine is busy, the network takes what they leave and the
objects what the network leaves.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from typing import Any

import numpy as np
import torch
import yaml
from ov3d_interfaces.msg import ObjectMap
from ov3d_interfaces.srv import SetVocabulary
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from ov3d_ros.config import ConfigError, SegmentationNodeConfig, state_dir
from ov3d_ros.data.synthetic.categories import label_entries
from ov3d_ros.evaluation.latency import StageTimes
from ov3d_ros.files import atomic_path
from ov3d_ros.grounding.engine import yaw_quaternion
from ov3d_ros.grounding.objects import SceneObjects
from ov3d_ros.language.encoders import build_text_encoder
from ov3d_ros.language.vocabulary import Vocabulary, configured_vocabulary, parse_label_entries
from ov3d_ros.mapping.label_colours import label_colours
from ov3d_ros.mapping.semantic_map import SemanticMap, SemanticMapSettings
from ov3d_ros.mapping.sensor_points import LIDAR_GREY
from ov3d_ros.messages import MessageError, array_to_pointcloud2, pack_rgb, pointcloud2_to_array, unpack_rgb
from ov3d_ros.messages.markers import CaptionedBox, box_markers
from ov3d_ros.messages.object_map import ObjectMapContent, object_map_to_msg
from ov3d_ros.messages.pointcloud import xyz_from_array
from ov3d_ros.messages.types import stamp_to_ns
from ov3d_ros.ros.drops import DropCounter, guarded
from ov3d_ros.ros.health import Health
from ov3d_ros.ros.params import declare_config
from ov3d_ros.ros.qos import LATCHED
from ov3d_ros.training.checkpoint import load_student_and_offset

SEMANTIC_POINT_DTYPE = np.dtype([("x", np.float32), ("y", np.float32), ("z", np.float32), ("rgb", np.float32),
                                 ("label", np.uint32), ("score", np.float32)])
VOCABULARY_FILE = "vocabulary.yaml"
MARKER_ALPHA = 0.35


class SegmentationNode(Node):
    """Labels the fused map with the student and the current vocabulary; see the module docstring."""

    NODE_NAME = "segmentation_node"

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(self.NODE_NAME, **node_kwargs)
        self.config = c = declare_config(self, SegmentationNodeConfig)
        self.drops = DropCounter(self.get_logger(), c.log_throttle_s)
        self.times = StageTimes()
        student, text_space, offset = load_student_and_offset(c.student_checkpoint)
        self.encoder = build_text_encoder(c.language)
        if text_space != self.encoder.name:
            raise ConfigError(f"{c.student_checkpoint} was trained in the text space {text_space!r} but "
                              f"language.encoder gives {self.encoder.name!r}")
        self._vocabulary_path = state_dir(c.snapshot_dir) / VOCABULARY_FILE
        self.semantic = SemanticMap(student, self._build_vocabulary(self._initial_entries()), offset,
                                    SemanticMapSettings(block_m=c.block_m, margin_m=c.margin_m, tile_m=c.tile_m,
                                                        stale_share=c.stale_share,
                                                        superpoint_processes=c.objects_processes,
                                                        superpoint_voting=c.superpoint_voting), self.times)
        self.superseded = 0
        self._pending: PointCloud2 | None = None
        self._stamp_ns = 0
        self._objects_due = False
        self._last_objects = -float("inf")        # when the last objects pass started
        self._object_count = 0
        self._objects_version = -1
        self._lock = threading.Lock()
        self._wake, self._network_wake, self._objects_wake = threading.Event(), threading.Event(), threading.Event()
        self._stop = threading.Event()

        self.semantic_publisher = self.create_publisher(PointCloud2, c.semantic_map_topic, LATCHED)
        self.marker_publisher = self.create_publisher(MarkerArray, c.markers_topic, LATCHED)
        self.objects_publisher = self.create_publisher(ObjectMap, c.objects_topic, LATCHED)
        group = MutuallyExclusiveCallbackGroup()
        self.create_subscription(PointCloud2, c.map_topic, self.on_map, LATCHED, callback_group=group)
        self.create_service(SetVocabulary, "/set_vocabulary", self.on_set_vocabulary, callback_group=group)
        self.health = Health(self, self.drops, self.times, c.diagnostics_period_s, self._health_values,
                             callback_group=group)
        self._threads = [threading.Thread(target=self._label_loop, name="labels", daemon=True),
                         threading.Thread(target=self._network_loop, name="network", daemon=True),
                         threading.Thread(target=self._objects_loop, name="objects", daemon=True)]
        for thread in self._threads:
            thread.start()
        self.get_logger().info(f"labelling {c.map_topic} with {len(self.semantic.vocabulary.labels)} labels "
                               f"({self.encoder.name})")

    # -- vocabulary -----------------------------------------------------------------------------------------

    def _initial_entries(self) -> list[str]:
        """The vocabulary last set at run time (when the configured one is unchanged since), else the config's."""
        configured = list(self.config.vocabulary) or label_entries()
        if self._vocabulary_path.is_file():
            try:
                saved = yaml.safe_load(self._vocabulary_path.read_text(encoding="utf-8")) or {}
                if saved.get("configured") == configured and isinstance(saved.get("entries"), list):
                    self.get_logger().info(f"vocabulary from {self._vocabulary_path}")
                    return [str(entry) for entry in saved["entries"]]
            except (OSError, yaml.YAMLError, AttributeError) as exc:
                self.get_logger().warning(f"ignoring {self._vocabulary_path}: {exc}")
        return configured

    def _build_vocabulary(self, entries: list[str]) -> Vocabulary:
        with self.times.measure("embed_vocabulary"):
            return configured_vocabulary(entries, self.config.language, self.encoder)

    def on_set_vocabulary(self, request: SetVocabulary.Request, response: SetVocabulary.Response
                          ) -> SetVocabulary.Response:
        c = self.config
        entries = list(request.labels)
        try:
            if not entries or len(entries) > c.max_vocabulary_labels:
                raise ValueError(f"give 1 to {c.max_vocabulary_labels} labels, got {len(entries)}")
            parse_label_entries(entries, c.max_label_chars)
            vocabulary = self._build_vocabulary(entries)
            with self.times.measure("relabel"):
                self.semantic.set_vocabulary(vocabulary)
            self._save_vocabulary(entries)
        except ValueError as exc:
            response.success, response.message = False, str(exc)
            return response
        except Exception as exc:  # noqa: BLE001 - a service must always answer
            self.drops.drop("internal_error", traceback.format_exc(limit=4))
            response.success, response.message = False, f"internal error: {exc}"
            return response
        self._objects_due, self._last_objects = True, -float("inf")
        self._request_republish()
        self._objects_wake.set()
        response.success = True
        response.message = f"{len(vocabulary.labels)} labels; {len(self.semantic)} voxels relabelled"
        return response

    def _save_vocabulary(self, entries: list[str]) -> None:
        configured = list(self.config.vocabulary) or label_entries()
        try:
            with atomic_path(self._vocabulary_path) as temporary:
                temporary.write_text(yaml.safe_dump({"configured": configured, "entries": entries}),
                                     encoding="utf-8")
        except OSError as exc:
            self.drops.drop("snapshot_failed", f"cannot write {self._vocabulary_path}: {exc}")

    # -- map in, work in a thread ---------------------------------------------------------------------------

    @guarded("malformed_map")
    def on_map(self, msg: PointCloud2) -> None:
        stamp_to_ns(msg.header.stamp)
        with self._lock:
            if self._pending is not None:
                self.superseded += 1
            self._pending = msg
        self._wake.set()

    def _label_loop(self) -> None:
        """Thread 1: take each new map (fast: neighbours label new voxels) and publish the semantic map."""
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if not self._stop.is_set():
                self._label_step()

    @guarded("malformed_map")
    def _label_step(self) -> None:
        with self._lock:
            msg, self._pending = self._pending, None
        if msg is not None:
            self._update(msg)
        if len(self.semantic):
            with self.times.measure("publish_semantic_map"):
                self._publish_semantic_map()
        self._network_wake.set()

    def _lower_priority(self, idle: bool) -> None:
        """Run the calling thread at niceness `network_nice`, under SCHED_IDLE if `idle` (the worker threads it
        starts, torch's and scipy's, inherit both)."""
        thread = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, thread, self.config.network_nice)
            if idle:
                os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError) as exc:        # AttributeError: not Linux
            self.get_logger().warning(f"{threading.current_thread().name} thread keeps its priority: {exc}")

    def _network_loop(self) -> None:
        """Thread 2: the network over stale tiles, one at a time."""
        self._lower_priority(self.config.network_sched_idle)
        torch.set_num_threads(self.config.threads)
        while not self._stop.is_set():
            self._network_wake.wait(timeout=0.0 if self.semantic.stale_blocks else None)
            self._network_wake.clear()
            if not self._stop.is_set():
                self._network_step()

    @guarded("internal_error")
    def _network_step(self) -> None:
        if not self.semantic.stale_blocks:
            return
        with self.times.measure("compute_tile"):
            report = self.semantic.compute()
        if report.recomputed:                # shown with the next map, or with the objects' refresh
            self.times.add("student", report.student_s * 1000.0)
            self._objects_due = True
            self._objects_wake.set()

    def _objects_loop(self) -> None:
        """Thread 3: the objects, when due: at once when the network has caught up, else every objects_period_s.
        Always under SCHED_IDLE: the network's tiles come first."""
        self._lower_priority(True)
        while not self._stop.is_set():
            wait = None
            if self._objects_due and self.semantic.stale_blocks:
                wait = max(self._last_objects + self.config.objects_period_s - time.monotonic(), 0.0)
            self._objects_wake.wait(timeout=wait)
            self._objects_wake.clear()
            if not self._stop.is_set():
                self._objects_step()

    @guarded("internal_error")
    def _objects_step(self) -> None:
        behind = bool(self.semantic.stale_blocks)
        if not self._objects_due or \
                (behind and time.monotonic() - self._last_objects < self.config.objects_period_s):
            return
        self._objects_due = False
        self._last_objects = time.monotonic()
        # a pass over a map the network is still catching up on gives way once it has caught up
        overtaken = (lambda: not self.semantic.stale_blocks) if behind else None
        with self.times.measure("objects"):
            result = self.semantic.objects(overtaken)
        if result is None:
            self.times.add("objects_overtaken", (time.monotonic() - self._last_objects) * 1000.0)
            self._objects_due = True
            self._objects_wake.set()
            return
        self._publish_objects(*result)
        self._objects_version = self.semantic.objects_version
        self._request_republish()

    def _request_republish(self) -> None:
        """Have the labels thread publish the semantic map again (features or labels changed)."""
        self._wake.set()

    def _update(self, msg: PointCloud2) -> None:
        frame = msg.header.frame_id.strip("/")
        if frame != self.config.map_frame:
            raise MessageError(f"map is in frame '{frame}', this node maps in '{self.config.map_frame}'")
        with self.times.measure("decode_map"):
            cloud = pointcloud2_to_array(msg)
            xyz, kept = xyz_from_array(cloud)
            names, points = cloud.dtype.names or (), cloud.reshape(-1)
            rgb = unpack_rgb(points["rgb"][kept]) if "rgb" in names else np.full((len(xyz), 3), LIDAR_GREY, np.uint8)
            colour_known = points["colour_count"][kept] > 0 if "colour_count" in names else \
                np.full(len(xyz), "rgb" in names)
        with self.times.measure("update"):
            change = self.semantic.update(xyz, rgb, colour_known)
        self._stamp_ns = stamp_to_ns(msg.header.stamp)
        if change.changed:
            self._objects_due = True
            self._objects_wake.set()

    # -- outputs --------------------------------------------------------------------------------------------

    def _publish_semantic_map(self) -> None:
        xyz, _, labels, scores, names = self.semantic.snapshot()
        out = np.empty(len(xyz), SEMANTIC_POINT_DTYPE)
        out["x"], out["y"], out["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        out["rgb"] = pack_rgb(label_colours(names)[labels])
        out["label"], out["score"] = labels, scores
        self.semantic_publisher.publish(array_to_pointcloud2(out, self.config.map_frame, self._stamp_ns))

    def _publish_objects(self, objects: SceneObjects, ids: np.ndarray) -> None:
        vocabulary = self.semantic.vocabulary
        self._object_count = len(objects)
        content = ObjectMapContent(objects, ids, tuple(vocabulary.entries()), vocabulary.encoder_name,
                                   self.semantic.offset, self.config.map_frame, self._stamp_ns)
        self.objects_publisher.publish(object_map_to_msg(content))
        self.marker_publisher.publish(self._markers(objects, ids, vocabulary.labels))

    def _markers(self, objects: SceneObjects, ids: np.ndarray, labels: tuple[str, ...]) -> MarkerArray:
        colours = label_colours(labels) / 255.0
        boxes = [CaptionedBox(int(ids[i]), objects.centres[i], objects.sizes[i],
                              yaw_quaternion(float(objects.yaws[i])), colours[int(objects.labels[i])], MARKER_ALPHA,
                              f"{labels[int(objects.labels[i])]} #{int(ids[i])}") for i in range(len(objects))]
        return box_markers(boxes, self.config.map_frame, self.get_clock().now().to_msg())

    def _health_values(self) -> dict[str, Any]:
        with self._lock:
            waiting = int(self._pending is not None)
        return {"map.voxels": len(self.semantic), "objects": self._object_count, "queue.maps_waiting": waiting,
                "superseded_maps": self.superseded, "stale_blocks": self.semantic.stale_blocks,
                "vocabulary.labels": len(self.semantic.vocabulary.labels),
                "semantic_map.stamp_ns": self._stamp_ns, "semantic.version": self.semantic.version,
                "objects.version": self._objects_version}

    def close(self) -> None:
        """Stop the worker threads (a clean stop)."""
        self._stop.set()
        for event in (self._wake, self._network_wake, self._objects_wake):
            event.set()
        for thread in self._threads:
            thread.join(timeout=10.0)
        self.semantic.close()


def main(args: list[str] | None = None) -> int:
    from ov3d_ros.ros.launcher import run_nodes
    return run_nodes([SegmentationNode], ros_args=sys.argv if args is None else args)
