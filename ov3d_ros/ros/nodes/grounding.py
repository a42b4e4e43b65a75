"""grounding_node: serves /ground_object through the ROS-free GroundingEngine, on the objects segmentation_node
publishes, answering in the requested frame (TF)."""
from __future__ import annotations

import sys
from typing import Any, Sequence

import numpy as np
import torch
from geometry_msgs.msg import PoseStamped, Vector3
from ov3d_interfaces.msg import GroundedObject, ObjectMap
from ov3d_interfaces.srv import GroundObject
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from scipy.spatial.transform import Rotation
from visualization_msgs.msg import MarkerArray

from ov3d_ros.config import GroundingNodeConfig
from ov3d_ros.evaluation.latency import StageTimes
from ov3d_ros.geometry.tf_buffer import TransformBuffer
from ov3d_ros.geometry.transforms import RigidTransform
from ov3d_ros.grounding.engine import (INTERNAL_ERROR, UNREACHABLE_FRAME, EngineSettings, GroundingAnswer,
                                      MapObject, load_engine)
from ov3d_ros.language.encoders import build_text_encoder
from ov3d_ros.language.vocabulary import Vocabulary, configured_vocabulary
from ov3d_ros.messages import MessageError
from ov3d_ros.messages.markers import CaptionedBox, box_markers
from ov3d_ros.messages.object_map import msg_to_object_map
from ov3d_ros.ros.drops import DropCounter, guarded
from ov3d_ros.ros.health import Health
from ov3d_ros.ros.params import declare_config
from ov3d_ros.ros.qos import LATCHED
from ov3d_ros.ros.tf_listener import TfListenerMixin

ANSWER_CAPTION_CHARS = 60                  # of the query, in the best candidate's caption
BEST_RGB, OTHER_RGB = np.array([0.1, 0.85, 0.2]), np.array([1.0, 0.6, 0.1])


