"""ros2 launch ov3d_ros perception.launch.py [config:=/path/to/perception.yaml] [rviz:=true]

Starts the perception graph, one process per node, with the same parameter file `ov3d launch` uses; with
rviz:=true also rviz2 with config/ov3d.rviz (where rviz2 is installed).
"""
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ov3d_ros.config import PerceptionConfig, default_config_path


def _rviz(enabled: LaunchConfiguration) -> list:
    """rviz2 with the packaged view when `enabled`, or a note when rviz2 is not installed."""
    try:
        get_package_share_directory("rviz2")
    except PackageNotFoundError:
        return [LogInfo(msg="rviz:=true but rviz2 is not installed; the graph runs without it",
                        condition=IfCondition(enabled))]
    return [Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                 arguments=["-d", str(default_config_path("ov3d.rviz"))], condition=IfCondition(enabled))]


def generate_launch_description() -> LaunchDescription:
    config, rviz = LaunchConfiguration("config"), LaunchConfiguration("rviz")
    actions = [DeclareLaunchArgument("config", default_value=str(default_config_path("perception.yaml")),
                                     description="ROS 2 parameter file for every node of the graph"),
               DeclareLaunchArgument("rviz", default_value="false", description="also start rviz2 with ov3d.rviz")]
    actions += [Node(package="ov3d_ros", executable=name, name=name, parameters=[config], output="screen",
                     emulate_tty=True) for name in PerceptionConfig.node_names()]
    return LaunchDescription(actions + _rviz(rviz))
