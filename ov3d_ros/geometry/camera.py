"""Pinhole camera model in the optical-frame convention (z forward, x right, y down), vectorised numpy."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ov3d_ros.geometry.distortion import distort, is_distorted, undistort


@dataclass(frozen=True)
class PinholeCamera:
    """Intrinsics of a ``width`` x ``height`` image; pixel (u, v) = (column, row), pixel centres at integers.

    ``distortion`` (with its ROS ``distortion_model`` name, `ov3d_ros.geometry.distortion`) is undone by
    `backproject` (each pixel's true ray); `project` is pure pinhole, exact for rectified images.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple[float, ...] = ()
    distortion_model: str = ""

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the conventional name of the intrinsic matrix
        """The 3x3 float64 intrinsic matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, sx: float, sy: float) -> PinholeCamera:
        """The camera of the image resized by (sx, sy), with half-pixel-centre alignment (as cv2.resize)."""
        return PinholeCamera(
            width=round(self.width * sx),
            height=round(self.height * sy),
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
            distortion=self.distortion,
            distortion_model=self.distortion_model,
        )

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (N, 2) (u, v) and depths (N,) of camera-frame points (N, 3).

        The camera's lens distortion is applied (the inverse of ``backproject``). Points with depth <= 0 (behind the
        camera) get NaN pixel coordinates; nothing is clipped to the image.
        """
        points = np.asarray(points)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"expected (N, 3) points, got shape {points.shape}")
        depth = points[:, 2].copy()
        in_front = depth > 0
        inverse_depth = np.divide(1.0, depth, out=np.full(depth.shape, np.nan, dtype=np.result_type(depth, 1.0)),
                                  where=in_front)
        normalised = np.stack((points[:, 0] * inverse_depth, points[:, 1] * inverse_depth), axis=1)
        if is_distorted(self.distortion):
            normalised = distort(normalised, self.distortion_model, self.distortion)
        uv = np.stack((self.fx * normalised[:, 0] + self.cx, self.fy * normalised[:, 1] + self.cy), axis=1)
        return uv, depth

    def backproject(self, depth: np.ndarray, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Camera-frame points (N, 3) float32 of the valid pixels of an (H, W) depth image in metres.

        Every ``stride``-th row and column is used; pixels whose depth is not finite and positive are skipped.
        Also returns the (N, 2) int64 pixel coordinates (u, v) of the points.
        """
        depth = np.asarray(depth)
        if depth.shape != (self.height, self.width):
            raise ValueError(f"depth image shape {depth.shape} != camera (height, width) {(self.height, self.width)}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        sampled = depth[::stride, ::stride].astype(np.float32, copy=False)
        rows, cols = np.nonzero(np.isfinite(sampled) & (sampled > 0))
        z = sampled[rows, cols]
        u, v = cols.astype(np.int64) * stride, rows.astype(np.int64) * stride
        points = np.empty((z.size, 3), dtype=np.float32)
        if is_distorted(self.distortion):
            rays = _ray_grid(self, stride)[rows, cols]
            points[:, 0], points[:, 1] = rays[:, 0] * z, rays[:, 1] * z
        else:
            points[:, 0] = (u - self.cx) * z / self.fx
            points[:, 1] = (v - self.cy) * z / self.fy
        points[:, 2] = z
        return points, np.stack((u, v), axis=1)


@functools.lru_cache(maxsize=8)
def _ray_grid(camera: PinholeCamera, stride: int) -> np.ndarray:
    """(H / stride, W / stride, 2) float32 undistorted normalised coordinates of the sampled pixels of a distorted
    camera, computed once per camera (a depth stream keeps its CameraInfo)."""
    v, u = np.mgrid[0:camera.height:stride, 0:camera.width:stride]
    distorted = np.stack(((u.ravel() - camera.cx) / camera.fx, (v.ravel() - camera.cy) / camera.fy), axis=1)
    rays = undistort(distorted, camera.distortion_model, camera.distortion)
    return rays.reshape(*u.shape, 2).astype(np.float32)
