"""What RViz shows: the packaged view names the graph's topics; answers become captioned boxes."""
from __future__ import annotations

import ast

import pytest
import yaml

pytest.importorskip("rclpy")
from builtin_interfaces.msg import Time  # noqa: E402
from geometry_msgs.msg import Vector3  # noqa: E402
from ov3d_interfaces.msg import GroundedObject  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from ov3d_ros.config import default_config_path, load_perception_config  # noqa: E402
from ov3d_ros.ros.nodes.grounding import answer_markers  # noqa: E402


def test_the_rviz_view_shows_the_topics_the_graph_publishes():
    view = yaml.safe_load(default_config_path("ov3d.rviz").read_text())
    manager = view["Visualization Manager"]
    topics = {d["Class"].split("/")[-1]: [] for d in manager["Displays"]}
    for display in manager["Displays"]:
        if "Topic" in display:
            topics[display["Class"].split("/")[-1]].append(display["Topic"]["Value"])
    config = load_perception_config()
    assert manager["Global Options"]["Fixed Frame"] == config.fusion_node.map_frame
    assert topics["PointCloud2"] == [config.segmentation_node.semantic_map_topic]
    assert set(topics["MarkerArray"]) == {config.segmentation_node.markers_topic,
                                          config.grounding_node.answer_markers_topic}
    assert topics["Image"] == [config.fusion_node.color_topic] and "TF" in topics


def test_the_launch_file_parses():
    ast.parse((default_config_path("perception.yaml").parent.parent / "launch" / "perception.launch.py")
              .read_text())


def _candidate(label: str, score: float, x: float) -> GroundedObject:
    candidate = GroundedObject(label=label, score=score, instance_id=3, size=Vector3(x=1.0, y=0.5, z=0.8))
    candidate.pose.pose.position.x, candidate.pose.pose.orientation.w = x, 1.0
    return candidate


def test_an_answer_becomes_captioned_boxes_best_first_and_a_refusal_clears_them():
    markers = answer_markers("the chair by the door", [_candidate("chair", 0.62, 1.0), _candidate("chair", 0.2, 3.0)],
                             "map", Time()).markers
    assert markers[0].action == Marker.DELETEALL and len(markers) == 5
    boxes = [m for m in markers if m.type == Marker.CUBE]
    captions = [m.text for m in markers if m.type == Marker.TEXT_VIEW_FACING]
    assert [b.pose.position.x for b in boxes] == [1.0, 3.0] and boxes[0].color.a > boxes[1].color.a
    assert captions == ["'the chair by the door': chair 0.62", "chair 0.20"]
    assert boxes[0].scale.z == pytest.approx(0.8) and markers[2].pose.position.z == pytest.approx(0.5)
    assert all(m.header.frame_id == "map" for m in markers[1:])
    assert [m.action for m in answer_markers("the lamp", [], "map", Time()).markers] == [Marker.DELETEALL]
