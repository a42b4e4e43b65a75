"""Lens distortion of CameraInfo models: undistort inverts distort, a distorted depth image back-projects onto the
true 3D points, and an unsupported model is refused with its own drop reason."""
from __future__ import annotations

import numpy as np
import pytest

from ov3d_ros.geometry.camera import PinholeCamera
from ov3d_ros.geometry.distortion import UnsupportedDistortion, distort, undistort
from ov3d_ros.messages import MessageError, camera_info_to_camera, camera_to_camera_info

MODELS = {
    "plumb_bob": (-0.28, 0.07, 0.0008, -0.0004, 0.0),                     # a typical webcam / RealSense colour
    "rational_polynomial": (0.4, -0.05, 0.0003, 0.0002, 0.01, 0.75, 0.02, 0.03),
    "equidistant": (-0.01, 0.05, -0.06, 0.02),                            # a fisheye (T265-like)
}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_undistort_inverts_distort_over_the_image(model):
    rng = np.random.default_rng(0)
    xy = rng.uniform(-0.7, 0.7, (2000, 2))
    moved = distort(xy, model, MODELS[model])
    assert np.abs(moved - xy).max() > 1e-3                    # the model does move points
    assert np.allclose(undistort(moved, model, MODELS[model]), xy, atol=1e-6)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_a_distorted_depth_image_back_projects_onto_the_true_points(model):
    camera = PinholeCamera(64, 48, 40.0, 40.0, 31.5, 23.5, MODELS[model], model)
    rng = np.random.default_rng(1)
    # a scene of points in front of the camera, imaged through the lens: pixel = K * distort(x / z, y / z)
    v, u = np.mgrid[0:48, 0:64]
    xy_distorted = np.stack(((u.ravel() - camera.cx) / camera.fx, (v.ravel() - camera.cy) / camera.fy), axis=1)
    true_xy = undistort(xy_distorted, model, MODELS[model])
    depth = rng.uniform(1.0, 3.0, 48 * 64)
    truth = np.c_[true_xy * depth[:, None], depth]
    points, pixels = camera.backproject(depth.reshape(48, 64).astype(np.float32))
    assert np.array_equal(pixels, np.stack((u.ravel(), v.ravel()), axis=1))
    assert np.allclose(points, truth, atol=1e-4)
    pinhole, _ = PinholeCamera(64, 48, 40.0, 40.0, 31.5, 23.5).backproject(depth.reshape(48, 64).astype(np.float32))
    assert np.abs(pinhole - truth).max() > 0.01               # ignoring the lens would be centimetres off


def test_camera_info_keeps_supported_models_and_refuses_others_with_a_reason():
    camera = PinholeCamera(64, 48, 40.0, 40.0, 31.5, 23.5, MODELS["equidistant"], "equidistant")
    assert camera_info_to_camera(camera_to_camera_info(camera, "cam", 1)) == camera
    zero = PinholeCamera(64, 48, 40.0, 40.0, 31.5, 23.5, (0.0,) * 5, "unknown_model")
    assert camera_info_to_camera(camera_to_camera_info(zero, "cam", 1)).distortion_model == "unknown_model"
    odd = PinholeCamera(64, 48, 40.0, 40.0, 31.5, 23.5, (0.1, 0.2), "kannala_brandt_6")
    with pytest.raises(MessageError, match="not supported") as caught:
        camera_info_to_camera(camera_to_camera_info(odd, "cam", 1))
    assert caught.value.reason == "unsupported_distortion"
    with pytest.raises(UnsupportedDistortion):
        distort(np.zeros((1, 2)), "kannala_brandt_6", (0.1,))


def test_the_fusion_node_counts_an_unsupported_distortion_under_its_reason(ros_context):
    pytest.importorskip("rclpy")
    from rclpy.parameter import Parameter
    from tf2_msgs.msg import TFMessage

    from test_fusion_node_fuzz import CAMERA, RecordingLogger, STAMP, feed_rgbd, rgbd, transform
    from ov3d_ros.ros.drops import DropCounter
    from ov3d_ros.ros.nodes.fusion import FusionNode

    node = FusionNode(context=ros_context, parameter_overrides=[Parameter("resume", value=False)])
    try:
        node.drops = DropCounter(RecordingLogger(), throttle_s=0.0)
        node.on_tf_static(TFMessage(transforms=[transform("map", "camera")]))
        color, depth, _ = rgbd()
        odd = PinholeCamera(CAMERA.width, CAMERA.height, CAMERA.fx, CAMERA.fy, CAMERA.cx, CAMERA.cy, (0.1, 0.2),
                            "kannala_brandt_6")
        feed_rgbd(node, color, depth, camera_to_camera_info(odd, "camera", STAMP))
        assert node.drops.counts == {"unsupported_distortion": 1} and node.integrated["rgbd"] == 0
    finally:
        node.destroy_node()
