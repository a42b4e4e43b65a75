"""Real drivers' inputs: LiDAR clouds with the exact field layouts of Ouster, Velodyne and Livox drivers
(PCL-aligned padding, per-point time, ring, organised scans with invalid returns), of which the fusion node keeps
exactly the valid returns; and the parameter-file examples for RealSense, ZED and Ouster topic names."""
from __future__ import annotations

import numpy as np
import pytest

from ov3d_ros.geometry.transforms import RigidTransform
from ov3d_ros.mapping.sensor_points import lidar_points
from ov3d_ros.messages import pointcloud2_to_array
from ov3d_ros.messages.types import ROS_TYPES, make_header

# (name, fields (name, numpy type, offset), point_step): each driver's point struct
LAYOUTS = {
    # ouster-ros default point (PCL_ADD_POINT4D pads x, y, z to 16 bytes; the struct is 16-byte aligned)
    "ouster": ([("x", "<f4", 0), ("y", "<f4", 4), ("z", "<f4", 8), ("intensity", "<f4", 16), ("t", "<u4", 20),
                ("reflectivity", "<u2", 24), ("ring", "<u2", 26), ("ambient", "<u2", 28), ("range", "<u4", 32)], 48),
    # velodyne_pointcloud PointXYZIRT
    "velodyne": ([("x", "<f4", 0), ("y", "<f4", 4), ("z", "<f4", 8), ("intensity", "<f4", 16), ("ring", "<u2", 20),
                  ("time", "<f4", 24)], 32),
    # livox_ros_driver2 PointXYZRTLT (packed; the float64 timestamp is unaligned)
    "livox": ([("x", "<f4", 0), ("y", "<f4", 4), ("z", "<f4", 8), ("intensity", "<f4", 12), ("tag", "u1", 16),
               ("line", "u1", 17), ("timestamp", "<f8", 18)], 26),
}
DATATYPES = {"<f4": 7, "<f8": 8, "<u4": 6, "<u2": 4, "u1": 2}


def driver_cloud(layout: str, xyz: np.ndarray, organised: tuple[int, int] | None = None):
    fields, step = LAYOUTS[layout]
    dtype = np.dtype({"names": [f[0] for f in fields], "formats": [f[1] for f in fields],
                      "offsets": [f[2] for f in fields], "itemsize": step})
    points = np.zeros(len(xyz), dtype)
    points["x"], points["y"], points["z"] = xyz.T
    points["intensity"] = np.linspace(0, 100, len(xyz))
    height, width = organised or (1, len(xyz))
    point_field = ROS_TYPES.get("sensor_msgs/msg/PointField")
    return ROS_TYPES.get("sensor_msgs/msg/PointCloud2")(
        header=make_header(ROS_TYPES, "lidar", 1), height=height, width=width, is_bigendian=False,
        fields=[point_field(name=n, offset=o, datatype=DATATYPES[t], count=1) for n, t, o in fields],
        point_step=step, row_step=step * width, is_dense=False, data=points.tobytes())


def scan(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    angle = rng.uniform(-np.pi, np.pi, n)
    distance = rng.uniform(1.0, 20.0, n)
    return np.stack([distance * np.cos(angle), distance * np.sin(angle), rng.uniform(-1, 1, n)], axis=1)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_driver_layouts_keep_exactly_the_valid_returns(layout):
    xyz = scan(16 * 64)
    invalid = np.zeros(len(xyz), bool)
    invalid[::7] = True
    # Ouster reports no return as 0, 0, 0 in an organised scan; others as NaN
    xyz[invalid] = 0.0 if layout == "ouster" else np.nan
    msg = driver_cloud(layout, xyz, organised=(16, 64) if layout == "ouster" else None)
    cloud = pointcloud2_to_array(msg)
    assert len(cloud) == 16 * 64 and cloud.dtype.names[:3] == ("x", "y", "z")
    pose = RigidTransform.from_matrix(np.eye(4))
    batch = lidar_points(cloud, pose, 1, min_range=0.3, max_range=30.0)
    assert len(batch.xyz) == int((~invalid).sum())
    assert np.allclose(batch.xyz, xyz[~invalid], atol=1e-5)
    assert not batch.coloured


def test_the_fusion_node_integrates_an_organised_ouster_scan(ros_context):
    pytest.importorskip("rclpy")
    from tf2_msgs.msg import TFMessage

    from test_fusion_node_fuzz import STAMP, transform
    from ov3d_ros.ros.nodes.fusion import FusionNode
    from rclpy.parameter import Parameter

    node = FusionNode(context=ros_context, parameter_overrides=[Parameter("resume", value=False)])
    try:
        node.on_tf_static(TFMessage(transforms=[transform("map", "lidar")]))
        xyz = scan(16 * 64, seed=1)
        xyz[::5] = 0.0
        msg = driver_cloud("ouster", xyz, organised=(16, 64))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(STAMP, 1_000_000_000)
        node.on_lidar(msg)
        assert node.integrated["lidar"] == 1 and node.drops.total == 0
        points = node.map.to_points()
        assert 0 < len(points) <= int((np.arange(len(xyz)) % 5 != 0).sum())
    finally:
        node.destroy_node()


@pytest.mark.parametrize("sensor", ["realsense", "zed", "ouster"])
def test_the_sensor_examples_load_and_name_their_drivers_topics(sensor):
    from ov3d_ros.config import PerceptionConfig, default_config_path, load_perception_config

    config = load_perception_config(default_config_path("sensors") / f"{sensor}.yaml")
    fusion, default = config.fusion_node, PerceptionConfig().fusion_node
    assert config.segmentation_node == PerceptionConfig().segmentation_node       # only the inputs differ
    if fusion.use_rgbd:
        assert fusion.color_topic != default.color_topic and fusion.depth_topic != default.depth_topic
        assert not fusion.use_lidar
    else:
        assert fusion.lidar_topic == "/ouster/points"
