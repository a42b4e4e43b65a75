"""RigidTransform and Euler helpers against plain numpy matrix algebra."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from ov3d_ros.geometry.transforms import (
    RigidTransform,
    TransformError,
    euler_from_quaternion,
    quaternion_from_euler,
    slerp,
)


def random_transform(rng: np.random.Generator) -> RigidTransform:
    return RigidTransform.from_xyz_quat(rng.normal(size=3) * 5.0, rng.normal(size=4))


def test_compose_inverse_and_matrix_match_numpy():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = random_transform(rng), random_transform(rng)
        np.testing.assert_allclose((a * b).matrix, a.matrix @ b.matrix, atol=1e-12)
        np.testing.assert_allclose(a.compose(b).matrix, a.matrix @ b.matrix, atol=1e-12)
        np.testing.assert_allclose(a.inverse().matrix, np.linalg.inv(a.matrix), atol=1e-12)
        assert (a * a.inverse()).almost_equal(RigidTransform.identity())
        assert RigidTransform.from_matrix(a.matrix).almost_equal(a)
        assert RigidTransform.from_dict(a.to_dict()).almost_equal(a)


def test_apply_is_vectorised_and_keeps_float32():
    rng = np.random.default_rng(1)
    t = random_transform(rng)
    points = rng.normal(size=(100, 3))
    homogeneous = np.c_[points, np.ones(len(points))] @ t.matrix.T
    np.testing.assert_allclose(t.apply(points), homogeneous[:, :3], atol=1e-12)
    out32 = t.apply(points.astype(np.float32))
    assert out32.dtype == np.float32 and out32.shape == (100, 3)
    np.testing.assert_allclose(out32, homogeneous[:, :3], atol=1e-4)
    np.testing.assert_allclose(t.apply(points[0]), homogeneous[0, :3], atol=1e-12)
    with pytest.raises(ValueError, match="shape"):
        t.apply(np.zeros((4, 2)))


def test_interpolate_halfway_of_90_degree_yaw_is_45_degrees():
    start = RigidTransform.identity()
    end = RigidTransform.from_euler([2.0, 0.0, 0.0], 0.0, 0.0, math.pi / 2)
    mid = RigidTransform.interpolate(start, end, 0.5)
    assert mid.yaw == pytest.approx(math.pi / 4)
    np.testing.assert_allclose(mid.translation, [1.0, 0.0, 0.0])
    assert RigidTransform.interpolate(start, end, 0.0).almost_equal(start)
    assert RigidTransform.interpolate(start, end, 1.0).almost_equal(end)
    with pytest.raises(ValueError):
        RigidTransform.interpolate(start, end, 1.5)


def test_vectorised_slerp_matches_scipy_slerp():
    rng = np.random.default_rng(2)
    a, b = Rotation.random(5, random_state=3), Rotation.random(5, random_state=4)
    fractions = rng.uniform(size=5)
    ours = slerp(a, b, fractions)
    for i in range(5):
        reference = Slerp([0.0, 1.0], Rotation.concatenate([a[i], b[i]]))(fractions[i])
        assert (ours[i] * reference.inv()).magnitude() < 1e-9


@pytest.mark.parametrize(
    ("xyz", "quat", "message"),
    [
        ([0, 0, 0], [0, 0, 0, 0], "near-zero norm"),
        ([0, 0, 0], [0, 0, 1e-9, 0], "near-zero norm"),
        ([0, 0, 0], [0, 0, float("nan"), 1], "non-finite"),
        ([0, float("inf"), 0], [0, 0, 0, 1], "non-finite"),
        ([0, 0], [0, 0, 0, 1], "3 elements"),
        ([0, 0, 0], [0, 0, 1], "4 elements"),
    ],
)
def test_bad_values_raise_transform_error(xyz, quat, message):
    with pytest.raises(TransformError, match=message):
        RigidTransform.from_xyz_quat(xyz, quat)


def test_from_xyz_quat_normalises():
    t = RigidTransform.from_xyz_quat([1, 2, 3], [0, 0, 2, 2])
    np.testing.assert_allclose(np.linalg.norm(t.quaternion), 1.0)
    assert t.yaw == pytest.approx(math.pi / 2)


def test_from_matrix_rejects_non_rigid():
    scaled = np.diag([2.0, 1.0, 1.0, 1.0])
    with pytest.raises(TransformError, match="not a rotation"):
        RigidTransform.from_matrix(scaled)
    reflection = np.diag([-1.0, 1.0, 1.0, 1.0])
    with pytest.raises(TransformError, match="not a rotation"):
        RigidTransform.from_matrix(reflection)
    with pytest.raises(TransformError, match="4x4"):
        RigidTransform.from_matrix(np.eye(3))


def test_from_msg_accepts_transform_and_transform_stamped():
    transform = SimpleNamespace(
        translation=SimpleNamespace(x=1.0, y=2.0, z=3.0),
        rotation=SimpleNamespace(x=0.0, y=0.0, z=math.sin(0.25), w=math.cos(0.25)),
    )
    a = RigidTransform.from_msg(transform)
    b = RigidTransform.from_msg(SimpleNamespace(transform=transform))
    assert a.almost_equal(b)
    np.testing.assert_allclose(a.translation, [1, 2, 3])
    assert a.yaw == pytest.approx(0.5)
    with pytest.raises(TransformError, match="geometry_msgs/Transform"):
        RigidTransform.from_msg(SimpleNamespace(translation=None))


def test_translation_is_read_only():
    t = RigidTransform.from_xyz_quat([1, 2, 3], [0, 0, 0, 1])
    with pytest.raises(ValueError):
        t.translation[0] = 5.0


def test_euler_round_trip_matches_ros_convention():
    roll, pitch, yaw = 0.1, -0.2, 0.3
    q = quaternion_from_euler(roll, pitch, yaw)
    assert euler_from_quaternion(q) == pytest.approx((roll, pitch, yaw))
    # ROS RPY: R = Rz(yaw) @ Ry(pitch) @ Rx(roll)
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    np.testing.assert_allclose(Rotation.from_quat(q).as_matrix(), rz @ ry @ rx, atol=1e-12)
