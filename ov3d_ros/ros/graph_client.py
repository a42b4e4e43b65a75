"""A client of the running perception graph: the node `ov3d replay --eval`, `ov3d demo` and the tests use to set
the vocabulary, ask /ground_object, and read the semantic map and /diagnostics; and the graph as a child process."""
from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from ov3d_interfaces.msg import ObjectMap
from ov3d_interfaces.srv import GroundObject, MapFile, SetVocabulary
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import PointCloud2

from ov3d_ros.messages import pointcloud2_to_array, unpack_rgb
from ov3d_ros.messages.object_map import ObjectMapContent, msg_to_object_map
from ov3d_ros.ros.dds import configure_transport
from ov3d_ros.ros.health import DIAGNOSTICS_TOPIC, diagnostic_values, status_name
from ov3d_ros.ros.qos import LATCHED

if TYPE_CHECKING:
    from ov3d_ros.evaluation.online import LabelledMap

SERVICE_TIMEOUT_S = 30.0


class GraphError(TimeoutError):
    """The graph did not start, answer or settle in time."""


@dataclass(frozen=True)
class SemanticMapSample:
    """One /ov3d/semantic_map message as received."""

    stamp_ns: int            # newest sensor data the map holds
    received: float          # time.monotonic() at arrival


def cdr_header_stamp_ns(raw: bytes) -> int:
    """The header stamp of a serialised message that starts with a std_msgs/Header (little-endian CDR), read
    without deserialising the rest (a semantic map is megabytes)."""
    if len(raw) < 12 or raw[1] != 1:
        raise ValueError("not a little-endian CDR message")
    sec, nanosec = struct.unpack_from("<iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


class GraphClient:
    """A node in its own context, spun by a background thread; every call is thread-safe and bounded in time."""

    def __init__(self, name: str = "ov3d_client", semantic_map_topic: str = "/ov3d/semantic_map",
                 objects_topic: str = "/ov3d/objects") -> None:
        configure_transport()
        self._context = Context()
        rclpy.init(context=self._context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(name, context=self._context)
        self._lock = threading.Lock()
        self._semantic_map: bytes | None = None        # serialised: decoded only when asked for
        self._objects: bytes | None = None
        self.map_samples: list[SemanticMapSample] = []
        self._diagnostics: dict[str, dict[str, str]] = {}
        if semantic_map_topic:                          # "" = not needed (a planner's client)
            self.node.create_subscription(PointCloud2, semantic_map_topic, self._on_semantic_map, LATCHED, raw=True)
        if objects_topic:
            self.node.create_subscription(ObjectMap, objects_topic, self._on_objects, LATCHED, raw=True)
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, 50)
        self._ground = self.node.create_client(GroundObject, "/ground_object")
        self._vocabulary = self.node.create_client(SetVocabulary, "/set_vocabulary")
        self._map_files = {verb: self.node.create_client(MapFile, f"/ov3d/{verb}_map") for verb in ("save", "load")}
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()

    def _on_semantic_map(self, raw: bytes) -> None:
        received = time.monotonic()
        with self._lock:
            self._semantic_map = raw
            self.map_samples.append(SemanticMapSample(cdr_header_stamp_ns(raw), received))

    def _on_objects(self, raw: bytes) -> None:
        with self._lock:
            self._objects = raw

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self._lock:
            self._diagnostics.update(diagnostic_values(msg))

    def diagnostics(self, node_name: str) -> dict[str, str]:
        """The newest /diagnostics values of a node of the graph ({} before its first report)."""
        with self._lock:
            return dict(self._diagnostics.get(status_name(node_name), {}))

    def forget_diagnostics(self) -> None:
        """Drop the reports received so far (after restarting the graph: only its new reports count)."""
        with self._lock:
            self._diagnostics.clear()

    def wait_for_graph(self, timeout_s: float = 60.0) -> None:
        """Until /ground_object and /set_vocabulary are offered; GraphError after `timeout_s`."""
        for client, name in ((self._ground, "/ground_object"), (self._vocabulary, "/set_vocabulary")):
            if not client.wait_for_service(timeout_sec=timeout_s):
                raise GraphError(f"{name} was not offered within {timeout_s:.0f} s: is the graph running?")

    def _call(self, client: Any, request: Any, timeout_s: float = SERVICE_TIMEOUT_S) -> Any:
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout_s):
            client.remove_pending_request(future)
            raise GraphError(f"no answer from {client.srv_name} within {timeout_s:.0f} s")
        return future.result()

    def set_vocabulary(self, entries: Sequence[str]) -> str:
        response = self._call(self._vocabulary, SetVocabulary.Request(labels=list(entries)))
        if not response.success:
            raise GraphError(f"/set_vocabulary refused the vocabulary: {response.message}")
        return response.message

    def map_file(self, verb: str, path: str = "") -> Any:
        """/ov3d/save_map or /ov3d/load_map (`verb` "save" / "load") with `path` ("" = the node's snapshot)."""
        client = self._map_files[verb]
        if not client.wait_for_service(timeout_sec=SERVICE_TIMEOUT_S):
            raise GraphError(f"/ov3d/{verb}_map is not offered")
        return self._call(client, MapFile.Request(path=path))

    def ground(self, query: str, max_results: int = 1, target_frame: str = "") -> tuple[Any, float]:
        """The /ground_object response and its round-trip time in ms."""
        started = time.perf_counter()
        response = self._call(self._ground, GroundObject.Request(query=query, target_frame=target_frame,
                                                                 max_results=max_results))
        return response, (time.perf_counter() - started) * 1000.0

    def semantic_map(self, labels: Sequence[str]) -> LabelledMap | None:
        """The newest semantic map, decoded; `labels` is the vocabulary its label indices refer to."""
        with self._lock:
            raw = self._semantic_map
        if raw is None:
            return None
        cloud = pointcloud2_to_array(deserialize_message(raw, PointCloud2)).reshape(-1)
        xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)
        from ov3d_ros.evaluation.online import LabelledMap      # (torch): a planner's client never needs it
        return LabelledMap(xyz, cloud["label"].astype(np.int64), unpack_rgb(cloud["rgb"]), tuple(labels))

    def objects(self) -> ObjectMapContent | None:
        """The newest objects the segmentation node published, decoded."""
        with self._lock:
            raw = self._objects
        return None if raw is None else msg_to_object_map(deserialize_message(raw, ObjectMap))

    def wait_until(self, condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.2,
                   hold_s: float = 0.0) -> float:
        """Seconds until `condition()` held (at every poll for `hold_s` in a row, when given); GraphError naming
        `what` after `timeout_s`."""
        started = time.monotonic()
        held_since: float | None = None
        while True:
            now = time.monotonic()
            if condition():
                held_since = now if held_since is None else held_since
                if now - held_since >= hold_s:
                    return held_since - started
            else:
                held_since = None
            if now - started > timeout_s:
                raise GraphError(f"{what} did not happen within {timeout_s:.0f} s")
            time.sleep(poll_s)

    def close(self) -> None:
        self._executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        if self._context.ok():
            rclpy.shutdown(context=self._context)
        self._spinner.join(timeout=2.0)

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def isolated_config(config: str | os.PathLike[str], folder: str | os.PathLike[str],
                    **fusion: Any) -> Path:
    """A copy of the perception parameter file whose nodes keep their state (snapshots, vocabulary) in `folder`,
    so a graph started for an evaluation, a benchmark or the demo neither resumes a robot's map nor leaves one
    behind. `fusion` overrides fusion_node parameters. Written to `folder`/perception.yaml."""
    import yaml

    folder = Path(folder)
    doc = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    for node in ("fusion_node", "segmentation_node"):
        doc.setdefault(node, {}).setdefault("ros__parameters", {})["snapshot_dir"] = str(folder / "state")
    doc["fusion_node"]["ros__parameters"].update(fusion)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "perception.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


