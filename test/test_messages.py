"""ROS-free message conversions: round trips, hand-made padded layouts, error cases, and rclpy <-> rosbags CDR."""
from __future__ import annotations

import dataclasses
import struct
import subprocess
import sys

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from ov3d_ros.geometry.camera import PinholeCamera
from ov3d_ros.messages import (
    ROS_TYPES,
    MessageError,
    RosbagsMessageTypes,
    array_to_image,
    array_to_pointcloud2,
    camera_info_to_camera,
    camera_to_camera_info,
    depth_to_metres,
    image_to_array,
    pack_rgb,
    pointcloud2_to_array,
    stamp_to_ns,
    unpack_rgb,
    xyz_from_array,
)

TYPESTORE = get_typestore(Stores.ROS2_KILTED)
ROSBAGS_TYPES = RosbagsMessageTypes(TYPESTORE)
STAMP_NS = 1_700_000_123_456_789_012
CLOUD_DTYPE = np.dtype([
    ("x", np.float32), ("y", np.float32), ("z", np.float32), ("rgb", np.float32), ("intensity", np.float32),
    ("label", np.uint32), ("ring", np.uint16), ("normal", np.float32, (3,)), ("curvature", np.float64),
    ("flag", np.int8),
])
ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "16UC1", "32FC1"]


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Exact equality, bit for bit (NaN == NaN), of dtype, shape and values."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def make_cloud(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cloud = np.zeros(shape, dtype=CLOUD_DTYPE)
    for axis in ("x", "y", "z", "intensity"):
        cloud[axis] = rng.normal(size=shape).astype(np.float32)
    cloud["rgb"] = pack_rgb(rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8))
    cloud["label"] = rng.integers(0, 2**32, size=shape, dtype=np.uint32)
    cloud["ring"] = rng.integers(0, 2**16, size=shape, dtype=np.uint16)
    cloud["normal"] = rng.normal(size=(*shape, 3)).astype(np.float32)
    cloud["curvature"] = rng.normal(size=shape)
    cloud["flag"] = rng.integers(-128, 128, size=shape, dtype=np.int8)
    return cloud


def make_image(encoding: str, height: int = 5, width: int = 7, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if encoding.endswith("8") and encoding != "mono8":
        return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if encoding == "mono8":
        return rng.integers(0, 256, size=(height, width), dtype=np.uint8)
    if encoding == "32FC1":
        return rng.uniform(0.1, 10.0, size=(height, width)).astype(np.float32)
    return rng.integers(0, 2**16, size=(height, width), dtype=np.uint16)


def ros_field(name: str, offset: int, datatype: int, count: int = 1) -> PointField:
    return PointField(name=name, offset=offset, datatype=datatype, count=count)


def padded_cloud_msg(height: int, width: int, is_bigendian: bool = False) -> tuple[PointCloud2, list[tuple]]:
    """A cloud packed by hand with struct: 4 bytes between z and intensity, point_step 32, 8 bytes row padding."""
    point_step, row_step = 32, width * 32 + 8
    buf = bytearray(b"\xab" * (row_step * height))  # garbage in every padding byte
    points = []
    for row in range(height):
        for col in range(width):
            i = row * width + col
            point = (0.5 * i, -1.25 * i, 2.0 + i, float(i) / 3.0, 1000 + i, -i)
            struct.pack_into("<3f4xfHh", buf, row * row_step + col * point_step, *point)
            points.append(point)
    fields = [ros_field("x", 0, PointField.FLOAT32), ros_field("y", 4, PointField.FLOAT32),
              ros_field("z", 8, PointField.FLOAT32), ros_field("intensity", 16, PointField.FLOAT32),
              ros_field("label", 20, PointField.UINT16), ros_field("delta", 22, PointField.INT16)]
    msg = PointCloud2(height=height, width=width, fields=fields, is_bigendian=is_bigendian,
                      point_step=point_step, row_step=row_step, data=bytes(buf), is_dense=True)
    return msg, points


# --- point clouds ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("types", [ROS_TYPES, ROSBAGS_TYPES], ids=["rclpy", "rosbags"])
@pytest.mark.parametrize("shape", [(1000,), (4, 6), (0,)])
def test_cloud_round_trip(types, shape):
    cloud = make_cloud(shape)
    msg = array_to_pointcloud2(cloud, "lidar", STAMP_NS, types)
    assert (msg.height, msg.width) == ((1, shape[0]) if len(shape) == 1 else shape)
    assert msg.point_step == CLOUD_DTYPE.itemsize and msg.row_step == msg.point_step * msg.width
    assert msg.header.frame_id == "lidar" and stamp_to_ns(msg.header.stamp) == STAMP_NS
    assert msg.is_dense and not msg.is_bigendian
    assert [(f.name, f.offset, f.count) for f in msg.fields][-4:] == [("ring", 24, 1), ("normal", 26, 3),
                                                                      ("curvature", 38, 1), ("flag", 46, 1)]
    assert same(pointcloud2_to_array(msg), cloud.reshape(-1))


def test_cloud_point_and_row_padding_made_by_hand():
    msg, points = padded_cloud_msg(height=3, width=4)
    cloud = pointcloud2_to_array(msg)
    assert cloud.dtype == np.dtype([("x", "f4"), ("y", "f4"), ("z", "f4"), ("intensity", "f4"),
                                    ("label", "u2"), ("delta", "i2")])
    expected = np.array(points, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("intensity", "f4"),
                                       ("label", "u2"), ("delta", "i2")])
    assert same(cloud, expected)


