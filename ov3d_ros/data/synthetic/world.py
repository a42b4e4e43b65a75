"""`ov3d synth`: render synthetic scenes and write them in every format the rest of the package reads.

Per scene, into a dataset root (layout: ov3d_ros.data.dataset):
- `3d/<split>/<scene>.pth` (OpenScene scene file: points, colours, labels, instances) and `fused/simulated/` (the
  simulated 2D teacher fused over the frames, OpenScene layout);
- `2d/<scene>/` a ScanNet-export-like frame folder (colour, 16-bit depth, pose, intrinsics, label, instance);
- `bags/<scene>/` a rosbag2 (MCAP) with the camera, LiDAR and TF topics of a robot (REP-105 frames);
- `ply/<scene>.ply` the labelled cloud, `preview/<scene>.png` a top-down picture;
- `scanrefer/<split>.json` referring descriptions; `boxes/<scene>.json` oriented boxes per instance and the
  scene-level label set; `dataset.yaml` classes, splits, head / common / tail groups, synonyms, confusions.
The scene point cloud holds the surface points seen by at least one frame, as a real reconstruction from the same
frames would.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ov3d_ros.config import FusionNodeConfig, MultiViewFusionConfig, SynthConfig
from ov3d_ros.data.dataset import add_scenes
from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.data.openscene import SceneCloud, write_fused, write_scene_pth
from ov3d_ros.data.ply import write_ply
from ov3d_ros.data.rosbag import BagWriter, QosSpec
from ov3d_ros.data.scannet_export import write_frame
from ov3d_ros.data.synthetic.categories import CATEGORIES, CLASS_NAMES, IGNORE_INDEX
from ov3d_ros.data.synthetic.descriptions import Description, describe_scene
from ov3d_ros.data.synthetic.layout import SyntheticScene, generate_scene
from ov3d_ros.data.synthetic.render import SurfacePoints, render_view, sample_surface_points
from ov3d_ros.data.synthetic.sensors import (LidarScan, apply_depth_noise, camera_trajectory, default_camera,
                                             lidar_scan, random_lighting, robot_path)
from ov3d_ros.evaluation.reports import write_json
from ov3d_ros.files import atomic_path
from ov3d_ros.geometry.camera import PinholeCamera
from ov3d_ros.geometry.transforms import RigidTransform
from ov3d_ros.messages import array_to_image, array_to_pointcloud2, camera_to_camera_info
from ov3d_ros.messages.compressed import depth_to_compressed, rgb_to_compressed
from ov3d_ros.messages.types import MessageTypes, RosbagsMessageTypes, make_header
from ov3d_ros.teachers.base import Teacher
from ov3d_ros.teachers.multiview import fuse_scene

MAP, ODOM, BASE, LIDAR = "map", "odom", "base_link", "lidar_link"
CAMERA_LINK, CAMERA_OPTICAL = "camera_link", "camera_color_optical_frame"
TOPICS = {"color": "/camera/color/image_raw", "depth": "/camera/depth/image_raw",
          "info": "/camera/color/camera_info", "lidar": "/lidar/points"}
START_NS = 1_700_000_000 * 1_000_000_000
# camera_link (x forward, y left, z up) -> optical frame (z forward, x right, y down)
LINK_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0, 0, 0, 1.0]])
SEEN_TOLERANCE_M = 0.02
MIN_OBJECT_POINTS = 10      # an object with fewer observed points is not described


@dataclass
class RenderedScene:
    """Everything rendered for one scene, before it is written."""

    scene: SyntheticScene
    camera: PinholeCamera
    points: SurfacePoints
    frames: list[PosedFrame]
    frame_stamps_ns: list[int]
    lidar: list[tuple[int, np.ndarray, LidarScan]]      # (stamp, sensor-to-world, scan)
    descriptions: list[Description]


def scene_name(seed: int) -> str:
    return f"synthetic_{seed:06d}"


def render_scene(seed: int, config: SynthConfig) -> RenderedScene:
    """Generate the room of `seed` and render its sensors; deterministic in (seed, config)."""
    rng = np.random.default_rng(seed)
    scene = generate_scene(seed)
    camera = default_camera(config.width, config.height)
    frames, stamps, views = [], [], []
    for k, pose in enumerate(camera_trajectory(scene, config.frames, rng)):
        view = render_view(scene, camera, pose, random_lighting(rng))
        views.append(view)
        depth = apply_depth_noise(view, rng).astype(np.float32)
        frames.append(PosedFrame(scene_name(seed), k, view.color, camera, depth, camera, pose,
                                 view.labels.astype(np.int64), view.instance.astype(np.int64)))
        stamps.append(START_NS + round(k * config.duration_s / config.frames * 1e9))
    points = sample_surface_points(scene, rng, config.point_spacing_m)
    seen = np.zeros(len(points.xyz), dtype=bool)
    for view in views:
        seen |= _seen_in(points.xyz, view.camera, view.camera_to_world, view.depth)
    points = SurfacePoints(*(values[seen] for values in points))
    lidar = []
    if config.lidar:
        scans = max(1, round(config.duration_s * config.lidar_rate_hz))
        for j, pose in enumerate(robot_path(scene, scans, rng)):
            scan = lidar_scan(scene, pose, rng, beams=config.lidar_beams)
            lidar.append((START_NS + round(j / config.lidar_rate_hz * 1e9), pose, scan))
    descriptions = describe_scene(scene, rng, config.descriptions_per_object, observed_instances(points))
    return RenderedScene(scene, camera, points, frames, stamps, lidar, descriptions)


def observed_instances(points: SurfacePoints) -> set[int]:
    """Instances with at least MIN_OBJECT_POINTS points in the scan: the objects of the ground truth."""
    ids, counts = np.unique(points.instance, return_counts=True)
    return set(ids[(counts >= MIN_OBJECT_POINTS) & (ids > 0)].tolist())


def _seen_in(xyz: np.ndarray, camera: PinholeCamera, camera_to_world: np.ndarray, depth: np.ndarray) -> np.ndarray:
    world_to_camera = np.linalg.inv(camera_to_world)
    local = xyz @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    uv, z = camera.project(local)
    u, v = np.floor(uv[:, 0] + 0.5), np.floor(uv[:, 1] + 0.5)
    inside = (z > 0) & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    seen = np.zeros(len(xyz), dtype=bool)
    rendered = depth[v[inside].astype(int), u[inside].astype(int)]
    seen[inside] = np.abs(rendered - z[inside]) < SEEN_TOLERANCE_M + 0.01 * z[inside]
    return seen


def write_scene(root: Path, split: str, rendered: RenderedScene, config: SynthConfig,
                teacher: Teacher | None, fusion: MultiViewFusionConfig) -> dict[str, Any]:
    """Write one rendered scene in every format; returns its stats."""
    name = scene_name(rendered.scene.seed)
    points = rendered.points
    write_scene_pth(root / "3d" / split / f"{name}.pth", SceneCloud(name, points.xyz, points.rgb, points.labels,
                                                                      points.instance))
    for frame in rendered.frames:
        write_frame(root / "2d" / name, frame)
    if config.bag:
        write_scene_bag(root / "bags" / name, rendered, compressed=config.compressed_images)
    write_ply(root / "ply" / f"{name}.ply", points.xyz, points.rgb, points.labels, points.instance)
    write_preview(root / "preview" / f"{name}.png", rendered)
    write_json(root / "boxes" / f"{name}.json", scene_boxes(rendered.scene, points))
    fused_points = 0
    if teacher is not None:
        fused = fuse_scene(points.xyz, rendered.frames, teacher, fusion)
        write_fused(root / "fused" / "simulated" / f"{name}_0.pt", fused)
        fused_points = int(fused.mask_full.sum())
    return {"scene": name, "room_type": rendered.scene.room_type, "objects": len(rendered.scene.objects),
            "points": len(points.xyz), "fused_points": fused_points, "frames": len(rendered.frames),
            "lidar_scans": len(rendered.lidar), "descriptions": len(rendered.descriptions)}


def scene_boxes(scene: SyntheticScene, points: SurfacePoints) -> dict[str, Any]:
    """Oriented boxes of the observed instances, and the scene-level label set."""
    present = observed_instances(points)
    objects = [{"instance_id": o.instance_id, "label": o.name, "class_index": o.class_index,
                "centre": o.box.centre.tolist(), "size": o.box.size.tolist(), "yaw": float(o.box.yaw),
                "support_id": o.support_id} for o in scene.objects if o.instance_id in present]
    labels = sorted({CLASS_NAMES[c] for c in np.unique(points.labels) if c != IGNORE_INDEX})
    return {"scene_id": scene.scene_id, "room_type": scene.room_type, "scene_labels": labels, "objects": objects}


def _transform(types: MessageTypes, parent: str, child: str, stamp_ns: int, matrix: np.ndarray) -> Any:
    rigid = RigidTransform.from_matrix(matrix)
    vector, quaternion = types.get("geometry_msgs/msg/Vector3"), types.get("geometry_msgs/msg/Quaternion")
    x, y, z = (float(v) for v in rigid.translation)
    qx, qy, qz, qw = (float(v) for v in rigid.quaternion)
    return types.get("geometry_msgs/msg/TransformStamped")(
        header=make_header(types, parent, stamp_ns), child_frame_id=child,
        transform=types.get("geometry_msgs/msg/Transform")(translation=vector(x=x, y=y, z=z),
                                                           rotation=quaternion(x=qx, y=qy, z=qz, w=qw)))


def write_scene_bag(path: Path, rendered: RenderedScene, compressed: bool = False) -> None:
    """A robot's recording (MCAP): RGB-D camera with TF odom -> camera_link, LiDAR on base_link, /tf_static. With
    `compressed`, colour is JPEG and depth compressedDepth PNG, on image_transport's topics
    (`FusionNodeConfig.image_inputs` with the compressed transports)."""
    image_topics = FusionNodeConfig(color_topic=TOPICS["color"], depth_topic=TOPICS["depth"],
                                    color_transport="compressed" if compressed else "raw",
                                    depth_transport="compressedDepth" if compressed else "raw").image_inputs()
    with BagWriter(path, storage="mcap", overwrite=True) as bag:
        types = RosbagsMessageTypes(bag.typestore)
        tf_message = types.get("tf2_msgs/msg/TFMessage")
        bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", QosSpec("transient_local", "reliable", 1))
        bag.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        for topic, msgtype in (*image_topics.values(), (TOPICS["info"], "sensor_msgs/msg/CameraInfo")):
            bag.add_topic(topic, msgtype)
        static = [_transform(types, MAP, ODOM, START_NS, np.eye(4)),
                  _transform(types, CAMERA_LINK, CAMERA_OPTICAL, START_NS, LINK_FROM_OPTICAL)]
        messages: list[tuple[int, str, Any]] = []
        optical_in_link_inverse = np.linalg.inv(LINK_FROM_OPTICAL)
        for frame, stamp in zip(rendered.frames, rendered.frame_stamps_ns):
            link_pose = frame.camera_to_world @ optical_in_link_inverse
            millimetres = np.rint(np.nan_to_num(frame.depth_m, nan=0.0) * 1000.0).clip(0, 65535).astype(np.uint16)
            if compressed:
                color = rgb_to_compressed(frame.color, "jpeg", CAMERA_OPTICAL, stamp, types=types)
                depth = depth_to_compressed(millimetres, CAMERA_OPTICAL, stamp, types=types)
            else:
                color = array_to_image(frame.color, "rgb8", CAMERA_OPTICAL, stamp, types)
                depth = array_to_image(millimetres, "16UC1", CAMERA_OPTICAL, stamp, types)
            messages += [
                (stamp, "/tf", tf_message(transforms=[_transform(types, ODOM, CAMERA_LINK, stamp, link_pose)])),
                (stamp, image_topics["color"][0], color), (stamp, image_topics["depth"][0], depth),
                (stamp, TOPICS["info"], camera_to_camera_info(rendered.camera, CAMERA_OPTICAL, stamp, types))]
        if rendered.lidar:
            bag.add_topic(TOPICS["lidar"], "sensor_msgs/msg/PointCloud2")
            height = float(rendered.lidar[0][1][2, 3])
            mount = np.eye(4)
            mount[2, 3] = height
            static.append(_transform(types, BASE, LIDAR, START_NS, mount))
            cloud_dtype = np.dtype([("x", np.float32), ("y", np.float32), ("z", np.float32),
                                    ("intensity", np.float32), ("ring", np.uint16)])
            for stamp, pose, scan in rendered.lidar:
                base_pose = pose.copy()
                base_pose[2, 3] -= height
                cloud = np.empty(len(scan.xyz), cloud_dtype)
                cloud["x"], cloud["y"], cloud["z"] = scan.xyz[:, 0], scan.xyz[:, 1], scan.xyz[:, 2]
                cloud["intensity"], cloud["ring"] = scan.intensity, scan.ring
                messages += [
                    (stamp, "/tf", tf_message(transforms=[_transform(types, ODOM, BASE, stamp, base_pose)])),
                    (stamp, TOPICS["lidar"], array_to_pointcloud2(cloud, LIDAR, stamp, types))]
        bag.write("/tf_static", START_NS, tf_message(transforms=static))
        for stamp, topic, message in sorted(messages, key=lambda item: item[0]):
            bag.write(topic, stamp, message)


def class_colours() -> np.ndarray:
    """(C, 3) uint8 distinct colours per class, for pictures of labelled clouds."""
    import matplotlib
    cmap = matplotlib.colormaps["tab20"]
    return np.array([[int(255 * c) for c in cmap(i % 20)[:3]] for i in range(len(CLASS_NAMES))], dtype=np.uint8)


def write_preview(path: Path, rendered: RenderedScene) -> None:
    """Top-down picture: points coloured by class, camera path in black, robot path in red."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = rendered.points
    labelled = points.labels != IGNORE_INDEX
    order = np.argsort(points.xyz[labelled, 2])
    colours = class_colours()[points.labels[labelled]][order] / 255.0
    fig = Figure(figsize=(6, 6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.add_subplot()
    axes.scatter(points.xyz[labelled, 0][order], points.xyz[labelled, 1][order], s=0.2, c=colours, linewidths=0)
    path_xy = np.array([f.camera_to_world[:2, 3] for f in rendered.frames])
    axes.plot(path_xy[:, 0], path_xy[:, 1], "k.-", linewidth=0.8, markersize=3, label="camera")
    if rendered.lidar:
        robot = np.array([pose[:2, 3] for _, pose, _ in rendered.lidar])
        axes.plot(robot[:, 0], robot[:, 1], "r-", linewidth=0.8, label="robot")
    axes.set_aspect("equal")
    axes.set_title(f"{rendered.scene.scene_id} ({rendered.scene.room_type})")
    axes.legend(loc="upper right", fontsize=7)
    with atomic_path(path) as temporary:
        fig.savefig(temporary, format="png", dpi=80)


def update_dataset_yaml(root: Path, split: str, scenes: Iterable[str]) -> None:
    """Add `scenes` to `split` of `root/dataset.yaml` (creating it with the synthetic world's classes, groups,
    synonyms and confusions), moving them out of any other split."""
    groups: dict[str, list[str]] = {"head": [], "common": [], "tail": []}
    for category in CATEGORIES:
        groups[category.split].append(category.name)
    add_scenes(root, split, scenes, {
        "classes": list(CLASS_NAMES), "ignore_label": IGNORE_INDEX, "splits": {}, "groups": groups,
        "synonyms": {c.name: list(c.synonyms) for c in CATEGORIES},
        "confusions": {c.name: list(c.confused_with) for c in CATEGORIES if c.confused_with}})


def update_descriptions(root: Path, split: str, descriptions: dict[str, list[Description]]) -> None:
    """Replace the given scenes' entries in `scanrefer/<split>.json` (ScanRefer field names)."""
    path = root / "scanrefer" / f"{split}.json"
    entries = json.loads(path.read_text()) if path.exists() else []
    entries = [e for e in entries if e["scene_id"] not in descriptions]
    entries += [d.to_json() for scene in sorted(descriptions) for d in descriptions[scene]]
    write_json(path, entries)


def synthesize(root: Path, split: str, seeds: Iterable[int], config: SynthConfig, teacher: Teacher | None,
               fusion: MultiViewFusionConfig, progress: bool = True) -> list[dict[str, Any]]:
    """Render and write the scenes of `seeds` into `split` of the dataset at `root`."""
    from tqdm import tqdm

    stats, descriptions = [], {}
    for seed in tqdm(list(seeds), desc=f"synth {split}", unit="scene", disable=not progress):
        start = time.perf_counter()
        rendered = render_scene(seed, config)
        entry = write_scene(root, split, rendered, config, teacher, fusion)
        entry["seconds"] = time.perf_counter() - start
        stats.append(entry)
        descriptions[entry["scene"]] = rendered.descriptions
    update_descriptions(root, split, descriptions)
    update_dataset_yaml(root, split, descriptions)
    return stats
