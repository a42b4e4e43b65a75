"""Run the perception graph: nodes in one process (MultiThreadedExecutor) or one child process per node (as
`ros2 launch` starts it; each with the executor its config names); clean stop on SIGINT / SIGTERM either way."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence

import rclpy
from rclpy.context import Context
from rclpy.executors import Executor, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from ov3d_ros.ros.dds import configure_transport

NodeFactory = Callable[..., Node]
EXECUTOR_THREADS = 4
CHILD_STOP_TIMEOUT_S = 15.0        # after SIGINT, before a node process that has not stopped is killed
_PR_SET_PDEATHSIG = 1


def run_nodes(factories: Sequence[NodeFactory], params_file: str | Path | None = None,
              ros_args: Sequence[str] | None = None, ready: threading.Event | None = None,
              stop: threading.Event | None = None) -> int:
    """Create the nodes in a fresh context and spin them until SIGINT/SIGTERM (or `stop`); return an exit status.

    `params_file` is handed to rcl exactly as `ros2 launch` hands it (`--ros-args --params-file`), so nodes read
    the same YAML either way. `ros_args` are extra command-line arguments (e.g. from a console script).
    """
    args = list(ros_args or [])
    if params_file is not None:
        args += ["--ros-args", "--params-file", str(params_file)]
    stop = stop or threading.Event()
    configure_transport()
    context = Context()
    rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    nodes: list[Node] = []
    executor: Executor | None = None
    previous = _install_signal_handlers(stop)
    try:
        for factory in factories:
            nodes.append(factory(context=context))
        executor = node_executor(nodes, context)
        for node in nodes:
            executor.add_node(node)
        if ready is not None:
            ready.set()
        while not stop.is_set() and context.ok():
            executor.spin_once(timeout_sec=0.1)
    finally:
        _restore_signal_handlers(previous)
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        for node in nodes:
            _close(node)
            node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)
    return 0


def node_executor(nodes: Sequence[Node], context: Context) -> Executor:
    """The executor for `nodes`: the one a node alone in its process asks for (`executor` in its config), else a
    multi-threaded one with more threads than cores, so light callbacks (TF, services) keep running while heavy
    ones wait on C code."""
    wanted = getattr(getattr(nodes[0], "config", None), "executor", "multi_threaded") if len(nodes) == 1 \
        else "multi_threaded"
    if wanted == "single_threaded":
        return SingleThreadedExecutor(context=context)
    if wanted == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:                    # rclpy before Jazzy
            nodes[0].get_logger().warning("this rclpy has no EventsExecutor; using the multi-threaded one")
        else:
            return EventsExecutor(context=context)
    return MultiThreadedExecutor(num_threads=max(EXECUTOR_THREADS, os.cpu_count() or 1), context=context)


def _close(node: Node) -> None:
    """A node's clean-stop hook (final snapshot, worker threads), when it has one; never raises."""
    close = getattr(node, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception as exc:  # noqa: BLE001 - one node's failure must not keep the others from stopping
        node.get_logger().error(f"clean stop failed: {exc!r}")


def _install_signal_handlers(stop: threading.Event) -> dict[int, object]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    return previous


def _restore_signal_handlers(previous: dict[int, object]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]


def graph_factories(names: Sequence[str] | None = None) -> list[NodeFactory]:
    """The nodes `ov3d launch` starts (default: one per section of PerceptionConfig, as the launch file does)."""
    from ov3d_ros.config import PerceptionConfig
    from ov3d_ros.ros.nodes.fusion import FusionNode
    from ov3d_ros.ros.nodes.grounding import GroundingNode
    from ov3d_ros.ros.nodes.segmentation import SegmentationNode
    by_name = {cls.NODE_NAME: cls for cls in (FusionNode, SegmentationNode, GroundingNode)}
    return [by_name[name] for name in (names or PerceptionConfig.node_names())]


def run_node_processes(names: Sequence[str], params_file: str | Path, poll_s: float = 0.2) -> int:
    """One child process per node (`ov3d launch --node NAME`), as `ros2 launch` starts the graph, so no node waits
    on another's Python (one interpreter lock each); until SIGINT / SIGTERM, or until a node exits, which stops
    the others. The status: 0 after a requested stop that every node finished cleanly, else the first non-zero
    one. A node process also ends when this one is killed (Linux parent-death signal)."""
    stop = threading.Event()
    previous = _install_signal_handlers(stop)
    children: dict[str, subprocess.Popen] = {}
    status = 0
    try:
        for name in names:
            children[name] = subprocess.Popen(
                [sys.executable, "-m", "ov3d_ros.cli", "launch", "--config", str(params_file), "--node", name],
                preexec_fn=_end_with_parent)
        while not stop.wait(poll_s):
            ended = [(name, child.returncode) for name, child in children.items() if child.poll() is not None]
            if ended:
                name, code = ended[0]
                print(f"ov3d launch: {name} exited with status {code}; stopping the graph", file=sys.stderr,
                      flush=True)
                status = code or 1
                break
    finally:
        _restore_signal_handlers(previous)
        codes = _stop_children(list(children.values()))
    return status or next((code for code in codes if code), 0)


def _end_with_parent() -> None:
    """In a node's child process before exec: SIGTERM when the launcher dies, so no node outlives it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
    except (OSError, AttributeError):      # not Linux: the launcher's clean stop still ends its children
        pass


def _stop_children(children: Sequence[subprocess.Popen]) -> list[int]:
    """SIGINT to every running child, SIGKILL to those still running after CHILD_STOP_TIMEOUT_S; exit statuses
    (a killed child's is negative)."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    for child in children:
        try:
            child.wait(timeout=CHILD_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return [child.returncode for child in children]