def test_cloud_fields_out_of_offset_order_keep_message_order():
    data = np.arange(6, dtype="<f4").tobytes()  # two points, z stored before x
    msg = PointCloud2(height=1, width=2, fields=[ros_field("x", 8, 7), ros_field("z", 0, 7)], is_bigendian=False,
                      point_step=12, row_step=24, data=data, is_dense=True)
    cloud = pointcloud2_to_array(msg)
    assert cloud.dtype.names == ("x", "z")
    assert cloud["x"].tolist() == [2.0, 5.0] and cloud["z"].tolist() == [0.0, 3.0]


def test_cloud_nan_points_and_is_dense():
    cloud = make_cloud((10,))
    cloud["x"][2] = np.nan
    cloud["z"][7] = np.inf
    msg = array_to_pointcloud2(cloud, "lidar", 0)
    assert not msg.is_dense
    back = pointcloud2_to_array(msg)
    assert same(back, cloud)
    xyz, keep = xyz_from_array(back)
    assert keep.tolist() == [i not in (2, 7) for i in range(10)]
    assert xyz.dtype == np.float32 and same(xyz, np.stack([cloud[a][keep] for a in "xyz"], axis=1))
    all_xyz, all_kept = xyz_from_array(back, drop_nonfinite=False)
    assert all_xyz.shape == (10, 3) and all_kept.all()


def test_xyz_from_array_needs_xyz():
    with pytest.raises(MessageError, match="no z field"):
        xyz_from_array(np.zeros(3, dtype=[("x", "f4"), ("y", "f4")]))


