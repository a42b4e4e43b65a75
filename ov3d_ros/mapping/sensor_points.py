"""Sensor data to coloured points in the map frame: back-projected RGB-D frames and LiDAR scans."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ov3d_ros.geometry.camera import PinholeCamera
from ov3d_ros.geometry.transforms import RigidTransform
from ov3d_ros.messages.pointcloud import unpack_rgb, xyz_from_array

LIDAR_GREY = 128


@dataclass(frozen=True)
class PointBatch:
    """Points of one sensor reading, in the map frame. A reading without colour (a LiDAR cloud with no rgb field,
    a depth image without its colour image) has `coloured` False and LIDAR_GREY in `rgb`."""

    xyz: np.ndarray        # (N, 3) float32 metres
    rgb: np.ndarray        # (N, 3) uint8
    stamp_ns: int
    source: str            # "rgbd" or "lidar"
    coloured: bool = True  # whether `rgb` is the points' real colour

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


def rgbd_points(color: np.ndarray | None, depth_m: np.ndarray, camera: PinholeCamera, map_from_camera: RigidTransform,
                stamp_ns: int, stride: int, min_depth: float, max_depth: float) -> PointBatch:
    """Back-project a depth image (metres, NaN invalid) registered to `camera` and colour it from `color`.

    The colour image may have another resolution than the depth image; it is sampled at the scaled pixel.
    """
    valid = np.where((depth_m >= min_depth) & (depth_m <= max_depth), depth_m, np.nan)
    points, pixels = camera.backproject(valid, stride=stride)
    if color is None:
        rgb = np.full((len(points), 3), LIDAR_GREY, dtype=np.uint8)
    else:
        if color.ndim == 2:
            color = np.repeat(color[:, :, None], 3, axis=2)
        rows = np.minimum(pixels[:, 1] * color.shape[0] // camera.height, color.shape[0] - 1)
        cols = np.minimum(pixels[:, 0] * color.shape[1] // camera.width, color.shape[1] - 1)
        rgb = color[rows, cols]
    return PointBatch(map_from_camera.apply(points), np.ascontiguousarray(rgb), stamp_ns, "rgbd", color is not None)


def lidar_points(cloud: np.ndarray, map_from_lidar: RigidTransform, stamp_ns: int, min_range: float,
                 max_range: float) -> PointBatch:
    """The finite returns of a structured PointCloud2 array within [min_range, max_range] of the sensor."""
    xyz, kept = xyz_from_array(cloud)
    distance = np.linalg.norm(xyz, axis=1)
    in_range = (distance >= min_range) & (distance <= max_range)
    names = cloud.dtype.names or ()
    colour_field = next((n for n in ("rgb", "rgba") if n in names), None)
    if colour_field is not None:
        rgb = unpack_rgb(cloud.reshape(-1)[colour_field][kept][in_range])
    else:
        rgb = np.full((int(in_range.sum()), 3), LIDAR_GREY, dtype=np.uint8)
    return PointBatch(map_from_lidar.apply(xyz[in_range]), rgb, stamp_ns, "lidar", colour_field is not None)
