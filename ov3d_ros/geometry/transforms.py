"""Rigid transforms (rotation + translation) built on :mod:`scipy.spatial.transform`, free of ROS imports.

Conventions follow ROS: quaternions are ordered ``(x, y, z, w)`` (scipy's default order), Euler angles are
roll-pitch-yaw about the fixed x, y, z axes (scipy's extrinsic ``"xyz"``, identical to tf2's ``setRPY``), and a
transform ``T_a_b`` maps points expressed in frame ``b`` into frame ``a``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.transform import Rotation

_MIN_QUATERNION_NORM = 1e-6
_ROTATION_MATRIX_ATOL = 1e-6


class TransformError(ValueError):
    """A transform is invalid: non-finite values, a degenerate quaternion, a non-rigid matrix, bad frame ids ..."""


def _finite_vector(values: ArrayLike, size: int, what: str) -> np.ndarray:
    """``values`` as a float64 vector of length ``size``; raises :class:`TransformError` if malformed."""
    try:
        vector = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise TransformError(f"{what} is not numeric: {exc}") from exc
    if vector.shape != (size,):
        raise TransformError(f"{what} must have {size} elements, got {vector.size}")
    if not np.all(np.isfinite(vector)):
        raise TransformError(f"{what} contains non-finite values: {vector.tolist()}")
    return vector


def normalized_quaternion(quat_xyzw: ArrayLike) -> np.ndarray:
    """``quat_xyzw`` scaled to unit norm; raises :class:`TransformError` if non-finite or of near-zero norm."""
    quat = _finite_vector(quat_xyzw, 4, "quaternion (x, y, z, w)")
    norm = float(np.linalg.norm(quat))
    if norm < _MIN_QUATERNION_NORM:
        raise TransformError(f"quaternion (x, y, z, w) {quat.tolist()} has near-zero norm {norm:.3g}")
    return quat / norm


def slerp(start: Rotation, end: Rotation, fraction: float | ArrayLike) -> Rotation:
    """Spherical linear interpolation from ``start`` to ``end`` (both single or both stacks of equal length).

    ``fraction`` is a scalar or one value per rotation; 0 gives ``start``, 1 gives ``end``. This is the formula of
    :class:`scipy.spatial.transform.Slerp` between two key rotations, vectorised over independent pairs.
    """
    fractions = np.asarray(fraction, dtype=np.float64)
    rotvecs = (start.inv() * end).as_rotvec()
    return start * Rotation.from_rotvec(rotvecs * fractions[..., None])


@dataclass(frozen=True, eq=False)
class RigidTransform:
    """A proper rigid transform ``p' = R p + t``.

    ``rotation`` may be given as a single :class:`~scipy.spatial.transform.Rotation` or a quaternion (x, y, z, w),
    which is normalised; ``translation`` as three finite numbers. Instances are immutable (the translation array
    is read-only); compare them with :meth:`almost_equal`.
    """

    rotation: Rotation
    translation: np.ndarray

    def __post_init__(self) -> None:
        rotation = self.rotation
        if isinstance(rotation, Rotation):
            if not rotation.single:
                raise TransformError(f"expected a single rotation, got a stack of {len(rotation)}")
        else:
            rotation = Rotation.from_quat(normalized_quaternion(rotation))
        translation = _finite_vector(self.translation, 3, "translation").copy()
        translation.setflags(write=False)
        object.__setattr__(self, "rotation", rotation)
        object.__setattr__(self, "translation", translation)

    @classmethod
    def identity(cls) -> RigidTransform:
        """The identity transform."""
        return cls(Rotation.identity(), np.zeros(3))

    @classmethod
    def from_xyz_quat(cls, xyz: ArrayLike, quat_xyzw: ArrayLike) -> RigidTransform:
        """From a translation and a (not necessarily unit) quaternion; raises :class:`TransformError` if invalid."""
        return cls(Rotation.from_quat(normalized_quaternion(quat_xyzw)), xyz)

    @classmethod
    def from_matrix(cls, matrix: ArrayLike) -> RigidTransform:
        """From a 4x4 homogeneous matrix whose upper-left 3x3 block is a rotation (orthonormal, det +1)."""
        m = np.asarray(matrix, dtype=np.float64)
        if m.shape != (4, 4):
            raise TransformError(f"expected a 4x4 matrix, got shape {m.shape}")
        if not np.all(np.isfinite(m)):
            raise TransformError("matrix contains non-finite values")
        if not np.allclose(m[3], (0.0, 0.0, 0.0, 1.0), atol=_ROTATION_MATRIX_ATOL):
            raise TransformError(f"bottom row of a rigid transform must be [0, 0, 0, 1], got {m[3].tolist()}")
        rot = m[:3, :3]
        if not np.allclose(rot @ rot.T, np.eye(3), atol=_ROTATION_MATRIX_ATOL) or np.linalg.det(rot) <= 0.0:
            raise TransformError("upper-left 3x3 block is not a rotation matrix (orthonormal with determinant +1)")
        return cls(Rotation.from_matrix(rot), m[:3, 3])

    @classmethod
    def from_euler(cls, xyz: ArrayLike, roll: float, pitch: float, yaw: float) -> RigidTransform:
        """From a translation and ROS roll-pitch-yaw angles in radians."""
        return cls.from_xyz_quat(xyz, quaternion_from_euler(roll, pitch, yaw))

    @classmethod
    def from_msg(cls, msg: Any) -> RigidTransform:
        """From a ``geometry_msgs/Transform`` or ``geometry_msgs/TransformStamped`` (rclpy or rosbags object)."""
        transform = getattr(msg, "transform", msg)
        try:
            t, q = transform.translation, transform.rotation
            return cls.from_xyz_quat((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))
        except AttributeError as exc:
            raise TransformError(f"not a geometry_msgs/Transform: {exc}") from exc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RigidTransform:
        """Inverse of :meth:`to_dict`: ``{"translation": [x, y, z], "rotation": [x, y, z, w]}``."""
        try:
            return cls.from_xyz_quat(data["translation"], data["rotation"])
        except KeyError as exc:
            raise TransformError(f"transform dict lacks key {exc}") from None

    def to_dict(self) -> dict[str, list[float]]:
        """``{"translation": [x, y, z], "rotation": [x, y, z, w]}`` as plain floats (YAML/JSON friendly)."""
        return {"translation": self.translation.tolist(), "rotation": self.quaternion.tolist()}

    @property
    def quaternion(self) -> np.ndarray:
        """The rotation as a unit quaternion (x, y, z, w)."""
        return self.rotation.as_quat()

    @property
    def matrix(self) -> np.ndarray:
        """A new 4x4 float64 homogeneous matrix."""
        m = np.eye(4)
        m[:3, :3] = self.rotation.as_matrix()
        m[:3, 3] = self.translation
        return m

    @property
    def yaw(self) -> float:
        """Heading in radians (the ROS yaw of :func:`euler_from_quaternion`)."""
        return euler_from_quaternion(self.quaternion)[2]

    def inverse(self) -> RigidTransform:
        """The transform undoing this one."""
        inv = self.rotation.inv()
        return RigidTransform(inv, -(inv.as_matrix() @ self.translation))

    def compose(self, other: RigidTransform) -> RigidTransform:
        """``self * other``: applies ``other`` first, then ``self`` (``T_a_c = T_a_b.compose(T_b_c)``)."""
        rotated = self.rotation.as_matrix() @ other.translation
        return RigidTransform(self.rotation * other.rotation, rotated + self.translation)

    def __mul__(self, other: object) -> RigidTransform:
        if not isinstance(other, RigidTransform):
            return NotImplemented
        return self.compose(other)

    def apply(self, points: ArrayLike) -> np.ndarray:
        """Transforms points of shape (N, 3) or (3,); float32 input stays float32, anything else becomes float64."""
        pts = np.asarray(points)
        if pts.ndim not in (1, 2) or pts.shape[-1] != 3:
            raise ValueError(f"points must have shape (N, 3) or (3,), got {pts.shape}")
        dtype = np.float32 if pts.dtype == np.float32 else np.float64
        m = self.matrix.astype(dtype, copy=False)
        return pts.astype(dtype, copy=False) @ m[:3, :3].T + m[:3, 3]

    def almost_equal(self, other: RigidTransform, atol: float = 1e-9) -> bool:
        """True if both homogeneous matrices agree element-wise within ``atol``."""
        return bool(np.allclose(self.matrix, other.matrix, rtol=0.0, atol=atol))

    @staticmethod
    def interpolate(start: RigidTransform, end: RigidTransform, fraction: float) -> RigidTransform:
        """Slerp of the rotations and lerp of the translations; ``fraction`` in [0, 1] (0 gives ``start``)."""
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"interpolation fraction must be in [0, 1], got {fraction}")
        translation = (1.0 - fraction) * start.translation + fraction * end.translation
        return RigidTransform(slerp(start.rotation, end.rotation, fraction), translation)

    def __repr__(self) -> str:
        t = ", ".join(f"{v:.6g}" for v in self.translation)
        q = ", ".join(f"{v:.6g}" for v in self.quaternion)
        return f"RigidTransform(translation=[{t}], rotation_xyzw=[{q}])"


def quaternion_from_euler(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Unit quaternion (x, y, z, w) of ROS roll-pitch-yaw angles (radians, fixed axes x, y, z)."""
    return Rotation.from_euler("xyz", [roll, pitch, yaw]).as_quat()


def euler_from_quaternion(quat_xyzw: ArrayLike) -> tuple[float, float, float]:
    """ROS ``(roll, pitch, yaw)`` in radians of a quaternion (x, y, z, w); inverse of :func:`quaternion_from_euler`."""
    roll, pitch, yaw = Rotation.from_quat(normalized_quaternion(quat_xyzw)).as_euler("xyz")
    return float(roll), float(pitch), float(yaw)
