"""ROS-free conversions between ROS sensor messages (rclpy or rosbags) and numpy. Never imports rclpy."""
from ov3d_ros.messages.camera_info import camera_info_to_camera, camera_to_camera_info
from ov3d_ros.messages.errors import MessageError
from ov3d_ros.messages.image import array_to_image, depth_to_metres, image_to_array
from ov3d_ros.messages.pointcloud import (
    array_to_pointcloud2,
    pack_rgb,
    pointcloud2_to_array,
    unpack_rgb,
    xyz_from_array,
)
from ov3d_ros.messages.types import (
    ROS_TYPES,
    MessageTypes,
    RosbagsMessageTypes,
    RosMessageTypes,
    make_header,
    stamp_to_ns,
)

__all__ = [
    "MessageError",
    "MessageTypes",
    "ROS_TYPES",
    "RosMessageTypes",
    "RosbagsMessageTypes",
    "array_to_image",
    "array_to_pointcloud2",
    "camera_info_to_camera",
    "camera_to_camera_info",
    "depth_to_metres",
    "image_to_array",
    "make_header",
    "pack_rgb",
    "pointcloud2_to_array",
    "stamp_to_ns",
    "unpack_rgb",
    "xyz_from_array",
]
