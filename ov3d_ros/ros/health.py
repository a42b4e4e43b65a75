"""/diagnostics for the nodes: dropped inputs by reason, stage latencies and node-specific values, once a period."""
from __future__ import annotations

from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from ov3d_ros.evaluation.latency import StageTimes
from ov3d_ros.ros.drops import DropCounter

DIAGNOSTICS_TOPIC = "/diagnostics"
HARDWARE_ID = "ov3d_ros"


def status_name(node_name: str) -> str:
    return f"{HARDWARE_ID}: {node_name}"


class Health:
    """Publishes one DiagnosticStatus per period: OK, or WARN when inputs were dropped since the last report.

    Keys: `drops.<reason>` (totals), `<stage>.p50_ms` / `.p90_ms` / `.max_ms` / `.count` for every timed stage,
    and whatever `values()` returns (queue depths, map sizes ...)."""

    def __init__(self, node: Node, drops: DropCounter, times: StageTimes, period_s: float,
                 values: Callable[[], dict[str, Any]], callback_group: Any = None) -> None:
        self._node, self._drops, self._times, self._values = node, drops, times, values
        self._reported_drops = 0
        self._publisher = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        node.create_timer(period_s, self.publish, callback_group=callback_group)

    def publish(self) -> None:
        pairs: dict[str, Any] = {f"drops.{reason}": count for reason, count in sorted(self._drops.counts.items())}
        for stage, stats in sorted(self._times.summary().items()):
            pairs.update({f"{stage}.p50_ms": stats["p50"], f"{stage}.p90_ms": stats["p90"],
                          f"{stage}.max_ms": stats["max"], f"{stage}.count": int(stats["count"])})
        pairs.update(self._values())
        total = self._drops.total
        new_drops, self._reported_drops = total - self._reported_drops, total
        status = DiagnosticStatus(name=status_name(self._node.get_name()), hardware_id=HARDWARE_ID,
                                  level=DiagnosticStatus.WARN if new_drops else DiagnosticStatus.OK,
                                  message=f"{new_drops} input(s) dropped in the last period" if new_drops else "ok",
                                  values=[KeyValue(key=key, value=_text(value)) for key, value in pairs.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._node.get_clock().now().to_msg()
        self._publisher.publish(array)


def _text(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def diagnostic_values(msg: DiagnosticArray) -> dict[str, dict[str, str]]:
    """{status name: {key: value}} of a DiagnosticArray."""
    return {status.name: {pair.key: pair.value for pair in status.values} for status in msg.status}
