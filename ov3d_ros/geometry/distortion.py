"""Lens distortion of ROS CameraInfo models, on normalised image coordinates (x, y) = ((u - cx) / fx, (v - cy) / fy).

- ``plumb_bob`` (d = k1, k2, p1, p2, k3) and ``rational_polynomial`` (k1, k2, p1, p2, k3, k4, k5, k6): the
  Brown-Conrady radial-tangential model, radial factor (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 +
  k6 r^6);
- ``equidistant`` (k1, k2, k3, k4): the fisheye model, distorted radius theta (1 + k1 theta^2 + ... + k4 theta^8)
  with theta = atan(r).

`undistort` inverts them (fixed-point iteration for the radial-tangential model, Newton on theta for the fisheye
one), so a depth image is back-projected along the true rays without resampling the image. A model outside these
with non-zero coefficients is `UnsupportedDistortion`.
"""
from __future__ import annotations

import numpy as np

RADIAL_TANGENTIAL = {"plumb_bob": 5, "rational_polynomial": 8}
EQUIDISTANT = "equidistant"
ITERATIONS = 20


class UnsupportedDistortion(ValueError):
    """A distortion model this package cannot undo."""


def is_distorted(coefficients: tuple[float, ...] | np.ndarray) -> bool:
    """Whether the coefficients move any pixel (all zero, or none, means a rectified image whatever the model)."""
    return bool(np.any(np.asarray(coefficients, np.float64) != 0.0))


def _coefficients(model: str, coefficients: tuple[float, ...] | np.ndarray) -> np.ndarray:
    d = np.asarray(coefficients, np.float64).reshape(-1)
    if model in RADIAL_TANGENTIAL:
        return np.pad(d, (0, max(0, 8 - len(d))))[:8]
    if model == EQUIDISTANT:
        return np.pad(d, (0, max(0, 4 - len(d))))[:4]
    raise UnsupportedDistortion(f"distortion model {model!r} with coefficients {list(d)} is not supported "
                                f"(plumb_bob, rational_polynomial, equidistant)")


def distort(xy: np.ndarray, model: str, coefficients: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """(N, 2) distorted normalised coordinates of undistorted ones."""
    d = _coefficients(model, coefficients)
    x, y = np.asarray(xy, np.float64).T
    if model == EQUIDISTANT:
        r = np.hypot(x, y)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
        scale = np.divide(theta_d, r, out=np.ones_like(r), where=r > 1e-12)
        return np.stack((x * scale, y * scale), axis=1)
    k1, k2, p1, p2, k3, k4, k5, k6 = d
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    return np.stack((x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                     y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y), axis=1)


def undistort(xy_distorted: np.ndarray, model: str, coefficients: tuple[float, ...] | np.ndarray) -> np.ndarray:
    """(N, 2) undistorted normalised coordinates of distorted ones (the inverse of `distort`)."""
    d = _coefficients(model, coefficients)
    xd, yd = np.asarray(xy_distorted, np.float64).T
    if model == EQUIDISTANT:
        theta_d = np.hypot(xd, yd)
        theta = theta_d.copy()
        for _ in range(ITERATIONS):
            t2 = theta * theta
            f = theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3])))) - theta_d
            df = 1 + t2 * (3 * d[0] + t2 * (5 * d[1] + t2 * (7 * d[2] + t2 * 9 * d[3])))
            theta = theta - f / df
        scale = np.divide(np.tan(theta), theta_d, out=np.ones_like(theta_d), where=theta_d > 1e-12)
        return np.stack((xd * scale, yd * scale), axis=1)
    k1, k2, p1, p2, k3, k4, k5, k6 = d
    x, y = xd.copy(), yd.copy()
    for _ in range(ITERATIONS):
        r2 = x * x + y * y
        radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        x = (xd - (2 * p1 * x * y + p2 * (r2 + 2 * x * x))) / radial
        y = (yd - (p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)) / radial
    return np.stack((x, y), axis=1)
