"""`ov3d doctor`: whether this machine, its ROS 2 install and the live graph can run the perception graph.

Each check gives one `Finding` (ok / warn / fail and a line of detail): the ROS distribution and RMW, the DDS
domain, our interface package, torch / CUDA / torchsparse, the weights the parameter file names (and whether
their text space is the configured encoder's), and, for every input topic the fusion node subscribes to, whether
something publishes it, with which type and at what rate. A `fail` means the graph could not work as configured.
rclpy is imported only by the checks that need it, so the report says so instead of crashing when it is missing.
"""
from __future__ import annotations

import importlib.metadata
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ov3d_ros.config import PerceptionConfig
from ov3d_ros.messages.types import ROS_TYPES

OK, WARN, FAIL = "ok", "warn", "fail"
MAX_DOMAIN_ID = 232          # the largest ROS_DOMAIN_ID that maps to valid DDS ports on every platform
GRAPH_NODES = ("fusion_node", "segmentation_node", "grounding_node")


@dataclass(frozen=True)
class Finding:
    """One line of the report."""

    check: str
    status: str              # OK, WARN or FAIL
    detail: str

    def line(self) -> str:
        return f"[{self.status:>4}] {self.check}: {self.detail}"


def ros_distribution() -> str:
    """The ROS 2 distribution: $ROS_DISTRO of a sourced install, else the PyPI wheels that provide rclpy
    (`ros-<distro>-rclpy`; the unprefixed `ros-rclpy` wheels are Kilted). 'unknown' when neither says."""
    if os.environ.get("ROS_DISTRO"):
        return f"{os.environ['ROS_DISTRO']} ($ROS_DISTRO)"
    for name in importlib.metadata.packages_distributions().get("rclpy", []):
        parts = name.lower().replace("_", "-").split("-")
        if parts[:1] == ["ros"] and parts[-1] == "rclpy":
            distro = parts[1] if len(parts) == 3 else "kilted"
            return f"{distro} (PyPI wheel {name} {importlib.metadata.version(name)})"
    return "unknown"


def check_ros() -> list[Finding]:
    """rclpy, the distribution, the RMW, the DDS domain and our interface package."""
    findings = []
    try:
        import rclpy  # noqa: F401
        from rclpy.utilities import get_rmw_implementation_identifier
    except ImportError as exc:
        return [Finding("rclpy", FAIL, f"does not import ({exc}); run ./setup.sh or source a ROS 2 install")]
    findings.append(Finding("ROS 2", OK, ros_distribution()))
    findings.append(Finding("RMW", OK, f"{get_rmw_implementation_identifier()}"
                                       f"{' ($RMW_IMPLEMENTATION)' if os.environ.get('RMW_IMPLEMENTATION') else ''}"))
    domain = os.environ.get("ROS_DOMAIN_ID", "")
    if domain and not (domain.isdigit() and int(domain) <= MAX_DOMAIN_ID):
        findings.append(Finding("DDS domain", FAIL, f"ROS_DOMAIN_ID={domain!r} is not an integer 0-{MAX_DOMAIN_ID}"))
    else:
        scope = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE") or \
            ("localhost" if os.environ.get("ROS_LOCALHOST_ONLY") == "1" else "subnet (default)")
        findings.append(Finding("DDS domain", OK, f"{domain or '0 (default)'}; discovery range {scope}"))
    try:
        from ov3d_interfaces.srv import GroundObject  # noqa: F401
        findings.append(Finding("ov3d_interfaces", OK, "GroundObject, SetVocabulary, ObjectMap import"))
    except ImportError as exc:
        findings.append(Finding("ov3d_interfaces", FAIL, f"not built ({exc}); run ./setup.sh"))
    return findings


def check_compute() -> list[Finding]:
    """torch, CUDA and the sparse backends."""
    import torch

    from ov3d_ros.sparse import torchsparse_available

    cuda = torch.cuda.is_available()
    return [
        Finding("torch", OK, f"{torch.__version__}, {torch.get_num_threads()} CPU threads"),
        Finding("CUDA", OK, f"{torch.cuda.get_device_name(0)}" if cuda else "not available: the network runs on CPU"),
        Finding("torchsparse", OK if torchsparse_available() else WARN,
                "usable" if torchsparse_available() else "not installed: the portable sparse backend runs (same "
                                                         "weights, slower on GPU)"),
    ]


def check_weights(config: PerceptionConfig) -> list[Finding]:
    """The student and the grounder the parameter file names: they load, and the student's text space is the
    encoder's the segmentation node would build."""
    from ov3d_ros.grounding.engine import resolve_grounder_path
    from ov3d_ros.grounding.grounders import load_grounding_model
    from ov3d_ros.language.encoders import build_text_encoder
    from ov3d_ros.training.checkpoint import load_student_and_offset, resolve_checkpoint

    findings = []
    seg = config.segmentation_node
    try:
        student, text_space, _ = load_student_and_offset(seg.student_checkpoint)
        encoder = build_text_encoder(seg.language).name
        parameters = sum(p.numel() for p in student.parameters())
        inputs = ", ".join(student.config.inputs) or "geometry only"
        detail = (f"{resolve_checkpoint(seg.student_checkpoint)}: {parameters / 1e6:.1f} M parameters, "
                  f"{student.config.voxel_size * 100:g} cm voxels, inputs {inputs}, text space {text_space}")
        if text_space != encoder:
            findings.append(Finding("student", FAIL, f"{detail}, but segmentation_node.language gives {encoder}"))
        else:
            findings.append(Finding("student", OK, detail))
    except Exception as exc:  # noqa: BLE001 - any reason the weights do not load is the finding
        findings.append(Finding("student", FAIL, f"{seg.student_checkpoint!r} does not load: {exc}"))
    checkpoint = config.grounding_node.grounder_checkpoint
    if not checkpoint:
        findings.append(Finding("grounder", WARN, "none configured: answers are ranked by the coarse stage only"))
    else:
        try:
            path = resolve_grounder_path(checkpoint)
            load_grounding_model(path, "grounder")
            findings.append(Finding("grounder", OK, f"{path} loads"))
        except Exception as exc:  # noqa: BLE001
            findings.append(Finding("grounder", FAIL, f"{checkpoint!r} does not load: {exc}"))
    return findings