@pytest.mark.parametrize("mutate, message", [
    (lambda m: setattr(m, "is_bigendian", True), "big-endian PointCloud2 is not supported"),
    (lambda m: setattr(m, "data", bytes(m.data)[:-1]), r"expected row_step \d+ \* height 3"),
    (lambda m: setattr(m, "point_step", 20), "point_step 20 is smaller than the fields' extent 24"),
    (lambda m: setattr(m, "row_step", 4 * 32 - 1), r"row_step 127 < width 4 \* point_step 32"),
    (lambda m: setattr(m.fields[3], "datatype", 9), "PointField 'intensity' has unknown datatype 9"),
    (lambda m: setattr(m.fields[1], "offset", 2), "PointField 'y' at offset 2 overlaps"),
    (lambda m: setattr(m.fields[5], "offset", 31), "point_step 32 is smaller than the fields' extent 33"),
    (lambda m: setattr(m.fields[5], "name", "x"), "PointField 'x' appears twice"),
    (lambda m: setattr(m.fields[0], "count", 0), "PointField 'x' has count 0"),
    (lambda m: setattr(m, "fields", []), "PointCloud2 has no fields"),
])
def test_cloud_rejects_bad_layouts(mutate, message):
    msg, _ = padded_cloud_msg(height=3, width=4)
    mutate(msg)
    with pytest.raises(MessageError, match=message):
        pointcloud2_to_array(msg)


def test_cloud_rejects_unrepresentable_arrays():
    with pytest.raises(MessageError, match="field 'x' of dtype int64"):
        array_to_pointcloud2(np.zeros(2, dtype=[("x", np.int64)]), "f", 0)
    with pytest.raises(MessageError, match="structured array"):
        array_to_pointcloud2(np.zeros((2, 3), dtype=np.float32), "f", 0)


def test_big_cloud_is_fast_enough():
    cloud = make_cloud((300_000,))
    assert same(pointcloud2_to_array(array_to_pointcloud2(cloud, "lidar", 0)), cloud)


def test_pack_unpack_rgb():
    rgb = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 2, 3], [255, 255, 255]], dtype=np.uint8)
    packed = pack_rgb(rgb)
    assert packed.dtype == np.float32
    assert packed.view(np.uint32).tolist() == [0xFF0000, 0x00FF00, 0x0000FF, 0x010203, 0xFFFFFF]
    assert same(unpack_rgb(packed), rgb)
    rgba = packed.view(np.uint32) | np.uint32(0x80000000)
    assert same(unpack_rgb(rgba), rgb)
    assert same(unpack_rgb(rgba.astype(">u4")), rgb)
    with pytest.raises(MessageError):
        unpack_rgb(np.zeros(3, dtype=np.float64))
    with pytest.raises(MessageError):
        pack_rgb(np.zeros((3, 4), dtype=np.uint8))


# --- images -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("types", [ROS_TYPES, ROSBAGS_TYPES], ids=["rclpy", "rosbags"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_image_round_trip(types, encoding):
    image = make_image(encoding)
    msg = array_to_image(image, encoding, "camera", STAMP_NS, types)
    assert (msg.height, msg.width, msg.encoding) == (5, 7, encoding)
    assert msg.header.frame_id == "camera" and stamp_to_ns(msg.header.stamp) == STAMP_NS
    assert same(image_to_array(msg), image)


def test_image_channel_order_and_alpha():
    rgb = make_image("rgb8")
    assert bytes(array_to_image(rgb, "bgr8", "c", 0).data) == rgb[..., ::-1].tobytes()
    bgra = np.frombuffer(bytes(array_to_image(rgb, "bgra8", "c", 0).data), np.uint8).reshape(5, 7, 4)
    assert same(bgra[..., :3], rgb[..., ::-1].copy()) and (bgra[..., 3] == 255).all()
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 7, np.uint8)], axis=2)
    msg = array_to_image(rgba, "rgba8", "c", 0)
    assert bytes(msg.data) == rgba.tobytes() and same(image_to_array(msg), rgb)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_image_step_padding_made_by_hand(encoding):
    image = make_image(encoding)
    pixels = image[..., ::-1] if encoding.startswith("bgr") else image  # the bytes the encoding stores
    if encoding.endswith("a8"):
        pixels = np.concatenate([pixels, np.zeros((5, 7, 1), np.uint8)], axis=2)
    row_bytes = np.ascontiguousarray(pixels).reshape(5, -1).view(np.uint8)
    padded = np.full((5, row_bytes.shape[1] + 5), 0xCD, np.uint8)
    padded[:, :row_bytes.shape[1]] = row_bytes
    msg = Image(height=5, width=7, encoding=encoding, is_bigendian=0, step=padded.shape[1], data=padded.tobytes())
    assert same(image_to_array(msg), image)


