"""Typed configuration: the one place YAML becomes dataclasses.

`config/perception.yaml` is a ROS 2 parameter file (``<node_name>: {ros__parameters: {...}}``). The launch file
hands it to the nodes as a params file, `ov3d launch` hands the same file to rcl, and the nodes declare every field
below as a ROS parameter (with its description and range) and read it back into these dataclasses. Offline tools
load the same file with :func:`load_perception_config`.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

PACKAGE = "ov3d_ros"
ROS_PARAMS_KEY = "ros__parameters"


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the file and the key."""


def param(default: Any, description: str, low: float | None = None, high: float | None = None) -> Any:
    """A dataclass field that is also a ROS parameter: its description and optional inclusive range.

    Scalars (bool, int, float, str) and lists of str are supported; a list default is copied per instance.
    """
    metadata = {"description": description, "range": (low, high)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def section(cls: type, description: str) -> Any:
    """A nested config dataclass; its fields become dotted ROS parameters (`language.encoder`)."""
    return field(default_factory=cls, metadata={"description": description, "section": True})


EXECUTORS = ("multi_threaded", "single_threaded", "events")
EXECUTOR_HELP = ("How the node's callbacks are dispatched when it has a process of its own: 'multi_threaded' "
                 "(rclpy's MultiThreadedExecutor: callback groups run in parallel), 'single_threaded' (one thread) "
                 "or 'events' (rclpy's EventsExecutor: one thread, waiting and dispatch in C++; multi_threaded "
                 "where rclpy lacks it). Nodes that share a process share a multi-threaded executor.")


@dataclass
class NodeConfig:
    """What every node of the graph has: how it logs repeated warnings and reports on /diagnostics."""

    log_throttle_s: float = param(5.0, "Minimum seconds between repeated warnings of one kind.", 0.0, 3600.0)
    diagnostics_period_s: float = param(1.0, "Seconds between /diagnostics reports.", 0.1, 3600.0)
    executor: str = param("multi_threaded", EXECUTOR_HELP)

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")


@dataclass
class FusionNodeConfig(NodeConfig):
    """Sensor ingestion: RGB-D and LiDAR messages, time-synchronised and transformed into the map frame."""

    map_frame: str = param("map", "Fixed world frame the map is built in (REP-105).")
    use_rgbd: bool = param(True, "Subscribe to the colour, depth and camera-info topics.")
    use_lidar: bool = param(True, "Subscribe to the LiDAR PointCloud2 topic.")
    color_topic: str = param("/camera/color/image_raw", "Colour image topic (rgb8 / bgr8 / mono8).")
    depth_topic: str = param("/camera/depth/image_raw", "Depth image topic (16UC1 millimetres or 32FC1 metres).")
    camera_info_topic: str = param("/camera/color/camera_info", "CameraInfo of the (registered) depth image.")
    color_transport: str = param("raw", "'raw': Image on color_topic; 'compressed': CompressedImage (JPEG / PNG) "
                                        "on color_topic + '/compressed' (image_transport's naming).")
    depth_transport: str = param("raw", "'raw': Image on depth_topic; 'compressedDepth': CompressedImage (16UC1 or "
                                        "32FC1 PNG) on depth_topic + '/compressedDepth'.")
    lidar_topic: str = param("/lidar/points", "LiDAR PointCloud2 topic.")
    sync_slop_s: float = param(0.05, "Largest stamp spread of a colour/depth/info set.", 0.0, 1.0)
    sync_queue_size: int = param(10, "Messages kept per topic while waiting for a match.", 1, 1000)
    depth_min_m: float = param(0.1, "Depth readings nearer than this are invalid.", 0.0, 100.0)
    depth_max_m: float = param(6.0, "Depth readings farther than this are invalid.", 0.1, 100.0)
    lidar_min_m: float = param(0.3, "LiDAR returns nearer than this (robot body) are dropped.", 0.0, 100.0)
    lidar_max_m: float = param(30.0, "LiDAR returns farther than this are dropped.", 0.1, 1000.0)
    depth_stride: int = param(2, "Use every n-th depth pixel in both directions.", 1, 16)
    voxel_size_m: float = param(0.02, "Edge of a map voxel (2 cm indoor, 5 cm for LiDAR-only outdoor maps).", 0.005, 1.0)
    max_voxels: int = param(2_000_000, "Voxel budget; beyond it the least recently seen voxels are evicted.",
                            1000, 100_000_000)
    map_topic: str = param("/ov3d/map", "Topic of the fused map (PointCloud2: x, y, z, rgb, count, observations, "
                                        "colour_count).")
    map_publish_rate_hz: float = param(1.0, "How often the fused map is published.", 0.01, 30.0)
    map_publish_idle_s: float = param(0.2, "The map is also published once no reading has come for this long (a "
                                           "robot that stops sensing has its last readings in the map at once, not "
                                           "at the next tick of map_publish_rate_hz); 0 = only at that rate.",
                                      0.0, 10.0)
    tf_cache_s: float = param(30.0, "How much transform history the TF buffer keeps.", 1.0, 3600.0)
    tf_tolerance_s: float = param(0.05, "How far past the newest transform a lookup may extrapolate.", 0.0, 1.0)
    tf_wait_s: float = param(1.0, "A reading whose transform has not arrived yet waits this long for it (as "
                                  "tf2's message filter does; 0 = drop at once).", 0.0, 10.0)
    queue_depth: int = param(20, "Subscription queue depth for sensor topics (a burst waits instead of being "
                                 "overwritten).", 1, 1000)
    executor: str = param("events", EXECUTOR_HELP + " 'events' here: the multi-threaded executor's own loop took "
                                                    "most of a core and starved the LiDAR callback (scans lost).")
    keyframe_translation_m: float = param(0.05, "A reading is integrated when its sensor moved this far since its "
                                                "last integrated reading (0 = every reading) ...", 0.0, 100.0)
    keyframe_rotation_deg: float = param(5.0, "... or turned this much ...", 0.0, 360.0)
    keyframe_max_interval_s: float = param(1.0, "... or this much time passed.", 0.0, 3600.0)
    snapshot_dir: str = param("", "Folder of the map snapshot (map.npz); empty means $XDG_STATE_HOME/ov3d_ros "
                                  "(~/.local/state/ov3d_ros).")
    snapshot_period_s: float = param(30.0, "Seconds between periodic snapshots (0 = only on request and at a clean "
                                           "stop).", 0.0, 86400.0)
    resume: bool = param(True, "Start from the snapshot when one exists (after a crash or a restart).")

    def image_inputs(self) -> dict[str, tuple[str, str]]:
        """The colour and depth inputs as {"color" | "depth": (topic, message type)} under their transports."""
        def one(topic: str, transport: str) -> tuple[str, str]:
            if transport == "raw":
                return topic, "sensor_msgs/msg/Image"
            return f"{topic.rstrip('/')}/{transport}", "sensor_msgs/msg/CompressedImage"
        return {"color": one(self.color_topic, self.color_transport),
                "depth": one(self.depth_topic, self.depth_transport)}

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, allowed in (("color_transport", ("raw", "compressed")), ("depth_transport", ("raw", "compressedDepth"))):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.depth_min_m >= self.depth_max_m:
            raise ConfigError(f"depth_min_m ({self.depth_min_m}) must be below depth_max_m ({self.depth_max_m})")
        if self.lidar_min_m >= self.lidar_max_m:
            raise ConfigError(f"lidar_min_m ({self.lidar_min_m}) must be below lidar_max_m ({self.lidar_max_m})")
        if not (self.use_rgbd or self.use_lidar):
            raise ConfigError("at least one of use_rgbd and use_lidar must be true")
        if not self.map_frame.strip("/"):
            raise ConfigError("map_frame must not be empty")


@dataclass
class LanguageConfig:
    """The language-aligned feature space: which text encoder, how labels are prompted, where embeddings cache."""

    encoder: str = param("minilm", "Text encoder: 'minilm' (offline default) or 'open_clip' (checkpoint from disk).")
    open_clip_model: str = param("ViT-B-16", "open_clip model name, e.g. ViT-B-16, ViT-L-14-336.")
    open_clip_checkpoint: str = param("", "Path of the open_clip weights (.pt / .safetensors); required for open_clip.")
    templates: list[str] = param(["a {} in a scene"], "Prompt templates; '{}' is the label. Several are averaged.")
    cache_dir: str = param("", "Text-embedding cache folder; empty means $XDG_CACHE_HOME/ov3d_ros (~/.cache).")
    batch_size: int = param(64, "Texts encoded per batch.", 1, 4096)

    def __post_init__(self) -> None:
        if self.encoder not in ("minilm", "open_clip"):
            raise ConfigError(f"encoder must be 'minilm' or 'open_clip', got {self.encoder!r}")
        if not self.templates or any(t.count("{}") != 1 for t in self.templates):
            raise ConfigError("templates must be a non-empty list, each holding '{}' exactly once")


@dataclass
class SegmentationNodeConfig(NodeConfig):
    """The semantic layer: the student over the fused map, labels for the current vocabulary, instance boxes."""

    executor: str = param("events", EXECUTOR_HELP + " 'events' here, as in the other nodes: its waiting and "
                                                    "dispatch run in C++ and leave the interpreter lock to the "
                                                    "network and objects threads.")
    map_frame: str = param("map", "Frame of the map (and of everything this node publishes).")
    map_topic: str = param("/ov3d/map", "The fused map (PointCloud2 from fusion_node) this node labels.")
    semantic_map_topic: str = param("/ov3d/semantic_map", "Labelled map (PointCloud2: x, y, z, rgb by label, label, "
                                                          "score).")
    markers_topic: str = param("/ov3d/instances", "Instance boxes and text labels (MarkerArray) for RViz.")
    objects_topic: str = param("/ov3d/objects", "The map's objects for grounding (ov3d_interfaces/ObjectMap).")
    student_checkpoint: str = param("default", "Student weights ('default' = the shipped student).")
    vocabulary: list[str] = param([], "Labels, 'name' or 'name: synonym, synonym'; empty means the built-in indoor "
                                      "vocabulary. /set_vocabulary replaces it at run time.")
    block_m: float = param(1.0, "Change detection cell: a cell whose occupied voxels changed is recomputed.",
                           0.05, 100.0)
    margin_m: float = param(6.0, "The network sees the map within this distance of the box of the recomputed "
                                 "cells (room-sized context labels as offline: the student normalises over it).",
                            0.0, 100.0)
    tile_m: float = param(12.0, "Largest extent of the cells of one network pass: a cube holding the most changed "
                                "cell (bounds its memory with margin_m; 12 m: a room of up to 12 m in one pass).",
                          0.05, 1000.0)
    stale_share: float = param(0.05, "A cell waits for the network once this share of its voxels changed since its "
                                     "last pass; smaller changes wait (their new voxels take their neighbours' "
                                     "labels at once). 0 = every change.", 0.0, 1.0)
    objects_period_s: float = param(3.0, "Least seconds between the starts of two refreshes of the instances "
                                         "while the network is behind the map (once it has caught up they refresh at "
                                         "once, and a refresh still running on a map it overtook stops).",
                                    0.0, 3600.0)
    superpoint_voting: bool = param(True, "Label each voxel by the vote of its superpoint (the class distribution "
                                          "summed over the patch) at every refresh of the instances, not by its "
                                          "own feature alone.")
    threads: int = param(2, "torch CPU threads of the network.", 1, 256)
    objects_processes: int = param(2, "Processes that compute the superpoints of a large map (cut into as many "
                                      "slabs: the objects thread and objects_processes - 1 workers at its "
                                      "priority); 1 = in the node's process only.", 1, 64)
    network_nice: int = param(19, "Niceness of the network and objects threads (0 = as the node; 19, the lowest, "
                                  "leaves a busy core to sensor ingestion and the labels).", 0, 19)
    network_sched_idle: bool = param(False, "Also run the network thread under Linux's SCHED_IDLE policy: only on "
                                            "cores no other thread wants. The objects thread always runs so, below "
                                            "the network: with both idle a refresh took half of what the sensors "
                                            "left the network, and its last tiles came seconds late.")
    max_vocabulary_labels: int = param(1000, "Most labels /set_vocabulary accepts.", 1, 100000)
    max_label_chars: int = param(200, "Longest label entry /set_vocabulary accepts.", 1, 10000)
    snapshot_dir: str = param("", "Where the current vocabulary is kept across restarts (vocabulary.yaml); empty "
                                  "means $XDG_STATE_HOME/ov3d_ros.")
    language: LanguageConfig = section(LanguageConfig, "The text encoder labels are embedded with (the student's "
                                                       "text space).")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tile_m < self.block_m:
            raise ConfigError(f"tile_m ({self.tile_m}) must be at least block_m ({self.block_m})")


@dataclass
class GroundingNodeConfig(NodeConfig):
    """The /ground_object service: text query in, ranked 3D boxes out."""

    map_frame: str = param("map", "Frame the map (and so every answer before transforming) is expressed in.")
    max_query_chars: int = param(1000, "Longest query accepted, in characters.", 1, 10000)
    default_max_results: int = param(5, "Candidates returned when a request asks for 0.", 1, 100)
    max_results_limit: int = param(50, "Upper bound on candidates per answer, whatever a request asks.", 1, 1000)
    objects_topic: str = param("/ov3d/objects", "The map's objects (ov3d_interfaces/ObjectMap from "
                                                "segmentation_node).")
    answer_markers_topic: str = param("/ov3d/grounding/answer", "Each answer's candidates as boxes with "
                                                                "captions (MarkerArray, latched) for RViz.")
    tf_cache_s: float = param(30.0, "How much transform history the TF buffer keeps (for target_frame).",
                              1.0, 3600.0)
    grounder_checkpoint: str = param("default", "Distilled grounder ('default' = the shipped one; empty = rank "
                                                "with the coarse stage only).")
    min_class_similarity: float = param(0.2, "An answer needs an object whose class distribution gives the "
                                             "query's target at least this much to be ranked by class.", 0.0, 1.0)
    min_resemblance: float = param(0.01, "Without such an object, the query is still answered (with low scores) "
                                         "when an object's class distribution gives the target at least this "
                                         "much; else refused as nothing in the map resembling it.", 0.0, 1.0)
    executor: str = param("events", EXECUTOR_HELP + " 'events' here: under the multi-threaded one a request "
                                                    "waited up to 250 ms for its callback on a busy machine.")
    threads: int = param(1, "torch CPU threads that embed and rank a query. 1: on a machine the map keeps busy, a "
                            "second thread makes a query wait for a core (p99 571 ms against 124 ms with two "
                            "busy processes on 2 cores).", 1, 256)
    language: LanguageConfig = section(LanguageConfig, "The text encoder queries are embedded with.")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.default_max_results > self.max_results_limit:
            raise ConfigError("default_max_results must not exceed max_results_limit")


@dataclass
class TeacherConfig:
    """The 2D teacher whose per-pixel features are fused onto 3D points."""

    kind: str = param("simulated", "'open_clip_dense' (MaskCLIP features), 'precomputed' (files) or 'simulated'.")
    input_width: int = param(320, "open_clip_dense: frames are resized to this width before the ViT.", 32, 4096)
    input_height: int = param(240, "open_clip_dense: frames are resized to this height before the ViT.", 32, 4096)
    precomputed_dir: str = param("", "precomputed: folder of per-frame feature maps (<scene>/<frame>.npy or .pt).")
    precomputed_layout: str = param("chw", "precomputed: 'chw' (D, h, w) or 'hwc' (h, w, D) arrays.")
    noise: float = param(1.0, "simulated: noise level; 1.0 is calibrated to a real 2D teacher.", 0.0, 10.0)

    def __post_init__(self) -> None:
        if self.kind not in ("open_clip_dense", "precomputed", "simulated"):
            raise ConfigError(f"teacher kind must be open_clip_dense, precomputed or simulated, got {self.kind!r}")
        if self.precomputed_layout not in ("chw", "hwc"):
            raise ConfigError(f"precomputed_layout must be 'chw' or 'hwc', got {self.precomputed_layout!r}")


@dataclass
class MultiViewFusionConfig:
    """Projecting scene points into posed frames and averaging the teacher's features over the views."""

    depth_tolerance_m: float = param(0.05, "A point is visible when |depth - projected depth| is within this.",
                                     0.0, 10.0)
    depth_tolerance_rel: float = param(0.02, "Plus this fraction of the depth (noisier far away).", 0.0, 1.0)
    min_depth_m: float = param(0.1, "Depth readings nearer than this are invalid.", 0.0, 100.0)
    max_depth_m: float = param(10.0, "Depth readings farther than this are invalid.", 0.1, 1000.0)
    frame_stride: int = param(1, "Use every n-th frame.", 1, 1000)
    point_chunk: int = param(200_000, "Points projected per batch (bounds memory).", 1000, 100_000_000)


@dataclass
class SynthConfig:
    """How the synthetic world renders a scene (`ov3d synth`)."""

    frames: int = param(30, "Camera frames per scene (key frames spread over one loop of the room).", 1, 100000)
    width: int = param(640, "Image width in pixels.", 16, 4096)
    height: int = param(480, "Image height in pixels.", 16, 4096)
    duration_s: float = param(15.0, "Seconds the loop takes in the bag (camera rate = frames / duration).",
                              0.1, 36000.0)
    lidar: bool = param(False, "Also render a spinning LiDAR on a robot driving through the room.")
    lidar_beams: int = param(16, "LiDAR beams (16 or 32 are typical).", 1, 128)
    lidar_rate_hz: float = param(10.0, "LiDAR revolutions per second.", 0.1, 100.0)
    teacher_noise: float = param(1.0, "Simulated 2D teacher noise; 1.0 is calibrated to a real teacher.", 0.0, 10.0)
    point_spacing_m: float = param(0.02, "Surface sampling spacing of the scene point cloud.", 0.005, 0.5)
    descriptions_per_object: int = param(3, "Referring descriptions written per object (at most).", 0, 20)
    bag: bool = param(True, "Write a rosbag2 (MCAP) per scene.")
    compressed_images: bool = param(False, "In the bag, colour as JPEG CompressedImage on <colour topic>/compressed "
                                           "and depth as compressedDepth PNG on <depth topic>/compressedDepth "
                                           "(what recorded bags usually carry) instead of raw Images.")


@dataclass
class BenchmarkConfig:
    """The fixed benchmark every accuracy figure is reported on: `config/benchmark.yaml`."""

    synth: SynthConfig = section(SynthConfig, "Rendering settings of the benchmark's scenes.")
    train_seed: int = param(0, "Seed of the first training scene (scene seeds are consecutive).", 0, 2**31 - 1)
    train_scenes: int = param(16, "Training scenes.", 0, 100000)
    val_seed: int = param(100000, "Seed of the first validation scene.", 0, 2**31 - 1)
    val_scenes: int = param(6, "Validation scenes.", 0, 100000)

    def __post_init__(self) -> None:
        train = range(self.train_seed, self.train_seed + self.train_scenes)
        val = range(self.val_seed, self.val_seed + self.val_scenes)
        if set(train) & set(val):
            raise ConfigError("train and val scene seeds overlap")


def load_benchmark_config(path: str | os.PathLike | None = None) -> BenchmarkConfig:
    """Load the benchmark definition (default: the packaged `config/benchmark.yaml`)."""
    path = Path(path) if path is not None else default_config_path("benchmark.yaml")
    return from_mapping(BenchmarkConfig, load_yaml(path), str(path))


@dataclass
class StudentSection:
    """Which 3D student network: a preset of ov3d_ros.models.student and its voxel size."""

    preset: str = param("default", "Student preset: 'default' (shipped weights) or 'tiny' (tests).")
    voxel_size_m: float = param(0.05, "Voxel edge of the network's input (the map's points are averaged into it).",
                                0.005, 1.0)
    inputs: list[str] = param(["colour", "height"], "Per-point inputs besides geometry (ov3d_ros.models.inputs): "
                                                    "colour, height; [] = geometry only.")

    def __post_init__(self) -> None:
        from ov3d_ros.models.inputs import check_inputs
        try:
            check_inputs(self.inputs)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


@dataclass
class GGSDConfig:
    """GGSD training (`ov3d train ggsd`): stage switches, budget, optimiser, augmentation, logging."""

    data: str = param("", "Dataset root (overridden by --data).")
    fused: str = param("simulated", "Fused 2D features to distil from: a name under <data>/fused/.")
    train_split: str = param("train", "Split to train on.")
    val_split: str = param("val", "Split to evaluate on.")
    superpoint_loss: bool = param(True, "Stage 1: add the superpoint loss L_sp to the pixel-point loss L_p.")
    self_distillation: bool = param(True, "Stage 2: EMA self-distillation after the distillation stage.")
    superpoint_voting: bool = param(True, "Stage 2: majority vote of the EMA's pseudo labels in each superpoint.")
    distill_steps: int = param(2000, "Optimiser steps of stage 1 (distillation).", 0, 10_000_000)
    self_distill_steps: int = param(1000, "Optimiser steps of stage 2 (self-distillation).", 0, 10_000_000)
    center_text_space: bool = param(True, "Distil and classify relative to the mean class text embedding (for "
                                              "text spaces whose classes share a large common direction).")
    loss: str = param("vocabulary", "Stage 1 loss: 'vocabulary' (cross-entropy of feature . class text / "
                                    "vocabulary_temperature against the class the teacher's feature is nearest to) or "
                                    "'cosine' (1 - cos to the fused feature, OpenScene's L_p).")
    labels: str = param("teacher", "Stage 1 labels of the vocabulary loss: 'teacher' (the fused 2D features) or "
                                   "'ground_truth' (the fully supervised upper bound; never for a shipped student).")
    vocabulary_temperature: float = param(0.07, "Temperature of the vocabulary cross-entropy.", 1e-4, 10.0)
    class_balance: float = param(0.5, "Stage 1: weight each point's distillation loss by freq(c)^-x of the class c "
                                      "the teacher gives it in the crop (0 = off, 0.5 = inverse square root).",
                                 0.0, 1.0)
    colour_dropout: float = param(0.2, "Share of training crops shown without colour (as a LiDAR-only map is), for "
                                       "students that take colour.", 0.0, 1.0)
    time_budget_s: float = param(0.0, "> 0: stop after this many seconds of training and run the learning-rate "
                                      "schedule on elapsed time instead of steps (same-budget comparisons).",
                                 0.0, 1e7)
    distill_weight: float = param(1.0, "Weight of L_d (L_p + L_sp) kept during stage 2.", 0.0, 100.0)
    ema_momentum: float = param(0.999, "EMA teacher momentum in stage 2.", 0.0, 1.0)
    temperature: float = param(0.01, "Softmax temperature of the self-distillation loss.", 1e-4, 10.0)
    learning_rate: float = param(0.002, "Adam learning rate; cosine decay to 1 % in each stage, stage 2 from a "
                                        "tenth of it.", 1e-7, 1.0)
    scenes_per_step: int = param(1, "Scenes (crops) per optimiser step on each process, batched in one forward "
                                    "pass.", 1, 64)
    crop_m: float = param(0.0, "Side of the random square crop of a scene, metres (0 = whole scene).", 0.0, 1000.0)
    rotate: bool = param(True, "Augment: random rotation about z.")
    flip: bool = param(True, "Augment: mirror x in half of the crops.")
    scale_range: float = param(0.1, "Augment: random scale in [1 - r, 1 + r].", 0.0, 0.9)
    elastic: bool = param(False, "Augment: elastic distortion (OpenScene's, optional).")
    jitter_m: float = param(0.0, "Augment: Gaussian noise on every point, its deviation drawn per crop in [0, "
                                 "jitter_m] metres, for the thick surfaces of fused depth maps (0 = the clean "
                                 "clouds only).", 0.0, 0.5)
    fused_map_share: float = param(0.5, "Share of training samples drawn from the map the fusion node builds from "
                                        "the room's RGB-D frames (projected onto its surfaces as the segmentation "
                                        "node does; cached under <data>/maps) instead of the room's clean cloud: "
                                        "what the running graph labels. Map points take the teacher's class and "
                                        "superpoint of the nearest cloud point within 5 cm.", 0.0, 1.0)
    maps_config: str = param("", "Perception parameter file whose fusion node settings make those maps (empty = "
                                 "the packaged config/perception.yaml).")
    seed: int = param(0, "Random seed (model init, scene order, crops, augmentation).", 0, 2**31 - 1)
    checkpoint_every: int = param(250, "Steps between checkpoints (last.pt).", 1, 10_000_000)
    log_every: int = param(10, "Steps between log lines (CSV, TensorBoard).", 1, 10_000_000)
    val_every: int = param(500, "Steps between evaluations of the student on the val split (mIoU / mAcc in "
                              "val.csv and TensorBoard; 0 = never).", 0, 10_000_000)
    val_scenes: int = param(2, "Val scenes scored at each evaluation (the first ones of the split; 0 = all).",
                            0, 100_000)
    threads: int = param(2, "torch CPU threads per process.", 1, 256)
    scene_label_masking: bool = param(False, "Stage 2: restrict the EMA's pseudo labels to the scene-level labels "
                                             "before voting (needs scene labels; the 3DSS-VLG x GGSD combination).")

    def __post_init__(self) -> None:
        if self.loss not in ("vocabulary", "cosine"):
            raise ConfigError(f"ggsd.loss must be 'vocabulary' or 'cosine', got {self.loss!r}")
        if self.labels not in ("teacher", "ground_truth"):
            raise ConfigError(f"ggsd.labels must be 'teacher' or 'ground_truth', got {self.labels!r}")


@dataclass
class VLGConfig:
    """3DSS-VLG (`ov3d train vlg`): scene-level labels, pseudo labels, the adapter and its soft guidance.

    The soft-guidance student is trained with the `ggsd` section's optimiser, crops, augmentation, class balance and
    text space (L_p only, towards the adapter's embeddings), so the two methods differ only in their targets."""

    scene_labels: str = param("", "Per-scene label file (YAML: scene -> list or comma-separated names); empty = "
                                  "the classes present in each scene's ground truth.")
    confidence_temperature: float = param(0.05, "Softmax temperature over the scene's classes that turns a "
                                                "point's masked logits into its pseudo-label confidence.", 1e-4, 10.0)
    adapter_hidden: int = param(96, "Adapter bottleneck width (the paper: 768 -> 192 -> 768).", 1, 65536)
    adapter_weight: float = param(0.05, "Weight of the adapter's MLP branch against its identity path (small: an "
                                        "untrained adapter is nearly the identity).", 0.0, 1.0)
    adapter_steps: int = param(2000, "Adapter optimiser steps.", 1, 10_000_000)
    adapter_batch: int = param(8192, "Points per adapter step.", 1, 10_000_000)
    adapter_points_per_scene: int = param(50000, "Seen points sampled per training scene for the adapter.",
                                          1, 100_000_000)
    adapter_learning_rate: float = param(0.001, "Adam learning rate of the adapter.", 1e-7, 1.0)
    adapter_temperature: float = param(0.05, "Temperature of the adapter's cross-entropy over the vocabulary.",
                                       1e-4, 10.0)
    confidence_weighted: bool = param(True, "Weight each point's adapter loss by its pseudo-label confidence.")
    guidance_steps: int = param(3000, "Student steps of the soft-guidance stage (GGSD's two stages together, for "
                                      "one budget).", 0, 10_000_000)


@dataclass
class GroundingConfig:
    """Weakly supervised grounding (`ov3d train grounding`): proposals, the coarse-to-fine teacher trained on
    (scene, sentence) pairs, and the two-stage grounder distilled from it."""

    data: str = param("", "Dataset root with scanrefer/<split>.json (or --data).")
    fused: str = param("simulated", "Fused 2D features under <data>/fused/ that label the maps proposals come from.")
    train_split: str = param("train", "Split whose (scene, sentence) pairs train the models.")
    top_k: int = param(8, "Candidates the coarse stage keeps for the fine stage.", 1, 1000)
    class_weight: float = param(0.7, "Coarse stage: weight of class similarity against feature similarity.",
                                0.0, 1.0)
    prior_temperature: float = param(0.1, "Temperature of the coarse scores' softmax (the teacher's prior).",
                                     1e-4, 100.0)
    neighbours: int = param(16, "Nearest objects (by footprint gap) in each object's context.", 1, 1000)
    door_label: str = param("door", "Class whose largest instance is the viewpoint of left / right (empty: none).")
    dim: int = param(128, "Width of the teacher's keyword reconstructor.", 8, 4096)
    layers: int = param(2, "Decoder layers of the keyword reconstructor.", 1, 32)
    grounder_dim: int = param(64, "Width of the distilled (and the supervised) grounder: it answers service "
                                  "calls, so it is smaller than its teacher.", 8, 4096)
    heads: int = param(4, "Attention heads of both networks (must divide both widths).", 1, 64)
    dropout: float = param(0.1, "Dropout of the keyword reconstructor.", 0.0, 0.9)
    grounder_dropout: float = param(0.05, "Dropout of the grounder.", 0.0, 0.9)
    min_word_count: int = param(2, "Words seen fewer times in training are <unk> for the reconstructor.", 1, 1000)
    group_mask: float = param(0.5, "Teacher training: chance of masking each keyword group (at least one is).",
                              0.0, 1.0)
    random_mask: float = param(0.15, "Teacher training: chance of masking any other word.", 0.0, 1.0)
    unmasked_weight: float = param(0.3, "Teacher training: weight of reconstructing the visible words (the masked "
                                        "ones weigh 1 - this).", 0.0, 1.0)
    teacher_epochs: int = param(40, "Epochs of the keyword reconstructor.", 0, 100_000)
    grounder_epochs: int = param(40, "Epochs of the distilled (and of the fully supervised) grounder.", 0, 100_000)
    batch_size: int = param(32, "Sentences per step.", 1, 100_000)
    learning_rate: float = param(0.001, "AdamW learning rate of the keyword reconstructor.", 1e-7, 1.0)
    grounder_learning_rate: float = param(0.002, "AdamW learning rate of the grounder.", 1e-7, 1.0)
    weight_decay: float = param(0.01, "AdamW weight decay.", 0.0, 10.0)
    distill_temperature: float = param(1.0, "Temperature of the teacher's posterior the grounder learns.",
                                       1e-3, 100.0)
    mil_weight: float = param(0.1, "Weight of the MIL loss (the paired scene outscores another scene's objects).",
                              0.0, 100.0)
    seed: int = param(0, "Seed of initialisation, masking and batch order.", 0, 2**31 - 1)
    threads: int = param(2, "torch CPU threads.", 1, 256)

    def __post_init__(self) -> None:
        if self.dim % self.heads or self.grounder_dim % self.heads:
            raise ConfigError(f"heads ({self.heads}) must divide dim ({self.dim}) and grounder_dim "
                              f"({self.grounder_dim})")


@dataclass
class PipelineConfig:
    """Offline stages (fusion, evaluation, training): one plain YAML file of sections, `config/pipeline.yaml`."""

    language: LanguageConfig = section(LanguageConfig, "The text encoder and prompts.")
    teacher: TeacherConfig = section(TeacherConfig, "The 2D teacher.")
    fusion: MultiViewFusionConfig = section(MultiViewFusionConfig, "Multi-view 2D->3D feature fusion.")
    student: StudentSection = section(StudentSection, "The 3D student network.")
    ggsd: GGSDConfig = section(GGSDConfig, "GGSD training.")
    vlg: VLGConfig = section(VLGConfig, "3DSS-VLG weak supervision from scene-level labels.")
    grounding: GroundingConfig = section(GroundingConfig, "Weakly supervised 3D visual grounding.")


def load_pipeline_config(path: str | os.PathLike | None = None) -> PipelineConfig:
    """Load the offline pipeline config (default: the packaged `config/pipeline.yaml`)."""
    path = Path(path) if path is not None else default_config_path("pipeline.yaml")
    return from_mapping(PipelineConfig, load_yaml(path), str(path))


@dataclass
class PerceptionConfig:
    """Every node of the perception graph, keyed by its ROS node name in the YAML file."""

    fusion_node: FusionNodeConfig = field(default_factory=FusionNodeConfig)
    segmentation_node: SegmentationNodeConfig = field(default_factory=SegmentationNodeConfig)
    grounding_node: GroundingNodeConfig = field(default_factory=GroundingNodeConfig)

    @classmethod
    def node_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


T = TypeVar("T")


def field_default(f: dataclasses.Field) -> Any:
    """The default value of a dataclass field, calling its factory when it has one."""
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def from_mapping(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Build dataclass `cls` from a (nested) mapping, checking names, types and ranges; errors name `where`."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in values.items():
        f = known[name]
        if f.metadata.get("section"):
            kwargs[name] = from_mapping(f.default_factory, value or {}, f"{where}.{name}")  # type: ignore[misc]
        else:
            kwargs[name] = _checked_value(f, value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _checked_value(f: dataclasses.Field, value: Any, where: str) -> Any:
    expected = type(field_default(f))
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not expected:
        raise ConfigError(f"{where}: expected {expected.__name__}, got {type(value).__name__} ({value!r})")
    if expected is list:
        if not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return list(value)
    low, high = f.metadata.get("range", (None, None))
    if low is not None and value < low or high is not None and value > high:
        raise ConfigError(f"{where}: {value} is outside [{low}, {high}]")
    return value


def parameter_specs(cls: type, prefix: str = "") -> list[tuple[str, Any, str, tuple[float | None, float | None]]]:
    """(dotted name, default, description, (low, high)) for every leaf field: what a node declares."""
    specs = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("section"):
            specs += parameter_specs(f.default_factory, f"{prefix}{f.name}.")  # type: ignore[arg-type]
        else:
            specs.append((prefix + f.name, field_default(f), f.metadata.get("description", ""),
                          f.metadata.get("range", (None, None))))
    return specs


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}}: dotted ROS parameter names back into nested config sections."""
    nested: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split(".")
        target = nested
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return nested


def load_perception_config(path: str | os.PathLike | None = None) -> PerceptionConfig:
    """Load a perception parameter file (default: the packaged `config/perception.yaml`)."""
    path = Path(path) if path is not None else default_config_path("perception.yaml")
    doc = load_yaml(path)
    unknown = sorted(set(doc) - set(PerceptionConfig.node_names()))
    if unknown:
        raise ConfigError(f"{path}: unknown node section(s) {', '.join(unknown)}; "
                          f"known: {', '.join(PerceptionConfig.node_names())}")
    sections = {}
    for f in dataclasses.fields(PerceptionConfig):
        section = doc.get(f.name, {}) or {}
        if not isinstance(section, dict) or set(section) - {ROS_PARAMS_KEY}:
            raise ConfigError(f"{path}: section '{f.name}' must hold only '{ROS_PARAMS_KEY}'")
        params = section.get(ROS_PARAMS_KEY, {}) or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: '{f.name}.{ROS_PARAMS_KEY}' must be a mapping")
        sections[f.name] = from_mapping(f.default_factory, params, f"{path}:{f.name}")  # type: ignore[misc]
    return PerceptionConfig(**sections)


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with `yaml.safe_load`, turning every failure into one readable ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}{at}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return doc


def share_dir() -> Path:
    """The package's share folder: this checkout (editable installs), the ament install, or `<prefix>/share`."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "config").is_dir() and (checkout / "package.xml").is_file():
        return checkout
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return Path(sys.prefix) / "share" / PACKAGE
    try:
        return Path(get_package_share_directory(PACKAGE))
    except PackageNotFoundError:
        return Path(sys.prefix) / "share" / PACKAGE


def state_dir(configured: str) -> Path:
    """A node's state folder (snapshots): `configured`, or $XDG_STATE_HOME/ov3d_ros (~/.local/state/ov3d_ros)."""
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / PACKAGE


def default_config_path(name: str) -> Path:
    """Path of a file shipped in `config/`."""
    return share_dir() / "config" / name
