"""The perception graph across processes over DDS: `ov3d launch` in a child process, this process replays a
short synthetic bag and calls the services. A replay gives a labelled map and a grounding answer on a real
object; kill -9 and a restart resume the snapshot; a storm of malformed messages on every input leaves every
node running with the drops counted."""
from __future__ import annotations

import time

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")
from ov3d_interfaces.msg import ObjectMap  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from ov3d_ros.config import MultiViewFusionConfig, SynthConfig, default_config_path, load_perception_config  # noqa
from ov3d_ros.data.dataset import Dataset  # noqa: E402
from ov3d_ros.evaluation.grounding import instance_boxes, instance_classes  # noqa: E402
from ov3d_ros.evaluation.online import offline_student, proposal_recalls  # noqa: E402
from ov3d_ros.geometry.voxels import pack_coords, voxel_coords  # noqa: E402
from ov3d_ros.geometry.boxes import box_iou  # noqa: E402
from ov3d_ros.ros.graph_client import GraphClient, GraphProcess, isolated_config  # noqa: E402
from ov3d_ros.ros.replay import replay_bag  # noqa: E402
from ov3d_ros.ros.replay_eval import run_replay_evaluation, top_box  # noqa: E402
from ov3d_ros.training.checkpoint import load_student  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A small room: 12 RGB-D frames (320 x 240) and a LiDAR over 4 s, with ground truth and descriptions."""
    from ov3d_ros.data.synthetic.world import synthesize
    root = tmp_path_factory.mktemp("graph")
    config = SynthConfig(frames=12, width=320, height=240, duration_s=4.0, lidar=True, descriptions_per_object=1)
    synthesize(root / "data", "val", [3], config, teacher=None, fusion=MultiViewFusionConfig(), progress=False)
    dataset = Dataset(root / "data")
    return root, dataset, dataset.scenes("val")[0]


def graph_config(folder) -> str:
    """The packaged parameter file with the state in `folder` and quick periods for a test."""
    path = isolated_config(default_config_path("perception.yaml"), folder, snapshot_period_s=1.0,
                           diagnostics_period_s=0.5)
    doc = yaml.safe_load(path.read_text())
    doc["segmentation_node"]["ros__parameters"].update(objects_period_s=1.0, diagnostics_period_s=0.5)
    doc["grounding_node"]["ros__parameters"].update(diagnostics_period_s=0.5)
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_replay_gives_a_labelled_map_and_a_grounding_answer(scene, tmp_path):
    root, dataset, scene_id = scene
    config = graph_config(tmp_path)
    with GraphProcess(config, tmp_path / "graph.log") as graph, GraphClient("test_replay") as client:
        report, labelled = run_replay_evaluation(client, root / "data" / "bags" / scene_id, dataset, scene_id,
                                                 load_perception_config(config), progress=False)
        truth = instance_boxes(dataset.scene_cloud(scene_id))
        classes = _instance_classes(dataset, scene_id)
        online_iou = report["segmentation"]["online"]["per_class_iou"]
        object_classes = set(classes.values()) - {"wall", "floor"}
        objects_iou = {name: iou for name, iou in online_iou.items() if name in object_classes}
        wanted = max(objects_iou, key=objects_iou.get)   # the room's object class the online map labels best
        response, _ = client.ground(f"the {wanted}", max_results=1)
        assert graph.alive()
    seg = report["segmentation"]
    assert seg["map_voxels"] > 5000 and seg["coverage"] > 0.8
    assert len(np.unique(labelled.label)) >= 2 and seg["online"]["miou"] > 0
    assert report["grounding"]["queries"] > 0 and report["received"]["lidar"] > 0
    assert report["settle_timeline"][-1]["waiting_for"] is None      # the last entry: nothing left to wait for
    planner = report["grounding"]["while_updating"]                  # the report of the planner's own process
    assert planner["dropped"] == 0 and planner["call_hz"] == 2.0 and "latency_ms" in planner
    recall = report["grounding"]["proposal_recall"]
    assert 0 < recall["online"]["recall@0.25"] <= 1 and 0 < recall["offline"]["recall@0.25"] <= 1
    assert set(recall["missed_online"]) == {"unseen", "mislabelled", "split_or_merged"}
    student = offline_student(dataset, "default", load_perception_config(config).segmentation_node.language)
    assert proposal_recalls(dataset, scene_id, list(truth.values()), *student)["online"] == \
        {"recall@0.25": 1.0, "recall@0.5": 1.0}                      # the true boxes recall every target
    assert response.success, response.message
    box = top_box(response)
    objects = [truth[i] for i, name in classes.items() if name == wanted and i in truth]
    assert response.candidates[0].label == wanted
    assert max(box_iou(box, target) for target in objects) >= 0.25        # a real object of that class


def _instance_classes(dataset: Dataset, scene_id: str) -> dict[int, str]:
    """Ground-truth instance id -> the name of the class most of its labelled points have."""
    return {i: dataset.classes[c] for i, c in instance_classes(dataset.scene_cloud(scene_id)).items()
            if c < len(dataset.classes)}


def test_kill_9_and_restart_resume_the_last_snapshot(scene, tmp_path):
    root, _, scene_id = scene
    config = graph_config(tmp_path)
    graph = GraphProcess(config, tmp_path / "first.log").start()
    try:
        with GraphClient("test_kill") as client:
            client.wait_for_graph()
            replay_bag(root / "data" / "bags" / scene_id, progress=False, wait_for_subscribers_s=30.0)
            fusion: dict[str, str] = {}

            def took_the_bag() -> bool:
                """Frames taken (best-effort sensor topics may lose some under load), none waiting, the newest
                map published and its version unchanged since the last poll."""
                before = fusion.get("map.version")
                fusion.update(client.diagnostics("fusion_node"))
                return fusion.get("queue.waiting_for_tf") == "0" and int(fusion.get("received.depth", 0)) > 0 \
                    and fusion.get("published.version") == fusion.get("map.version") == before
            client.wait_until(took_the_bag, 60.0, "the fusion node taking the bag",
                              hold_s=2.0)
            voxels = int(fusion["map.voxels"])
            time.sleep(2.5)                       # two snapshot periods: the newest map is on disk
            saved = client.map_file("save", str(tmp_path / "copy.npz"))
            assert saved.success and (tmp_path / "copy.npz").is_file()
            with np.load(tmp_path / "copy.npz") as data:            # the student's voxels of the saved map
                centroids = (data["sum_xyz"] / data["count"][:, None]).astype(np.float32)
            student_size = load_student("default")[0].config.voxel_size
            student_voxels = len(np.unique(pack_coords(voxel_coords(centroids, student_size))))
            missing = client.map_file("load", str(tmp_path / "nowhere.npz"))
            assert not missing.success and "nowhere.npz" in missing.message
            graph.kill()
            graph.stop()
            client.forget_diagnostics()
            graph = GraphProcess(config, tmp_path / "second.log").start()
            client.wait_until(lambda: client.diagnostics("fusion_node").get("map.voxels") == str(voxels)
                              and abs(int(client.diagnostics("segmentation_node").get("map.voxels", 0))
                                      - student_voxels) <= 0.01 * student_voxels,
                              90.0, f"the restarted graph holding the {voxels} voxels of the snapshot")
    finally:
        graph.stop()
    assert "resumed" in (tmp_path / "second.log").read_text()


def _malformed_messages():
    """Valid-CDR messages that are wrong inside: sizes, encodings, frames, stamps, NaN, mismatched arrays."""
    stamp = {"sec": 1_700_000_000, "nanosec": 0}
    image = Image(height=4, width=4, encoding="weird", step=4, data=bytes(16))
    image.header.frame_id, image.header.stamp.sec = "camera_link", stamp["sec"]
    depth = Image(height=4, width=4, encoding="16UC1", step=8, data=bytes(10))
    depth.header.frame_id, depth.header.stamp.sec = "camera_link", stamp["sec"]
    info = CameraInfo(height=4, width=4)
    info.header.frame_id, info.header.stamp.sec = "camera_link", stamp["sec"]
    cloud = PointCloud2(height=1, width=10, point_step=3, row_step=30, data=bytes(7))
    cloud.header.frame_id, cloud.header.stamp.sec = "lidar_link", stamp["sec"]
    no_frame = PointCloud2(height=1, width=0)
    from geometry_msgs.msg import TransformStamped
    bad_tf = TransformStamped(child_frame_id="x")
    bad_tf.header.frame_id = "map"
    bad_tf.transform.translation.x = float("nan")
    objects = ObjectMap(vocabulary=["a"], instance_ids=[1, 2], labels=[0], feature_dim=3)
    objects.header.frame_id = "map"
    return {"/camera/color/image_raw": (Image, image), "/camera/depth/image_raw": (Image, depth),
            "/camera/color/camera_info": (CameraInfo, info), "/lidar/points": (PointCloud2, cloud),
            "/tf": (TFMessage, TFMessage(transforms=[bad_tf])), "/ov3d/map": (PointCloud2, no_frame),
            "/ov3d/objects": (ObjectMap, objects)}


def test_a_storm_of_malformed_messages_is_counted_and_survived(tmp_path):
    from ov3d_ros.ros.qos import LATCHED, TF_QOS, sensor_qos
    config = graph_config(tmp_path)
    with GraphProcess(config, tmp_path / "graph.log") as graph, GraphClient("test_storm") as client:
        client.wait_for_graph()
        qos = {"/tf": TF_QOS, "/ov3d/map": LATCHED, "/ov3d/objects": LATCHED}
        publishers = {topic: (client.node.create_publisher(kind, topic, qos.get(topic, sensor_qos(5))), msg)
                      for topic, (kind, msg) in _malformed_messages().items()}
        client.wait_until(lambda: all(p.get_subscription_count() > 0 for p, _ in publishers.values()), 30.0,
                          "subscribers on every input topic")
        for _ in range(30):
            for publisher, msg in publishers.values():
                publisher.publish(msg)
            time.sleep(0.02)

        def counted() -> bool:
            fusion, seg, ground = (client.diagnostics(n) for n in ("fusion_node", "segmentation_node",
                                                                    "grounding_node"))
            return all(int(fusion.get(f"drops.{r}", 0)) > 0 for r in ("malformed_rgbd", "malformed_lidar",
                                                                       "malformed_tf")) \
                and int(seg.get("drops.malformed_map", 0)) > 0 and int(ground.get("drops.malformed_objects", 0)) > 0
        client.wait_until(counted, 30.0, "every node counting its drops")
        for entries in ([], ["a: b: c"], ["chair"] * 2, ["x" * 300]):
            with pytest.raises(Exception, match="refused"):
                client.set_vocabulary(entries)
        answer, _ = client.ground("x" * 5000)
        assert not answer.success and "limit" in answer.message
        answer, _ = client.ground("the chair")
        assert not answer.success and "map is empty" in answer.message
        assert graph.alive()
        assert graph.stop() == 0