class GraphProcess:
    """`ov3d launch --config CONFIG` in a child process (its output in `log`) that leads its own process group (it
    and its node processes), stopped with SIGINT."""

    def __init__(self, config: str | os.PathLike[str], log: str | os.PathLike[str]) -> None:
        self.config, self.log_path = Path(config), Path(log)
        self.process: subprocess.Popen | None = None

    def start(self) -> GraphProcess:
        configure_transport()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen([sys.executable, "-m", "ov3d_ros.cli", "launch", "--config", str(self.config)],
                                        stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ),
                                        start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL to the launcher and every node process at once (a crash: nothing gets to stop cleanly)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10.0)

    def pids(self) -> list[int]:
        """The running processes of the graph: the launcher and its node processes."""
        if self.process is None:
            raise GraphError("the graph was not started")
        return _group_pids(self.process.pid)

    def resident_mb(self) -> float:
        """Resident memory of the launcher and its node processes together, MB (the sum of their VmRSS, so pages
        they share count once per process)."""
        return sum(_rss_mb(pid) for pid in self.pids())

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGINT, then SIGKILL after `timeout_s`; the exit status."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> GraphProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _group_pids(group: int) -> list[int]:
    """The running processes of a process group (from /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue                        # ended while we looked
        if int(fields[2]) == group and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _rss_mb(pid: int) -> float:
    """Resident memory of a process, MB (VmRSS; 0 for a process that has just ended)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024.0 for line in lines if line.startswith("VmRSS:")), 0.0)