@pytest.mark.parametrize("encoding, dtype", [("16UC1", ">u2"), ("mono16", ">u2"), ("32FC1", ">f4")])
def test_image_big_endian(encoding, dtype):
    image = make_image(encoding)
    msg = Image(height=5, width=7, encoding=encoding, is_bigendian=1, step=7 * 4,  # and 2 or 0 bytes row padding
                data=np.pad(image.astype(dtype).view(np.uint8).reshape(5, -1), ((0, 0), (0, 28 - 7 * image.itemsize)))
                .tobytes())
    out = image_to_array(msg)
    assert out.dtype == image.dtype and same(out, image)


@pytest.mark.parametrize("field, value, message", [
    ("encoding", "yuv422", "unsupported image encoding 'yuv422'"),
    ("step", 7 * 2 - 1, r"image step 13 < width 7 \* 2 bytes per 16UC1 pixel"),
    ("data", bytes(7 * 2 * 5 - 1), r"image data has 69 bytes, expected step 14 \* height 5"),
    ("width", 0, "image has zero size 0x5"),
    ("height", 0, "image has zero size 7x0"),
])
def test_image_rejects_bad_messages(field, value, message):
    msg = array_to_image(make_image("16UC1"), "16UC1", "c", 0)
    setattr(msg, field, value)
    with pytest.raises(MessageError, match=message):
        image_to_array(msg)


def test_array_to_image_rejects_wrong_arrays():
    with pytest.raises(MessageError, match=r"16UC1 needs a \(H, W\) uint16 array, got float32"):
        array_to_image(np.zeros((2, 2), np.float32), "16UC1", "c", 0)
    with pytest.raises(MessageError, match=r"rgb8 needs a \(H, W, 3\) uint8 array"):
        array_to_image(np.zeros((2, 2, 4), np.uint8), "rgb8", "c", 0)
    with pytest.raises(MessageError, match="zero size"):
        array_to_image(np.zeros((0, 2), np.float32), "32FC1", "c", 0)


def test_depth_to_metres():
    millimetres = np.array([[0, 1234], [65535, 1]], dtype=np.uint16)
    expected = np.array([[np.nan, 1.234], [65.535, 0.001]], dtype=np.float32)
    assert same(depth_to_metres(millimetres, "16UC1"), expected)
    assert same(depth_to_metres(array_to_image(millimetres, "16UC1", "c", 0)), expected)
    metres = np.array([[0.0, -1.0, np.inf], [np.nan, 2.5, -np.inf]], dtype=np.float32)
    expected = np.array([[np.nan, np.nan, np.nan], [np.nan, 2.5, np.nan]], dtype=np.float32)
    assert same(depth_to_metres(array_to_image(metres, "32FC1", "c", 0, ROSBAGS_TYPES)), expected)
    with pytest.raises(MessageError, match="needs the encoding"):
        depth_to_metres(metres)
    with pytest.raises(MessageError, match="depth encoding must be"):
        depth_to_metres(array_to_image(make_image("mono8"), "mono8", "c", 0))
    with pytest.raises(MessageError, match="not '16UC1'"):
        depth_to_metres(array_to_image(metres, "32FC1", "c", 0), "16UC1")


# --- camera info and pinhole geometry -------------------------------------------------------------------------------

CAMERA = PinholeCamera(width=64, height=48, fx=50.0, fy=52.5, cx=31.7, cy=23.2,
                       distortion=(0.1, -0.05, 0.001, 0.002, 0.0), distortion_model="plumb_bob")


