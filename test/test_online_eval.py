"""Scoring the online graph: labels carried from the map onto ground-truth points, answer boxes from poses,
and the replay's publish log."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ov3d_ros.data.openscene import SceneCloud
from ov3d_ros.evaluation.online import LabelledMap, answer_box, miss_reasons, transfer_labels


def test_labels_transfer_by_nearest_map_point_within_reach():
    labelled = LabelledMap(np.array([[0.0, 0, 0], [1.0, 0, 0]]), np.array([0, 1]), np.zeros((2, 3), np.uint8),
                           ("Chair", "lamp"))
    points = np.array([[0.01, 0, 0], [0.99, 0, 0.02], [0.5, 0, 0]])
    assert list(transfer_labels(labelled, points, ["table", "lamp", "chair"])) == [2, 1, -1]
    assert list(transfer_labels(labelled, points, ["table"])) == [-1, -1, -1]        # names not in the classes
    empty = LabelledMap(np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros((0, 3), np.uint8), ())
    assert list(transfer_labels(empty, points, ["lamp"])) == [-1, -1, -1]


def test_a_missed_object_is_unseen_mislabelled_or_split():
    # three mugs (class 1) of 10 points each on a line; the online map saw the first two
    coords = np.stack([np.arange(30) * 0.01 + np.repeat([0.0, 1.0, 2.0], 10), np.zeros(30), np.zeros(30)], axis=1)
    cloud = SceneCloud("s", coords, np.zeros((30, 3), np.uint8), np.ones(30, np.int64), np.repeat([0, 1, 2], 10))
    seen = coords[:20]
    labelled = LabelledMap(seen, np.r_[np.zeros(10, np.int64), np.ones(10, np.int64)],
                           np.zeros((20, 3), np.uint8), ("counter", "mug"))
    classes = ["counter", "mug"]
    assert miss_reasons(cloud, [0], labelled, classes) == {"unseen": 0, "mislabelled": 1, "split_or_merged": 0}
    assert miss_reasons(cloud, [1], labelled, classes) == {"unseen": 0, "mislabelled": 0, "split_or_merged": 1}
    assert miss_reasons(cloud, [2, 0], labelled, classes) == {"unseen": 1, "mislabelled": 1, "split_or_merged": 0}


def test_answer_box_takes_the_yaw_of_the_pose():
    quaternion = Rotation.from_euler("z", 0.7).as_quat()
    box = answer_box((1.0, 2.0, 0.5), quaternion, (0.4, 0.2, 1.0))
    assert box.yaw == pytest.approx(0.7) and np.allclose(box.centre, (1, 2, 0.5)) and np.allclose(box.size,
                                                                                               (0.4, 0.2, 1))


def test_publish_log_finds_the_reading_a_map_holds():
    pytest.importorskip("rclpy")                   # replay_eval belongs to the ROS layer
    from ov3d_ros.ros.replay_eval import PublishLog
    log = PublishLog()
    for stamp, wall in ((10, 1.0), (20, 2.0), (30, 3.0)):
        log.add(stamp, wall)
    assert log.published_at(25) == 2.0 and log.published_at(30) == 3.0 and log.published_at(5) is None


def test_ingested_share_is_the_worst_sensor_topic():
    pytest.importorskip("rclpy")
    from ov3d_ros.config import FusionNodeConfig
    from ov3d_ros.ros.replay_eval import ingested_fraction
    c = FusionNodeConfig()
    published = {c.color_topic: 100, c.depth_topic: 100, c.camera_info_topic: 100, c.lidar_topic: 50, "/tf": 9}
    assert ingested_fraction(c, published, {"color": 100, "depth": 80, "info": 100, "lidar": 50}) == 0.8
    assert ingested_fraction(c, {c.lidar_topic: 10}, {"lidar": 10, "color": 0}) == 1.0     # RGB-D not in the bag
    assert ingested_fraction(c, {}, {}) == 1.0


def test_stamp_read_from_serialised_bytes():
    pytest.importorskip("rclpy")
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import PointCloud2

    from ov3d_ros.ros.graph_client import cdr_header_stamp_ns
    msg = PointCloud2()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_123, 456
    assert cdr_header_stamp_ns(serialize_message(msg)) == 1_700_000_123_000_000_456
    with pytest.raises(ValueError):
        cdr_header_stamp_ns(b"\x00\x00")


def test_unsettled_names_what_the_graph_still_waits_for():
    pytest.importorskip("rclpy")
    from ov3d_ros.ros.replay_eval import unsettled

    class Diagnostics:
        def __init__(self, values):
            self.values = values

        def diagnostics(self, node):
            return self.values.get(node, {})

    fusion = {"published.version": "7", "map.version": "7", "queue.waiting_for_tf": "0", "map.stamp_ns": "100"}
    seg = {"semantic_map.stamp_ns": "100", "stale_blocks": "0", "queue.maps_waiting": "0", "objects.version": "3",
           "semantic.version": "3", "objects": "12"}
    ground = {"objects.stamp_ns": "100", "objects": "12"}
    assert unsettled(Diagnostics({"fusion_node": fusion, "segmentation_node": seg, "grounding_node": ground})) is None
    assert unsettled(Diagnostics({"fusion_node": fusion})) == "no diagnostics from segmentation_node, grounding_node"
    behind = dict(seg, **{"semantic.version": "4", "stale_blocks": "2"})
    reason = unsettled(Diagnostics({"fusion_node": fusion, "segmentation_node": behind, "grounding_node": ground}))
    assert reason == "not yet: no stale block; not yet: objects hold the semantic map"
