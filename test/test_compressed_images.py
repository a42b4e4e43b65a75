"""CompressedImage input: JPEG / PNG colour and image_transport's compressedDepth (16UC1 and 32FC1 PNG with its
12-byte header), decoded without OpenCV; bad payloads are MessageErrors; the fusion node, switched to the
compressed transports by parameter, builds the same map as from raw images."""
from __future__ import annotations

import numpy as np
import pytest

from ov3d_ros.config import FusionNodeConfig
from ov3d_ros.messages import MessageError, array_to_image
from ov3d_ros.messages.compressed import (DEPTH_HEADER, colour_pixels, compressed_depth_to_metres,
                                          compressed_to_rgb, depth_metres, depth_to_compressed, rgb_to_compressed)
from ov3d_ros.messages.types import RosbagsMessageTypes

RNG = np.random.default_rng(0)
DEPTH_MM = RNG.integers(300, 6000, (24, 32)).astype(np.uint16)
DEPTH_MM[0, :4] = 0                                     # no reading


def smooth_rgb() -> np.ndarray:
    y, x = np.mgrid[0:24, 0:32]
    return np.stack([x * 8, y * 10, 255 - x * 4], axis=-1).astype(np.uint8)


def test_16uc1_compressed_depth_is_lossless_and_keeps_missing_readings():
    msg = depth_to_compressed(DEPTH_MM, "camera", 7)
    assert msg.format == "16UC1; compressedDepth png"
    assert DEPTH_HEADER.unpack(bytes(msg.data[:12]))[0] == 0
    metres = depth_metres(msg)
    assert np.isnan(metres[0, :4]).all()
    assert np.allclose(metres[1:], DEPTH_MM[1:] / 1000.0, atol=1e-6)
    msg.format = "16UC1; compressedDepth"               # older publishers: png implied
    assert np.allclose(compressed_depth_to_metres(msg)[1:], DEPTH_MM[1:] / 1000.0, atol=1e-6)


def test_32fc1_compressed_depth_decodes_the_quantised_inverse_depth():
    metres = (DEPTH_MM / 1000.0).astype(np.float32)
    metres[0, :4] = np.nan
    decoded = depth_metres(depth_to_compressed(metres, "camera", 7))
    assert np.isnan(decoded[0, :4]).all()
    # quantisation of inverse depth with image_transport's defaults: about 1e-4 relative at 6 m
    assert np.nanmax(np.abs(decoded[1:] - metres[1:]) / metres[1:]) < 1e-3


def test_colour_in_png_is_exact_and_jpeg_close_with_either_format_string():
    rgb = smooth_rgb()
    assert np.array_equal(colour_pixels(rgb_to_compressed(rgb, "png", "camera", 1)), rgb)
    jpeg = rgb_to_compressed(rgb, "jpeg", "camera", 1)
    assert jpeg.format == "rgb8; jpeg compressed rgb8"
    assert np.abs(colour_pixels(jpeg).astype(int) - rgb).mean() < 3.0
    jpeg.format = "jpeg"
    assert colour_pixels(jpeg).shape == (24, 32, 3)
    raw = array_to_image(rgb, "bgr8", "camera", 1)          # raw images still go through the same call
    assert np.array_equal(colour_pixels(raw), rgb)


def test_the_bag_writer_types_build_compressed_messages_too():
    from ov3d_ros.data.rosbag import new_typestore
    msg = rgb_to_compressed(smooth_rgb(), "png", "camera", 3, types=RosbagsMessageTypes(new_typestore()))
    assert np.array_equal(compressed_to_rgb(msg), smooth_rgb())


@pytest.mark.parametrize("fmt,data,reason", [
    ("rgb8; jpeg compressed bgr8", b"not an image", "does not decode"),
    ("bmp", b"", "unsupported compressed image format"),
    ("16UC1; compressedDepth png", b"\x00" * 8, "no room for the header"),
    ("16UC1; compressedDepth rvl", b"\x00" * 40, "png only"),
    ("8UC3; compressedDepth png", b"\x00" * 40, "16UC1 or 32FC1"),
])
def test_bad_compressed_payloads_are_message_errors(fmt, data, reason):
    msg = rgb_to_compressed(smooth_rgb(), "png", "camera", 1)
    msg.format, msg.data = fmt, list(data)
    decode = depth_metres if "Depth" in fmt else colour_pixels
    with pytest.raises(MessageError, match=reason):
        decode(msg)


def test_a_colour_image_is_not_read_as_depth():
    msg = rgb_to_compressed(smooth_rgb(), "png", "camera", 1)
    msg.format = "16UC1; compressedDepth png"
    msg.data = list(DEPTH_HEADER.pack(0, 0.0, 0.0)) + list(msg.data)
    with pytest.raises(MessageError, match="one 16-bit channel"):
        depth_metres(msg)


def test_transports_name_image_transport_topics_and_reject_unknown_ones():
    inputs = FusionNodeConfig(color_transport="compressed", depth_transport="compressedDepth").image_inputs()
    assert inputs["color"] == ("/camera/color/image_raw/compressed", "sensor_msgs/msg/CompressedImage")
    assert inputs["depth"] == ("/camera/depth/image_raw/compressedDepth", "sensor_msgs/msg/CompressedImage")
    assert FusionNodeConfig().image_inputs()["depth"] == ("/camera/depth/image_raw", "sensor_msgs/msg/Image")
    with pytest.raises(Exception, match="color_transport must be one of raw, compressed"):
        FusionNodeConfig(color_transport="theora")


def test_the_fusion_node_maps_compressed_frames_as_it_maps_raw_ones(ros_context):
    pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter
    from tf2_msgs.msg import TFMessage

    from test_fusion_node_fuzz import CAMERA, STAMP, feed_rgbd, transform
    from ov3d_ros.messages import camera_to_camera_info
    from ov3d_ros.ros.nodes.fusion import FusionNode

    rgb = np.resize(smooth_rgb(), (CAMERA.height, CAMERA.width, 3))
    depth = np.resize(DEPTH_MM, (CAMERA.height, CAMERA.width))
    info = camera_to_camera_info(CAMERA, "camera", STAMP)
    maps = []
    for transports, color, depth_msg in (
            (("raw", "raw"), array_to_image(rgb, "rgb8", "camera", STAMP),
             array_to_image(depth, "16UC1", "camera", STAMP)),
            (("compressed", "compressedDepth"), rgb_to_compressed(rgb, "png", "camera", STAMP),
             depth_to_compressed(depth, "camera", STAMP))):
        node = FusionNode(context=ros_context, parameter_overrides=[
            Parameter("color_transport", value=transports[0]), Parameter("depth_transport", value=transports[1]),
            Parameter("resume", value=False)])
        try:
            node.on_tf_static(TFMessage(transforms=[transform("map", "camera")]))
            feed_rgbd(node, color, depth_msg, info)
            assert node.integrated["rgbd"] == 1 and node.drops.total == 0
            maps.append(node.map.to_points())
        finally:
            node.destroy_node()
    assert len(maps[0]) > 100 and np.array_equal(maps[0], maps[1])
