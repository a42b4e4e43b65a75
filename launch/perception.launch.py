"""ros2 launch ov3d_ros perception.launch.py [config:=/path/to/perception.yaml]

Starts the perception graph, one process per node, with the same parameter file `ov3d launch` uses.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ov3d_ros.config import PerceptionConfig, default_config_path


def generate_launch_description() -> LaunchDescription:
    config = LaunchConfiguration("config")
    actions = [DeclareLaunchArgument("config", default_value=str(default_config_path("perception.yaml")),
                                     description="ROS 2 parameter file for every node of the graph")]
    actions += [Node(package="ov3d_ros", executable=name, name=name, parameters=[config], output="screen",
                     emulate_tty=True) for name in PerceptionConfig.node_names()]
    return LaunchDescription(actions)