class GroundingNode(TfListenerMixin, Node):
    """Answers /ground_object; every bad request gets success=false and a reason, never an exception."""

    NODE_NAME = "grounding_node"

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(self.NODE_NAME, **node_kwargs)
        self.config = c = declare_config(self, GroundingNodeConfig)
        self.encoder = build_text_encoder(c.language)
        self.encoder.encode(["warm up"])          # load the text model now, not at a planner's first call
        self.engine = load_engine(self.encoder.encode, c.grounder_checkpoint,
                                  EngineSettings(min_class_similarity=c.min_class_similarity,
                                                 min_resemblance=c.min_resemblance,
                                                 max_query_chars=c.max_query_chars))
        self.drops = DropCounter(self.get_logger(), c.log_throttle_s)
        self.times = StageTimes()
        self.tf = TransformBuffer(cache_time_s=c.tf_cache_s)
        self._vocabulary: Vocabulary | None = None
        self.map_stamp_ns = 0
        map_group, service_group = MutuallyExclusiveCallbackGroup(), MutuallyExclusiveCallbackGroup()
        self.listen_to_tf(map_group)
        self.create_subscription(ObjectMap, c.objects_topic, self.on_objects, LATCHED, callback_group=map_group)
        self.service = self.create_service(GroundObject, "/ground_object", self.on_ground_object,
                                           callback_group=service_group)
        self.answer_publisher = self.create_publisher(MarkerArray, c.answer_markers_topic, LATCHED)
        self.health = Health(self, self.drops, self.times, c.diagnostics_period_s, self._health_values,
                             callback_group=map_group)
        self.get_logger().info("serving /ground_object")

    @guarded("malformed_objects")
    def on_objects(self, msg: ObjectMap) -> None:
        """A new set of the map's objects: embed its vocabulary (cached) and hand both to the engine."""
        content = msg_to_object_map(msg)
        if content.frame_id != self.config.map_frame:
            raise MessageError(f"objects are in frame '{content.frame_id}', this node answers from "
                               f"'{self.config.map_frame}'")
        if content.text_space != self.encoder.name:
            raise MessageError(f"objects are in the text space {content.text_space!r}, queries are embedded with "
                               f"{self.encoder.name!r}: set the same language.encoder on both nodes")
        with self.times.measure("set_map"):
            if self._vocabulary is None or self._vocabulary.entries() != list(content.vocabulary):
                self._vocabulary = configured_vocabulary(content.vocabulary, self.config.language, self.encoder)
            self.engine.set_map(content.objects, self._vocabulary, content.instance_ids, content.text_offset)
        self.map_stamp_ns = content.stamp_ns

    def on_ground_object(self, request: GroundObject.Request, response: GroundObject.Response
                         ) -> GroundObject.Response:
        target = request.target_frame.strip("/") or self.config.map_frame
        if torch.get_num_threads() != self.config.threads:
            torch.set_num_threads(self.config.threads)     # per calling thread: set in the one that answers
        try:
            with self.times.measure("ground"):
                answer = self.engine.ground(request.query, self._result_count(request.max_results))
            to_target = self._to_target(target) if answer.success else None
        except LookupError as exc:
            answer, to_target = GroundingAnswer(False, f"{UNREACHABLE_FRAME} '{target}': {exc}"), None
        except Exception as exc:  # noqa: BLE001 - a service must always answer
            self.drops.drop("internal_error", repr(exc))
            answer, to_target = GroundingAnswer(False, f"{INTERNAL_ERROR}: {exc}"), None
        response.success = answer.success
        response.message = answer.message
        response.candidates = [self._to_msg(obj, target, to_target) for obj in answer.candidates] \
            if to_target is not None else []
        if not answer.success:
            self.get_logger().debug(f"query {request.query[:80]!r} not answered: {answer.message}")
        self.answer_publisher.publish(answer_markers(str(request.query), response.candidates, target,
                                                     self.get_clock().now().to_msg()))
        return response

    def _to_target(self, target: str) -> RigidTransform:
        """target <- map at the newest time both are known (LookupError when they are not connected)."""
        if target == self.config.map_frame:
            return RigidTransform.identity()
        return self.tf.lookup_transform(target, self.config.map_frame, None)

    def _result_count(self, requested: int) -> int:
        if requested == 0:
            return self.config.default_max_results
        return min(int(requested), self.config.max_results_limit)

    def _to_msg(self, obj: MapObject, frame: str, to_target: RigidTransform) -> GroundedObject:
        pose = PoseStamped()
        pose.header.frame_id = frame
        pose.header.stamp = self.get_clock().now().to_msg()
        centre = to_target.apply(np.asarray(obj.center, np.float64)[None])[0]
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in centre)
        orientation = (to_target.rotation * Rotation.from_quat(obj.orientation_xyzw)).as_quat()
        q = pose.pose.orientation
        q.x, q.y, q.z, q.w = (float(v) for v in orientation)
        return GroundedObject(label=obj.label, score=float(obj.score), instance_id=int(obj.instance_id), pose=pose,
                              size=Vector3(x=float(obj.size[0]), y=float(obj.size[1]), z=float(obj.size[2])))

    def _health_values(self) -> dict[str, Any]:
        return {"objects": self.engine.object_count, "objects.stamp_ns": self.map_stamp_ns}


def answer_markers(query: str, candidates: Sequence[GroundedObject], frame: str, stamp: Any) -> MarkerArray:
    """An answer for RViz: the best candidate's box (with the query in its caption) and fainter boxes for the
    others, each captioned with its label and score; no candidates clear the previous answer."""
    boxes = []
    for rank, candidate in enumerate(candidates):
        pose, size = candidate.pose.pose, candidate.size
        prefix = f"'{query[:ANSWER_CAPTION_CHARS]}': " if rank == 0 else ""
        boxes.append(CaptionedBox(rank, np.array([pose.position.x, pose.position.y, pose.position.z]),
                                  np.array([size.x, size.y, size.z]),
                                  np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z,
                                            pose.orientation.w]),
                                  BEST_RGB if rank == 0 else OTHER_RGB, 0.5 if rank == 0 else 0.2,
                                  f"{prefix}{candidate.label} {candidate.score:.2f}"))
    return box_markers(boxes, frame, stamp)


def main(args: list[str] | None = None) -> int:
    from ov3d_ros.ros.launcher import run_nodes
    return run_nodes([GroundingNode], ros_args=sys.argv if args is None else args)
