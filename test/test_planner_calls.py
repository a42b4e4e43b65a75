"""PlannerCalls on a stand-in client: it waits for objects, keeps its schedule, and sorts every call's outcome."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

pytest.importorskip("rclpy")
from ov3d_ros.grounding.engine import EMPTY_MAP  # noqa: E402
from ov3d_ros.ros.graph_client import GraphError  # noqa: E402
from ov3d_ros.ros.planner_calls import PlannerCalls  # noqa: E402


class _Client:
    """Objects appear after `objects_after_s`; 'lost' times out, 'empty' is refused, the rest are answered."""

    def __init__(self, objects_after_s: float) -> None:
        self.started, self.objects_after_s, self.asked = time.monotonic(), objects_after_s, []

    def diagnostics(self, node: str) -> dict[str, str]:
        assert node == "grounding_node"
        return {"objects": "4" if time.monotonic() - self.started >= self.objects_after_s else "0"}

    def ground(self, query: str, max_results: int = 1):
        self.asked.append((time.monotonic(), query))
        if query == "lost":
            raise GraphError("no answer")
        success = query != "empty"
        return SimpleNamespace(success=success, message="" if success else f"{EMPTY_MAP}: no objects yet"), 2.0


def test_calls_start_with_the_objects_and_keep_the_schedule():
    client = _Client(objects_after_s=0.3)
    planner = PlannerCalls(client, ["a chair", "empty", "lost", "the table"], call_hz=50.0).start()
    time.sleep(1.3)
    planner.stop()
    report = planner.report()
    first = client.asked[0][0] - client.started
    assert first >= 0.3                                   # nothing is asked before the map has objects
    calls = report["answered"] + report["dropped"] + sum(report["failed"].values())
    assert calls == len(client.asked) and 35 <= calls <= 55          # 50 Hz for about a second
    assert [q for _, q in client.asked[:5]] == ["a chair", "empty", "lost", "the table", "a chair"]
    assert report["dropped"] == calls // 4 + (calls % 4 > 2)
    assert report["failed"] == {"refused: empty map": calls // 4 + (calls % 4 > 1)}
    assert report["latency_ms"]["p50"] == 2.0 and 40 <= report["calls_per_s"] <= 55


def test_a_planner_needs_a_rate_and_queries():
    with pytest.raises(ValueError):
        PlannerCalls(_Client(0.0), [], call_hz=5.0)
    with pytest.raises(ValueError):
        PlannerCalls(_Client(0.0), ["x"], call_hz=0.0)
