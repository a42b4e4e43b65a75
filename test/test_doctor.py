"""`ov3d doctor`: the install and weight checks, a failing weight file, and the topic checks against a live
publisher (rate counted, a topic of the wrong type failed, no sensor at all failed)."""
from __future__ import annotations

import dataclasses
import threading

import yaml

from ov3d_ros.cli import main
from ov3d_ros.config import default_config_path, load_perception_config
from ov3d_ros.ros.doctor import FAIL, OK, WARN, check_topics


def test_install_and_weights_pass_with_the_packaged_parameters(capsys):
    assert main(["doctor", "--no-topics"]) == 0
    out = capsys.readouterr().out
    assert "[  ok] ROS 2: kilted" in out and "[  ok] RMW: rmw_" in out and "[  ok] ov3d_interfaces" in out
    assert "student_default.pt" in out and "text space minilm" in out and "0 failed" in out


def test_weights_that_do_not_load_fail_the_doctor(tmp_path, capsys):
    params = yaml.safe_load(default_config_path("perception.yaml").read_text())
    params["segmentation_node"]["ros__parameters"]["student_checkpoint"] = str(tmp_path / "missing.pt")
    config = tmp_path / "perception.yaml"
    config.write_text(yaml.safe_dump(params))
    assert main(["doctor", "--no-topics", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "[fail] student: " in out and "missing.pt" in out and "1 failed (student)" in out


def test_topics_are_counted_and_a_wrong_type_fails(ros_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image, PointCloud2

    from ov3d_ros.ros.qos import sensor_qos

    base = load_perception_config()
    config = dataclasses.replace(base, fusion_node=dataclasses.replace(
        base.fusion_node, use_lidar=False, color_topic="/doctor_test/colour", depth_topic="/doctor_test/depth",
        camera_info_topic="/doctor_test/info"))
    node = rclpy.create_node("doctor_test_driver", context=ros_context)
    colour = node.create_publisher(Image, "/doctor_test/colour", sensor_qos(5))
    wrong = node.create_publisher(PointCloud2, "/doctor_test/depth", sensor_qos(5))
    node.create_timer(0.05, lambda: (colour.publish(Image(height=1, width=1, encoding="rgb8", step=3,
                                                          data=[1, 2, 3])), wrong.publish(PointCloud2())))
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    spinning = threading.Thread(target=executor.spin, daemon=True)
    spinning.start()
    try:
        findings = {f.check: f for f in check_topics(config, listen_s=2.0)}
    finally:
        executor.shutdown()
        node.destroy_node()
    found = findings["colour /doctor_test/colour"]
    assert found.status == OK, found.detail
    rate = float(found.detail.split(", ")[-1].removesuffix(" Hz"))
    assert 8.0 < rate < 40.0                                              # published at 20 Hz
    assert findings["depth /doctor_test/depth"].status == FAIL
    assert "sensor_msgs/msg/PointCloud2" in findings["depth /doctor_test/depth"].detail
    assert findings["camera info /doctor_test/info"].status == WARN
    assert "inputs" not in findings                                       # a sensor is published
    assert "LiDAR /lidar/points" not in findings                          # not subscribed with use_lidar false


def test_no_sensor_published_fails():
    base = load_perception_config()
    config = dataclasses.replace(base, fusion_node=dataclasses.replace(
        base.fusion_node, color_topic="/doctor_none/c", depth_topic="/doctor_none/d",
        camera_info_topic="/doctor_none/i", lidar_topic="/doctor_none/l"))
    findings = {f.check: f for f in check_topics(config, listen_s=0.5)}
    assert findings["inputs"].status == FAIL and findings["LiDAR /doctor_none/l"].status == WARN


def test_bad_arguments_are_one_line(capsys):
    assert main(["doctor", "--listen", "0"]) == 1
    assert capsys.readouterr().err.strip().startswith("ov3d doctor: error: --listen must be positive")