def input_topics(config: PerceptionConfig) -> list[tuple[str, str, str]]:
    """(what, topic, message type) of every input the fusion node subscribes to under `config`."""
    fusion = config.fusion_node
    topics = [("TF", "/tf", "tf2_msgs/msg/TFMessage"), ("static TF", "/tf_static", "tf2_msgs/msg/TFMessage")]
    if fusion.use_rgbd:
        images = fusion.image_inputs()
        topics += [("colour", *images["color"]), ("depth", *images["depth"]),
                   ("camera info", fusion.camera_info_topic, "sensor_msgs/msg/CameraInfo")]
    if fusion.use_lidar:
        topics.append(("LiDAR", fusion.lidar_topic, "sensor_msgs/msg/PointCloud2"))
    return topics


def check_topics(config: PerceptionConfig, listen_s: float,
                 clock: Callable[[], float] = time.monotonic) -> list[Finding]:
    """Who publishes each input topic and how often (messages counted for `listen_s`), and which of our nodes
    and services are up. No sensor input published at all, or a topic of the wrong type, is a failure."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from ov3d_ros.ros.qos import TF_STATIC_QOS, sensor_qos

    context = Context()
    rclpy.init(context=context)
    findings: list[Finding] = []
    try:
        node = rclpy.create_node("ov3d_doctor", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        end = clock() + min(1.0, listen_s)               # discovery first
        while clock() < end:
            executor.spin_once(timeout_sec=0.05)
        advertised = dict(node.get_topic_names_and_types())
        topics = input_topics(config)
        counts: dict[str, list[float]] = {}
        for _, topic, kind in topics:
            if kind in advertised.get(topic, []):
                counts[topic] = []
                node.create_subscription(_message_class(kind), topic,
                                         lambda _msg, stamps=counts[topic]: stamps.append(clock()),
                                         TF_STATIC_QOS if topic == "/tf_static" else sensor_qos(10), raw=True)
        end = clock() + listen_s
        while clock() < end:
            executor.spin_once(timeout_sec=0.05)
        sensors_published = False
        for what, topic, kind in topics:
            finding = _topic_finding(what, topic, kind, advertised.get(topic, []),
                                     node.count_publishers(topic), counts.get(topic), listen_s)
            sensors_published |= not topic.startswith("/tf") and finding.status == OK
            findings.append(finding)
        if not sensors_published:
            findings.append(Finding("inputs", FAIL, "no sensor topic is published: the fusion node has nothing to "
                                                    "map (start the drivers or `ov3d replay BAG`)"))
        running = {name for name, _ in node.get_node_names_and_namespaces()}
        up = [name for name in GRAPH_NODES if name in running]
        services = dict(node.get_service_names_and_types())
        findings.append(Finding("graph", OK if len(up) == len(GRAPH_NODES) else WARN,
                                f"running: {', '.join(up) or 'none of ' + ', '.join(GRAPH_NODES)}; /ground_object "
                                f"{'offered' if '/ground_object' in services else 'not offered'}"))
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    return findings


def _message_class(kind: str) -> Any:
    return ROS_TYPES.get(kind)


def _topic_finding(what: str, topic: str, expected: str, types: Iterable[str], publishers: int,
                   stamps: list[float] | None, listen_s: float) -> Finding:
    types = list(types)
    name = f"{what} {topic}"
    if not publishers:
        return Finding(name, WARN, "no publisher")
    if expected not in types:
        return Finding(name, FAIL, f"published as {', '.join(types)}, the graph expects {expected}")
    received = len(stamps or [])
    if received == 0:
        return Finding(name, WARN, f"{publishers} publisher(s), no message in {listen_s:.1f} s")
    rate = (received - 1) / (stamps[-1] - stamps[0]) if received > 1 and stamps[-1] > stamps[0] else 0.0
    return Finding(name, OK, f"{publishers} publisher(s), {received} message(s) in {listen_s:.1f} s"
                             + (f", {rate:.1f} Hz" if rate else ""))


def run_checks(config: PerceptionConfig | None, config_error: str | None, topics: bool,
               listen_s: float) -> list[Finding]:
    """Every check, in report order; the topic checks only with `topics` and a working rclpy."""
    findings = check_ros()
    findings += check_compute()
    if config is None:
        return findings + [Finding("parameter file", FAIL, config_error or "unreadable")]
    findings += check_weights(config)
    if topics and not any(f.check in ("rclpy", "ov3d_interfaces") and f.status == FAIL for f in findings):
        findings += check_topics(config, listen_s)
    return findings