@pytest.mark.parametrize("types", [ROS_TYPES, ROSBAGS_TYPES], ids=["rclpy", "rosbags"])
@pytest.mark.parametrize("camera", [CAMERA, PinholeCamera(640, 480, 500.0, 500.0, 319.5, 239.5)])
def test_camera_info_round_trip(types, camera):
    msg = camera_to_camera_info(camera, "camera_optical", STAMP_NS, types)
    assert np.asarray(msg.k).tolist() == camera.K.reshape(-1).tolist()
    assert np.asarray(msg.p).reshape(3, 4)[:, :3].tolist() == camera.K.tolist()
    assert camera_info_to_camera(msg) == camera


@pytest.mark.parametrize("k, message", [
    ([0.0] * 9, "invalid intrinsics fx=0.0"),
    ([np.nan, 0, 1, 0, 5, 1, 0, 0, 1], "invalid intrinsics fx=nan"),
    ([5, 0, 1, 0, -5, 1, 0, 0, 1], "invalid intrinsics fx=5.0 fy=-5.0"),
    ([5, 0, np.inf, 0, 5, 1, 0, 0, 1], "cx=inf"),
])
def test_camera_info_rejects_bad_k(k, message):
    msg = camera_to_camera_info(CAMERA, "c", 0)
    msg.k = np.array(k, dtype=np.float64)
    with pytest.raises(MessageError, match=message):
        camera_info_to_camera(msg)


def test_camera_info_rejects_zero_size():
    msg = camera_to_camera_info(CAMERA, "c", 0, ROSBAGS_TYPES)
    msg.width = 0
    with pytest.raises(MessageError, match="zero image size 0x48"):
        camera_info_to_camera(msg)


def test_pinhole_project_backproject():
    rng = np.random.default_rng(3)
    u, v = rng.integers(0, CAMERA.width, 200), rng.integers(0, CAMERA.height, 200)
    depth = np.full((CAMERA.height, CAMERA.width), np.nan, np.float32)
    depth[v, u] = rng.uniform(0.3, 8.0, 200).astype(np.float32)
    points, pixels = CAMERA.backproject(depth)
    assert points.dtype == np.float32 and len(points) == len(np.unique(v * CAMERA.width + u))
    uv, z = CAMERA.project(points)
    np.testing.assert_allclose(uv, pixels, atol=1e-4)
    assert same(z, depth[pixels[:, 1], pixels[:, 0]])
    again, again_pixels = CAMERA.backproject(depth)
    assert same(again, points) and same(again_pixels, pixels)

    sparse, sparse_pixels = CAMERA.backproject(depth, stride=2)
    assert ((sparse_pixels % 2) == 0).all()
    np.testing.assert_allclose(CAMERA.project(sparse)[0], sparse_pixels, atol=1e-4)

    ideal = dataclasses.replace(CAMERA, distortion=(0.0,) * 5)
    camera_points = rng.uniform([-2, -2, 0.5], [2, 2, 6], size=(100, 3))
    uv, z = ideal.project(camera_points)
    back = np.concatenate([(uv - [ideal.cx, ideal.cy]) / [ideal.fx, ideal.fy] * z[:, None], z[:, None]], 1)
    np.testing.assert_allclose(back, camera_points, rtol=1e-12)
    distorted_uv, _ = CAMERA.project(camera_points[:5] * [0.1, 0.1, 1.0])
    assert not np.allclose(distorted_uv, ideal.project(camera_points[:5] * [0.1, 0.1, 1.0])[0])
    assert np.isnan(CAMERA.project(np.array([[1.0, 1.0, 0.0], [1.0, 1.0, -2.0]]))[0]).all()


def test_pinhole_k_and_scaled():
    assert CAMERA.K.tolist() == [[50.0, 0.0, 31.7], [0.0, 52.5, 23.2], [0.0, 0.0, 1.0]]
    half = CAMERA.scaled(0.5, 0.5)
    assert (half.width, half.height, half.fx, half.fy) == (32, 24, 25.0, 26.25)
    assert half.cx == pytest.approx((31.7 + 0.5) / 2 - 0.5) and half.distortion == CAMERA.distortion
    with pytest.raises(ValueError, match="depth image shape"):
        CAMERA.backproject(np.zeros((10, 10)))


