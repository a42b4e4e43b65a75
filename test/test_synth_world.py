"""`ov3d synth` outputs: deterministic, consistent with each other, and readable by independent tools."""
from __future__ import annotations

import json

import numpy as np
import pytest
from plyfile import PlyData
from rosbags.highlevel import AnyReader

from ov3d_ros.config import MultiViewFusionConfig, SynthConfig
from ov3d_ros.data.bag_frames import bag_frames
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.ply import read_ply
from ov3d_ros.data.scanrefer import read_scanrefer
from ov3d_ros.data.synthetic.categories import CLASS_NAMES
from ov3d_ros.data.synthetic.world import render_scene, scene_name, synthesize
from ov3d_ros.geometry.transforms import RigidTransform

SMALL = SynthConfig(frames=4, width=160, height=120, duration_s=2.0, lidar=True, lidar_rate_hz=1.0,
                    point_spacing_m=0.05, descriptions_per_object=2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("synth")
    synthesize(root, "val", [11, 12], SMALL, teacher=None, fusion=MultiViewFusionConfig(), progress=False)
    return Dataset(root)


def test_same_seed_same_outputs_different_seed_different_layout():
    a, b, c = render_scene(3, SMALL), render_scene(3, SMALL), render_scene(4, SMALL)
    np.testing.assert_array_equal(a.points.xyz, b.points.xyz)
    np.testing.assert_array_equal(a.frames[2].depth_m, b.frames[2].depth_m)
    np.testing.assert_array_equal(a.frames[2].color, b.frames[2].color)
    assert [d.description for d in a.descriptions] == [d.description for d in b.descriptions]
    assert len(a.points.xyz) != len(c.points.xyz) or not np.array_equal(a.points.xyz, c.points.xyz)


def test_frame_labels_agree_with_the_3d_labels(dataset):
    for scene in dataset.scenes("val"):
        cloud = dataset.scene_cloud(scene)
        agree = total = 0
        for frame in dataset.frames(scene):
            world_to_camera = np.linalg.inv(frame.camera_to_world)
            local = cloud.coords @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
            uv, z = frame.depth_camera.project(local)
            u, v = np.floor(uv[:, 0] + 0.5), np.floor(uv[:, 1] + 0.5)
            inside = (z > 0) & (u >= 0) & (u < frame.depth_camera.width) & (v >= 0) & (v < frame.depth_camera.height)
            rows, cols = v[inside].astype(int), u[inside].astype(int)
            depth = frame.depth_m[rows, cols]
            visible = np.abs(depth - z[inside]) < 0.03
            agree += int((frame.labels[rows, cols][visible] == cloud.labels[inside][visible]).sum())
            total += int(visible.sum())
        assert total > 1000 and agree / total >= 0.98, (scene, agree / total)


def test_boxes_contain_their_instance_points_and_scene_labels(dataset):
    for scene in dataset.scenes("val"):
        cloud = dataset.scene_cloud(scene)
        boxes = json.loads((dataset.root / "boxes" / f"{scene}.json").read_text())
        assert boxes["scene_labels"] == sorted({CLASS_NAMES[c] for c in np.unique(cloud.labels) if c != 255})
        for box in boxes["objects"]:
            points = cloud.coords[cloud.instance_labels == box["instance_id"]]
            if box["label"] in ("wall", "floor") or len(points) == 0:
                continue
            c, s = np.cos(-box["yaw"]), np.sin(-box["yaw"])
            local = (points - box["centre"])[:, :2] @ np.array([[c, s], [-s, c]])
            inside = (np.abs(local) <= np.array(box["size"][:2]) / 2 + 0.01).all(1)
            inside &= np.abs(points[:, 2] - box["centre"][2]) <= box["size"][2] / 2 + 0.01
            assert inside.mean() >= 0.99, (scene, box["label"], inside.mean())


def test_descriptions_targets_exist_and_flags_are_right(dataset):
    entries = json.loads((dataset.root / "scanrefer" / "val.json").read_text())
    assert entries and {e["scene_id"] for e in entries} == set(dataset.scenes("val"))
    for scene in dataset.scenes("val"):
        objects = json.loads((dataset.root / "boxes" / f"{scene}.json").read_text())["objects"]
        by_id = {o["instance_id"]: o for o in objects}
        for entry in (e for e in entries if e["scene_id"] == scene):
            target = by_id[entry["object_id"]]
            assert target["label"] == entry["object_name"]
            same = sum(o["label"] == target["label"] for o in objects)
            assert entry["eval_type"] == ("unique" if same == 1 else "multiple")
            assert set(entry["token"]) >= {"the"} or entry["token"][0] in ("a", "this", "there", "find", "it")
            assert all(a in by_id for a in entry["anchor_ids"])


def test_bag_reads_back_with_rosbags_and_tf_is_consistent(dataset):
    scene = dataset.scenes("val")[0]
    with AnyReader([dataset.root / "bags" / scene]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        assert counts["/camera/color/image_raw"] == SMALL.frames and counts["/lidar/points"] == 2
        assert counts["/tf_static"] == 1
        static = {}
        for connection, _, raw in reader.messages([c for c in reader.connections if c.topic == "/tf_static"]):
            for t in reader.deserialize(raw, connection.msgtype).transforms:
                static[t.child_frame_id] = t
        camera_tf = next(reader.deserialize(raw, c.msgtype) for c, _, raw in
                         reader.messages([c for c in reader.connections if c.topic == "/tf"])
                         if reader.deserialize(raw, c.msgtype).transforms[0].child_frame_id == "camera_link")
    link = RigidTransform.from_msg(camera_tf.transforms[0].transform)
    optical = RigidTransform.from_msg(static["camera_color_optical_frame"].transform)
    first = next(dataset.frames(scene))
    np.testing.assert_allclose((link * optical).matrix, first.camera_to_world, atol=1e-6)


def test_ply_reads_back_with_plyfile_and_our_reader(dataset):
    scene = dataset.scenes("val")[0]
    vertex = PlyData.read(str(dataset.root / "ply" / f"{scene}.ply"))["vertex"]
    cloud = dataset.scene_cloud(scene)
    assert vertex.count == cloud.num_points
    np.testing.assert_array_equal(np.asarray(vertex["label"]), cloud.labels)
    ours = read_ply(dataset.root / "ply" / f"{scene}.ply")
    np.testing.assert_array_equal(ours.coords, cloud.coords)
    np.testing.assert_array_equal(ours.instance_labels, cloud.instance_labels)
    assert scene == scene_name(11)


def test_scanrefer_reader(dataset, tmp_path):
    expressions = read_scanrefer(dataset.root / "scanrefer" / "val.json")
    assert expressions and all(e.eval_type in ("unique", "multiple") for e in expressions)
    (tmp_path / "bad.json").write_text('[{"scene_id": "x"}]')
    with pytest.raises(ValueError, match="entry 0 lacks object_id"):
        read_scanrefer(tmp_path / "bad.json")


def test_bag_frames_match_the_frame_folder(dataset):
    """The bag of a scene, read through TF and time sync, gives the frames of its export folder."""
    scene = dataset.scenes("val")[0]
    from_bag = list(bag_frames(dataset.root / "bags" / scene))
    from_folder = list(dataset.frames(scene))
    assert len(from_bag) == len(from_folder) == SMALL.frames
    for a, b in zip(from_bag, from_folder):
        np.testing.assert_allclose(a.camera_to_world, b.camera_to_world, atol=1e-6)
        np.testing.assert_array_equal(a.color, b.color)
        np.testing.assert_array_equal(np.nan_to_num(a.depth_m), np.nan_to_num(b.depth_m))
        assert a.depth_camera == b.depth_camera
    assert [f.index for f in bag_frames(dataset.root / "bags" / scene, stride=2)] == [0, 2]
