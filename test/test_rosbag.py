"""rosbag2 reading and writing (MCAP and sqlite3) through ov3d_ros.data.rosbag."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import get_types_from_msg

from ov3d_ros.data.rosbag import (
    BagError,
    BagReader,
    BagWriter,
    QosSpec,
    TopicInfo,
    _offered_profiles,
    _topic_qos,
    default_qos,
    message_to_stamp_ns,
    new_typestore,
)

STORAGES = ["mcap", "sqlite3"]
T0 = 1_700_000_000_000_000_000
MS = 1_000_000
LATCHED = QosSpec("transient_local", "reliable", 1)
REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- message builders
def header(ts: Any, stamp_ns: int, frame: str) -> Any:
    t = ts.types
    stamp = t["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return t["std_msgs/msg/Header"](stamp=stamp, frame_id=frame)


def image_rgb8(ts: Any, stamp_ns: int, seed: int = 0) -> Any:
    data = np.random.default_rng(seed).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    return ts.types["sensor_msgs/msg/Image"](
        header=header(ts, stamp_ns, "camera_optical"), height=6, width=8, encoding="rgb8",
        is_bigendian=0, step=8 * 3, data=data.reshape(-1))


def image_depth16(ts: Any, stamp_ns: int, seed: int = 1) -> Any:
    depth = np.random.default_rng(seed).integers(0, 5000, size=(6, 8), dtype=np.uint16)
    return ts.types["sensor_msgs/msg/Image"](
        header=header(ts, stamp_ns, "camera_optical"), height=6, width=8, encoding="16UC1",
        is_bigendian=0, step=8 * 2, data=depth.astype("<u2").view(np.uint8).reshape(-1))


def camera_info(ts: Any, stamp_ns: int) -> Any:
    t = ts.types
    k = np.array([5.0, 0, 4.0, 0, 5.0, 3.0, 0, 0, 1.0])
    p = np.array([5.0, 0, 4.0, 0, 0, 5.0, 3.0, 0, 0, 0, 1.0, 0])
    roi = t["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return t["sensor_msgs/msg/CameraInfo"](
        header=header(ts, stamp_ns, "camera_optical"), height=6, width=8, distortion_model="plumb_bob",
        d=np.array([0.1, -0.05, 0.001, 0.002, 0.0]), k=k, r=np.eye(3).reshape(-1), p=p,
        binning_x=0, binning_y=0, roi=roi)


def point_cloud(ts: Any, stamp_ns: int) -> Any:
    t = ts.types
    field_cls = t["sensor_msgs/msg/PointField"]
    fields = [field_cls(name=n, offset=4 * i, datatype=field_cls.FLOAT32, count=1) for i, n in enumerate("xyz")]
    xyz = np.array([[0.0, 0.0, 1.0], [0.5, -0.25, 2.0], [1.5, 2.5, -3.0]], dtype="<f4")
    return t["sensor_msgs/msg/PointCloud2"](
        header=header(ts, stamp_ns, "map"), height=1, width=3, fields=fields, is_bigendian=False,
        point_step=12, row_step=36, data=xyz.view(np.uint8).reshape(-1), is_dense=True)


def tf_message(ts: Any, stamp_ns: int, parent: str, child: str, x: float) -> Any:
    t = ts.types
    transform = t["geometry_msgs/msg/Transform"](
        translation=t["geometry_msgs/msg/Vector3"](x=x, y=0.0, z=0.5),
        rotation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0))
    stamped = t["geometry_msgs/msg/TransformStamped"](
        header=header(ts, stamp_ns, parent), child_frame_id=child, transform=transform)
    return t["tf2_msgs/msg/TFMessage"](transforms=[stamped])


def assert_msg_equal(expected: Any, actual: Any, where: str = "msg") -> None:
    """Field-by-field equality across typestores (classes differ, content must not)."""
    if dataclasses.is_dataclass(expected):
        assert expected.__msgtype__ == actual.__msgtype__, where
        for f in dataclasses.fields(expected):
            assert_msg_equal(getattr(expected, f.name), getattr(actual, f.name), f"{where}.{f.name}")
    elif isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray), where
        assert expected.dtype == actual.dtype, where
        np.testing.assert_array_equal(expected, actual, err_msg=where)
    elif isinstance(expected, list):
        assert len(expected) == len(actual), where
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_msg_equal(e, a, f"{where}[{i}]")
    else:
        assert expected == actual, where


# --------------------------------------------------------------------------- fixture bag
TOPICS = {
    "/camera/color/image_raw": "sensor_msgs/msg/Image",
    "/camera/depth/image_raw": "sensor_msgs/msg/Image",
    "/camera/color/camera_info": "sensor_msgs/msg/CameraInfo",
    "/points": "sensor_msgs/msg/PointCloud2",
    "/tf": "tf2_msgs/msg/TFMessage",
    "/tf_static": "tf2_msgs/msg/TFMessage",
}


def expected_messages(ts: Any) -> list[tuple[str, int, Any]]:
    """(topic, log time, message) in strictly increasing log time."""
    out: list[tuple[str, int, Any]] = [
        ("/tf_static", T0, tf_message(ts, T0, "base_link", "camera_link", 0.1)),
        ("/tf_static", T0 + 1 * MS, tf_message(ts, T0, "camera_link", "camera_optical", 0.0)),
    ]
    for i in range(3):
        base = T0 + (i + 1) * 100 * MS
        out += [
            ("/camera/color/image_raw", base, image_rgb8(ts, base - 5 * MS, seed=i)),
            ("/camera/depth/image_raw", base + 1 * MS, image_depth16(ts, base - 5 * MS, seed=10 + i)),
            ("/camera/color/camera_info", base + 2 * MS, camera_info(ts, base - 5 * MS)),
            ("/tf", base + 3 * MS, tf_message(ts, base, "map", "base_link", 0.1 * i)),
        ]
    out.append(("/points", T0 + 350 * MS, point_cloud(ts, T0 + 340 * MS)))
    return out


def write_fixture(path: Path, storage: str) -> list[tuple[str, int, Any]]:
    with BagWriter(path, storage=storage) as writer:
        for topic, msgtype in TOPICS.items():
            writer.add_topic(topic, msgtype, LATCHED if topic == "/tf_static" else None)
        expected = expected_messages(writer.typestore)
        for topic, stamp, msg in expected:
            writer.write(topic, stamp, msg)
    return expected


@pytest.fixture(params=STORAGES)
def bag(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str, list[tuple[str, int, Any]]]:
    path = tmp_path / f"bag_{request.param}"
    return path, request.param, write_fixture(path, request.param)


# --------------------------------------------------------------------------- tests
def test_roundtrip_topics_counts_qos_order_content(bag: tuple[Path, str, list[tuple[str, int, Any]]]) -> None:
    path, storage, expected = bag
    with BagReader(path) as reader:
        assert reader.storage == storage
        assert set(reader.topics) == set(TOPICS)
        for name, msgtype in TOPICS.items():
            info = reader.topics[name]
            assert isinstance(info, TopicInfo)
            assert (info.name, info.msgtype) == (name, msgtype)
            assert info.count == sum(1 for t, _, _ in expected if t == name)
        assert reader.topics["/tf_static"].qos == LATCHED
        assert reader.topics["/tf"].qos == QosSpec("volatile", "reliable", 10)
        assert reader.message_count == len(expected)
        assert reader.start_ns == expected[0][1] and reader.end_ns == expected[-1][1]
        assert reader.duration_s == pytest.approx(0.35)

        read = list(reader.messages())
        assert [(m.topic, m.timestamp_ns) for m in read] == [(t, s) for t, s, _ in expected]
        for (topic, _, msg), got in zip(expected, read):
            assert got.msgtype == TOPICS[topic] and isinstance(got.raw, bytes)
            assert_msg_equal(msg, got.decode(), topic)
            assert_msg_equal(msg, reader.decode(got), topic)

        image = next(m.decode() for m in read if m.topic == "/camera/depth/image_raw")
        depth = image.data.view("<u2").reshape(image.height, image.width)
        assert depth.shape == (6, 8) and depth.max() < 5000


def test_qos_is_stored_in_the_bag_metadata(bag: tuple[Path, str, list[tuple[str, int, Any]]]) -> None:
    path, storage, _ = bag
    meta = (path / "metadata.yaml").read_text()
    assert "version: 9" in meta and f"storage_identifier: {storage}" in meta
    assert "durability: transient_local" in meta and "reliability: reliable" in meta
    suffix = "mcap" if storage == "mcap" else "db3"
    assert {p.name for p in path.iterdir()} == {"metadata.yaml", f"{path.name}.{suffix}"}


def test_time_window_and_topic_filter(bag: tuple[Path, str, list[tuple[str, int, Any]]]) -> None:
    path, _, expected = bag
    start, end = T0 + 200 * MS, T0 + 302 * MS  # inclusive at both ends
    with BagReader(path) as reader:
        window = [(m.topic, m.timestamp_ns) for m in reader.messages(start_ns=start, end_ns=end)]
        assert window == [(t, s) for t, s, _ in expected if start <= s <= end]
        assert window[-1][1] == end
        images = list(reader.messages(topics=["/camera/color/image_raw"], start_ns=T0 + 150 * MS))
        assert [m.timestamp_ns for m in images] == [T0 + 200 * MS, T0 + 300 * MS]
        assert list(reader.messages(topics=[])) == []
        with pytest.raises(BagError, match="/nope"):
            reader.messages(topics=["/nope"])


def test_message_to_stamp_ns(bag: tuple[Path, str, list[tuple[str, int, Any]]]) -> None:
    path, _, _ = bag
    with BagReader(path) as reader:
        first_image = next(iter(reader.messages(topics=["/camera/color/image_raw"])))
        assert message_to_stamp_ns(first_image.decode()) == T0 + 95 * MS
        tf = next(iter(reader.messages(topics=["/tf"])))
        assert message_to_stamp_ns(tf.decode()) is None  # TFMessage has no header


def test_raw_cdr_deserialises_with_rclpy(bag: tuple[Path, str, list[tuple[str, int, Any]]]) -> None:
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    path, _, expected = bag
    want = next(msg for topic, _, msg in expected if topic == "/camera/depth/image_raw")
    with BagReader(path) as reader:
        raw = next(iter(reader.messages(topics=["/camera/depth/image_raw"]))).raw
    image = deserialize_message(raw, Image)
    assert (image.height, image.width, image.encoding, image.step) == (6, 8, "16UC1", 16)
    assert image.header.frame_id == "camera_optical"
    assert image.header.stamp.sec * 10**9 + image.header.stamp.nanosec == T0 + 95 * MS
    assert bytes(image.data) == want.data.tobytes()


@pytest.mark.parametrize("storage", STORAGES)
def test_write_raw_roundtrip(tmp_path: Path, storage: str) -> None:
    ts = new_typestore()
    msg = camera_info(ts, T0)
    cdr = bytes(ts.serialize_cdr(msg, "sensor_msgs/msg/CameraInfo"))
    with BagWriter(tmp_path / "raw", storage=storage) as writer:
        writer.add_topic("/info", "sensor_msgs/msg/CameraInfo")
        writer.write_raw("/info", T0, cdr)
        with pytest.raises(BagError, match="not CDR"):
            writer.write_raw("/info", T0, b"\x07")
    with BagReader(tmp_path / "raw") as reader:
        (got,) = reader.messages()
        assert_msg_equal(msg, got.decode())


@pytest.mark.parametrize("storage", STORAGES)
def test_exception_inside_with_leaves_nothing(tmp_path: Path, storage: str) -> None:
    path = tmp_path / "aborted"
    with pytest.raises(RuntimeError, match="boom"):
        with BagWriter(path, storage=storage) as writer:
            writer.add_topic("/tf", "tf2_msgs/msg/TFMessage")
            writer.write("/tf", T0, tf_message(writer.typestore, T0, "map", "base_link", 1.0))
            assert not path.exists()  # written into a hidden sibling until close
            raise RuntimeError("boom")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("storage", STORAGES)
def test_overwrite(tmp_path: Path, storage: str) -> None:
    path = tmp_path / "bag"
    write_fixture(path, storage)
    with pytest.raises(BagError, match="already exists"):
        BagWriter(path, storage=storage)
    with BagWriter(path, storage=storage, overwrite=True) as writer:
        writer.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        writer.write("/tf", T0, tf_message(writer.typestore, T0, "map", "base_link", 1.0))
    with BagReader(path) as reader:
        assert list(reader.topics) == ["/tf"] and reader.message_count == 1
    assert [p.name for p in tmp_path.iterdir()] == ["bag"]

    folder = tmp_path / "not_a_bag"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    with pytest.raises(BagError, match="refusing to overwrite"):
        BagWriter(folder, storage=storage, overwrite=True)
    assert (folder / "keep.txt").read_text() == "precious"


def test_writer_errors(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="unsupported storage"):
        BagWriter(tmp_path / "x", storage="rosbag1")  # type: ignore[arg-type]
    writer = BagWriter(tmp_path / "x")
    with pytest.raises(BagError, match="not open"):
        writer.add_topic("/tf", "tf2_msgs/msg/TFMessage")
    with pytest.raises(RuntimeError):
        with writer:
            with pytest.raises(BagError, match="unknown message type"):
                writer.add_topic("/obj", "ov3d_interfaces/msg/GroundedObject")
            with pytest.raises(BagError, match="call add_topic first"):
                writer.write("/tf", T0, object())
            writer.add_topic("/tf", "tf2_msgs/msg/TFMessage")
            with pytest.raises(BagError, match="already added"):
                writer.add_topic("/tf", "tf2_msgs/msg/TFMessage")
            with pytest.raises(BagError, match="cannot serialise"):
                writer.write("/tf", T0, camera_info(writer.typestore, T0))
            raise RuntimeError("abandon")
    assert not (tmp_path / "x").exists()


def test_bag_errors(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="bag not found"):
        BagReader(tmp_path / "missing")
    folder = tmp_path / "random"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(BagError, match="no metadata.yaml"):
        BagReader(folder)
    (folder / "metadata.yaml").write_text("just: [a, broken\n")
    with pytest.raises(BagError, match="cannot read bag") as err:
        BagReader(folder)
    assert "\n" not in str(err.value)
    with pytest.raises(BagError, match="not a rosbag2 bag"):
        BagReader(folder / "notes.txt")
    assert issubclass(BagError, ValueError)


@pytest.mark.parametrize("storage", STORAGES)
def test_custom_type_decodes_from_bag_definition(tmp_path: Path, storage: str) -> None:
    msgtype = "ov3d_interfaces/msg/GroundedObject"
    writer_store = new_typestore()
    text = (REPO / "ov3d_interfaces" / "msg" / "GroundedObject.msg").read_text()
    writer_store.register(get_types_from_msg(text, msgtype))
    t = writer_store.types
    pose = t["geometry_msgs/msg/PoseStamped"](
        header=header(writer_store, T0, "map"),
        pose=t["geometry_msgs/msg/Pose"](position=t["geometry_msgs/msg/Point"](x=1.0, y=2.0, z=0.5),
                                         orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)))
    obj = t[msgtype](label="chair", score=0.75, instance_id=7, pose=pose,
                     size=t["geometry_msgs/msg/Vector3"](x=0.5, y=0.5, z=1.0))
    with BagWriter(tmp_path / "custom", storage=storage, typestore=writer_store) as writer:
        writer.add_topic("/objects", msgtype)
        writer.write("/objects", T0, obj)

    with BagReader(tmp_path / "custom") as reader:  # fresh Kilted store: the type comes from the bag
        assert msgtype in reader.typestore.fielddefs
        (got,) = reader.messages()
        assert_msg_equal(obj, got.decode())


@pytest.mark.parametrize("storage", STORAGES)
def test_tf_static_without_recorded_qos_is_latched(tmp_path: Path, storage: str) -> None:
    store = new_typestore()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(tmp_path / "noqos", version=9, storage_plugin=plugin) as writer:  # raw rosbags: no QoS profiles
        static = writer.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=store)
        dynamic = writer.add_connection("/tf", "tf2_msgs/msg/TFMessage", typestore=store)
        for i in range(3):
            msg = tf_message(store, T0, "base_link", f"sensor_{i}", 0.1)
            writer.write(static, T0 + i, store.serialize_cdr(msg, "tf2_msgs/msg/TFMessage"))
        writer.write(dynamic, T0 + 10, store.serialize_cdr(msg, "tf2_msgs/msg/TFMessage"))
    with BagReader(tmp_path / "noqos") as reader:
        assert reader.topics["/tf_static"].qos == QosSpec("transient_local", "reliable", 3)
        assert reader.topics["/tf"].qos == QosSpec("volatile", "reliable", 10)


def test_qos_profiles_as_yaml_text() -> None:
    v8 = "- history: 1\n  depth: 1\n  reliability: 1\n  durability: 1\n"
    v9 = "- history: keep_last\n  depth: 5\n  reliability: best_effort\n  durability: volatile\n"
    assert _topic_qos("/tf_static", _offered_profiles(v8), 4) == QosSpec("transient_local", "reliable", 1)
    assert _topic_qos("/scan", _offered_profiles(v9), 4) == QosSpec("volatile", "best_effort", 5)
    mixed = _offered_profiles(v8) + _offered_profiles(v9)
    assert _topic_qos("/x", mixed, 4) == QosSpec("volatile", "best_effort", 5)
    assert _topic_qos("/x", _offered_profiles(""), 4) == default_qos("/x")
    assert default_qos("/tf_static", 500) == QosSpec("transient_local", "reliable", 100)
    with pytest.raises(ValueError, match="durability"):
        QosSpec("latched", "reliable", 1)  # type: ignore[arg-type]


def test_module_does_not_import_rclpy() -> None:
    code = "import sys, ov3d_ros.data.rosbag; assert 'rclpy' not in sys.modules, 'rclpy imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