# --- rosbags <-> rclpy through CDR ----------------------------------------------------------------------------------

def through_cdr_to_rclpy(msg, msgtype: str, rclpy_class):
    return deserialize_message(bytes(TYPESTORE.serialize_cdr(msg, msgtype)), rclpy_class)


def through_cdr_to_rosbags(msg, msgtype: str):
    return TYPESTORE.deserialize_cdr(serialize_message(msg), msgtype)


def test_cloud_rosbags_to_rclpy_and_back():
    cloud = make_cloud((3, 50))
    cloud["y"][1, 4] = np.nan
    built = array_to_pointcloud2(cloud, "lidar", STAMP_NS, ROSBAGS_TYPES)
    received = through_cdr_to_rclpy(built, "sensor_msgs/msg/PointCloud2", PointCloud2)
    assert isinstance(received, PointCloud2) and not received.is_dense
    assert stamp_to_ns(received.header.stamp) == STAMP_NS and received.header.frame_id == "lidar"
    assert same(pointcloud2_to_array(received), cloud.reshape(-1))
    decoded = through_cdr_to_rosbags(array_to_pointcloud2(cloud, "lidar", STAMP_NS), "sensor_msgs/msg/PointCloud2")
    assert isinstance(decoded.data, np.ndarray) and not decoded.is_dense
    assert same(pointcloud2_to_array(decoded), cloud.reshape(-1))


def test_padded_cloud_rclpy_to_rosbags():
    msg, _ = padded_cloud_msg(height=2, width=5)
    decoded = through_cdr_to_rosbags(msg, "sensor_msgs/msg/PointCloud2")
    assert same(pointcloud2_to_array(decoded), pointcloud2_to_array(msg))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_image_rosbags_to_rclpy_and_back(encoding):
    image = make_image(encoding)
    received = through_cdr_to_rclpy(array_to_image(image, encoding, "cam", STAMP_NS, ROSBAGS_TYPES),
                                    "sensor_msgs/msg/Image", Image)
    assert same(image_to_array(received), image) and received.encoding == encoding
    decoded = through_cdr_to_rosbags(array_to_image(image, encoding, "cam", STAMP_NS), "sensor_msgs/msg/Image")
    assert same(image_to_array(decoded), image) and stamp_to_ns(decoded.header.stamp) == STAMP_NS


def test_camera_info_rosbags_to_rclpy_and_back():
    received = through_cdr_to_rclpy(camera_to_camera_info(CAMERA, "cam", STAMP_NS, ROSBAGS_TYPES),
                                    "sensor_msgs/msg/CameraInfo", CameraInfo)
    assert camera_info_to_camera(received) == CAMERA
    decoded = through_cdr_to_rosbags(camera_to_camera_info(CAMERA, "cam", STAMP_NS), "sensor_msgs/msg/CameraInfo")
    assert camera_info_to_camera(decoded) == CAMERA and decoded.header.frame_id == "cam"


def test_library_never_imports_rclpy():
    code = (
        "import sys, numpy as np\n"
        "from ov3d_ros.messages import array_to_pointcloud2, pointcloud2_to_array, camera_to_camera_info\n"
        "from ov3d_ros.geometry.camera import PinholeCamera\n"
        "cloud = np.zeros(3, dtype=[('x', 'f4'), ('y', 'f4'), ('z', 'f4')])\n"
        "pointcloud2_to_array(array_to_pointcloud2(cloud, 'f', 0))\n"
        "camera_to_camera_info(PinholeCamera(2, 2, 1.0, 1.0, 1.0, 1.0), 'f', 0)\n"
        "assert not any(m == 'rclpy' or m.startswith('rclpy.') for m in sys.modules), 'rclpy was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
