"""Real multi-process tests: `ov3d launch` (a process per node) and a /ground_object client here, over DDS."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")
from ov3d_interfaces.srv import GroundObject  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402

pytestmark = pytest.mark.ros


def _call(node, client, executor, query: str) -> GroundObject.Response:
    future = client.call_async(GroundObject.Request(query=query, target_frame="", max_results=3))
    executor.spin_until_future_complete(future, timeout_sec=15.0)
    assert future.done(), f"no answer to {query[:40]!r} within 15 s"
    return future.result()


def test_launch_serves_ground_object_and_stops_on_sigint(ros_context):
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "ov3d_ros.cli", "launch"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        node = rclpy.create_node("ground_object_client", context=ros_context)
        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(node)
        client = node.create_client(GroundObject, "/ground_object")
        assert client.wait_for_service(timeout_sec=30.0), "ov3d launch never offered /ground_object"

        answer = _call(node, client, executor, "the mug on the desk next to the monitor")
        assert not answer.success
        assert "map is empty" in answer.message
        assert list(answer.candidates) == []

        for query, reason in [("", "empty"), ("   ", "empty"), ("x" * 1001, "limit is 1000"),
                              ("mug\x01\x07", "non-text"), ("?!...", "no words")]:
            answer = _call(node, client, executor, query)
            assert not answer.success and reason in answer.message, (query[:20], answer.message)

        proc.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        status = proc.wait(timeout=5.0)
        assert status == 0, proc.stdout.read()
        assert time.monotonic() - stopped < 5.0
        print(f"two-process test wall time: {time.monotonic() - started:.1f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_node_process_that_dies_stops_the_graph(tmp_path):
    from ov3d_ros.config import default_config_path
    from ov3d_ros.ros.graph_client import GraphProcess, isolated_config

    graph = GraphProcess(isolated_config(default_config_path("perception.yaml"), tmp_path), tmp_path / "graph.log")
    graph.start()
    try:
        deadline = time.monotonic() + 30.0
        while len(graph.pids()) < 4 and time.monotonic() < deadline:   # the launcher and one process per node
            time.sleep(0.2)
        nodes = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") for pid in graph.pids()}
        names = sorted(args[args.index(b"--node") + 1].decode() for args in nodes.values() if b"--node" in args)
        assert names == ["fusion_node", "grounding_node", "segmentation_node"]
        grounding = next(pid for pid, args in nodes.items() if b"grounding_node" in args)
        os.kill(grounding, signal.SIGKILL)
        assert graph.process.wait(timeout=40.0) != 0
        deadline = time.monotonic() + 20.0
        while graph.pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert graph.pids() == [], "node processes outlived their launcher"
    finally:
        graph.stop()
    assert "grounding_node exited with status -9; stopping the graph" in (tmp_path / "graph.log").read_text()


def test_a_node_alone_in_its_process_gets_the_executor_its_config_names(ros_context):
    from rclpy.executors import MultiThreadedExecutor

    from ov3d_ros.config import GroundingNodeConfig, SegmentationNodeConfig
    from ov3d_ros.ros.launcher import node_executor

    def node(name: str, config: object):
        made = rclpy.create_node(name, context=ros_context)
        made.config = config
        return made

    grounding = node("grounding", GroundingNodeConfig())
    segmentation = node("segmentation", SegmentationNodeConfig())
    threaded = node("threaded", SegmentationNodeConfig(executor="multi_threaded"))
    single = node("single", GroundingNodeConfig(executor="single_threaded"))
    try:
        assert type(node_executor([grounding], ros_context)).__name__ == "EventsExecutor"    # its default
        assert type(node_executor([segmentation], ros_context)).__name__ == "EventsExecutor"
        assert isinstance(node_executor([threaded], ros_context), MultiThreadedExecutor)
        assert isinstance(node_executor([single], ros_context), SingleThreadedExecutor)
        # nodes sharing a process share the multi-threaded executor, whatever one of them asks for
        assert isinstance(node_executor([grounding, segmentation], ros_context), MultiThreadedExecutor)
    finally:
        for made in (grounding, segmentation, threaded, single):
            made.destroy_node()


def test_the_segmentation_network_and_objects_run_below_everything_else(ros_context, tmp_path, monkeypatch):
    from ov3d_ros.ros.nodes.segmentation import SegmentationNode
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    node = SegmentationNode(context=ros_context)
    try:
        threads = {thread.name: thread.native_id for thread in node._threads}
        deadline = time.monotonic() + 10.0
        while os.sched_getscheduler(threads["objects"]) != os.SCHED_IDLE and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.sched_getscheduler(threads["objects"]) == os.SCHED_IDLE             # only on cores nobody wants
        assert os.sched_getscheduler(threads["network"]) == os.SCHED_OTHER
        for name in ("network", "objects"):
            assert os.getpriority(os.PRIO_PROCESS, threads[name]) == node.config.network_nice == 19
        assert os.sched_getscheduler(threads["labels"]) == os.SCHED_OTHER       # the labels keep the node's priority
        assert os.getpriority(os.PRIO_PROCESS, threads["labels"]) == os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        node.close()
        node.destroy_node()
