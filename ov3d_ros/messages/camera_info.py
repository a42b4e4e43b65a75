"""``sensor_msgs/msg/CameraInfo`` <-> :class:`~ov3d_ros.geometry.camera.PinholeCamera`, without ROS."""
from __future__ import annotations

from typing import Any

import numpy as np

from ov3d_ros.geometry.camera import PinholeCamera
from ov3d_ros.geometry.distortion import UnsupportedDistortion, is_distorted, undistort
from ov3d_ros.messages.errors import MessageError
from ov3d_ros.messages.types import MessageTypes, ROS_TYPES, make_header


def camera_info_to_camera(msg: Any) -> PinholeCamera:
    """The pinhole intrinsics (from ``k``), size and distortion of a CameraInfo (rclpy or rosbags message).

    Raises :class:`MessageError` for a zero image size, a ``k`` that is not 9 values, or non-finite or
    non-positive fx/fy (an uncalibrated camera has ``k`` all zero), and (reason ``unsupported_distortion``) for
    non-zero coefficients of a distortion model `ov3d_ros.geometry.distortion` cannot undo.
    """
    width, height = int(msg.width), int(msg.height)
    if width == 0 or height == 0:
        raise MessageError(f"CameraInfo has zero image size {width}x{height}")
    k = np.asarray(msg.k, dtype=np.float64)
    if k.size != 9:
        raise MessageError(f"CameraInfo k has {k.size} values, expected 9")
    fx, fy, cx, cy = k[0], k[4], k[2], k[5]
    if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):
        raise MessageError(f"CameraInfo k has invalid intrinsics fx={fx} fy={fy} cx={cx} cy={cy}")
    distortion, model = tuple(float(d) for d in msg.d), str(msg.distortion_model)
    if is_distorted(distortion):
        if not np.isfinite(distortion).all():
            raise MessageError(f"CameraInfo d has non-finite coefficients {list(distortion)}")
        try:
            undistort(np.zeros((1, 2)), model, distortion)
        except UnsupportedDistortion as exc:
            raise MessageError(str(exc), reason="unsupported_distortion") from None
    return PinholeCamera(
        width=width,
        height=height,
        fx=float(fx),
        fy=float(fy),
        cx=float(cx),
        cy=float(cy),
        distortion=distortion,
        distortion_model=model,
    )


def camera_to_camera_info(camera: PinholeCamera, frame_id: str, stamp_ns: int,
                          types: MessageTypes = ROS_TYPES) -> Any:
    """A CameraInfo for ``camera``: k and p from the intrinsics, r identity, no binning, full-image ROI."""
    k = camera.K
    p = np.zeros((3, 4))
    p[:, :3] = k
    roi = types.get("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types.get("sensor_msgs/msg/CameraInfo")(
        header=make_header(types, frame_id, stamp_ns),
        height=camera.height,
        width=camera.width,
        distortion_model=camera.distortion_model,
        d=types.sequence(np.asarray(camera.distortion, dtype=np.float64)),
        k=k.reshape(-1),
        r=np.eye(3).reshape(-1),
        p=p.reshape(-1),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )
