"""grounding_node: serves /ground_object through the ROS-free GroundingEngine."""
from __future__ import annotations

import sys
from typing import Any

from geometry_msgs.msg import PoseStamped, Vector3
from ov3d_interfaces.msg import GroundedObject
from ov3d_interfaces.srv import GroundObject
from rclpy.node import Node

from ov3d_ros.config import GroundingNodeConfig
from ov3d_ros.grounding.engine import EngineSettings, GroundingAnswer, MapObject, load_engine
from ov3d_ros.language.encoders import build_text_encoder
from ov3d_ros.ros.drops import DropCounter
from ov3d_ros.ros.params import declare_config


class GroundingNode(Node):
    """Answers /ground_object; every bad request gets success=false and a reason, never an exception."""

    NODE_NAME = "grounding_node"

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(self.NODE_NAME, **node_kwargs)
        self.config = declare_config(self, GroundingNodeConfig)
        encoder = build_text_encoder(self.config.language)      # the model itself loads at the first query
        self.engine = load_engine(encoder.encode, self.config.grounder_checkpoint,
                                  EngineSettings(min_class_similarity=self.config.min_class_similarity,
                                                 max_query_chars=self.config.max_query_chars))
        self.drops = DropCounter(self.get_logger())
        self.service = self.create_service(GroundObject, "/ground_object", self.on_ground_object)
        self.get_logger().info("serving /ground_object")

    def on_ground_object(self, request: GroundObject.Request, response: GroundObject.Response
                         ) -> GroundObject.Response:
        try:
            answer = self.engine.ground(request.query, self._result_count(request.max_results))
            target = request.target_frame.strip("/") or self.config.map_frame
            if answer.success and target != self.config.map_frame:
                answer = GroundingAnswer(False, f"target_frame '{target}' is not available: this node answers in "
                                                f"'{self.config.map_frame}' until map transforms are wired in")
        except Exception as exc:  # noqa: BLE001 - a service must always answer
            self.drops.drop("internal_error", repr(exc))
            answer = GroundingAnswer(False, f"internal error: {exc}")
        response.success = answer.success
        response.message = answer.message
        response.candidates = [self._to_msg(obj, self.config.map_frame) for obj in answer.candidates]
        if not answer.success:
            self.get_logger().debug(f"query {request.query[:80]!r} not answered: {answer.message}")
        return response

    def _result_count(self, requested: int) -> int:
        if requested == 0:
            return self.config.default_max_results
        return min(int(requested), self.config.max_results_limit)

    def _to_msg(self, obj: MapObject, frame: str) -> GroundedObject:
        pose = PoseStamped()
        pose.header.frame_id = frame
        pose.header.stamp = self.get_clock().now().to_msg()
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in obj.center)
        q = pose.pose.orientation
        q.x, q.y, q.z, q.w = (float(v) for v in obj.orientation_xyzw)
        return GroundedObject(label=obj.label, score=float(obj.score), instance_id=int(obj.instance_id), pose=pose,
                              size=Vector3(x=float(obj.size[0]), y=float(obj.size[1]), z=float(obj.size[2])))


def main(args: list[str] | None = None) -> int:
    from ov3d_ros.ros.launcher import run_nodes
    return run_nodes([GroundingNode], ros_args=sys.argv if args is None else args)
