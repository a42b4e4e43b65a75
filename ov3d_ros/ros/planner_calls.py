"""A planner's load on the running graph: /ground_object called on a fixed schedule from a background thread,
once the grounding node holds objects, with every call's round trip and outcome recorded."""
from __future__ import annotations

import threading
import time
from typing import Any, Sequence

from ov3d_ros.evaluation.answers import Answer, answer_kind
from ov3d_ros.evaluation.latency import percentiles
from ov3d_ros.ros.graph_client import GraphClient, GraphError


class PlannerCalls:
    """Calls /ground_object at `call_hz` with `queries` in turn (a late call goes at once) between `start()` and
    `stop()`, from the moment the grounding node reports objects. A call without a response counts as dropped,
    one answered `success=false` as failed, by the kind of refusal (`answer_kind`)."""

    def __init__(self, client: GraphClient, queries: Sequence[str], call_hz: float, max_results: int = 3) -> None:
        if call_hz <= 0 or not queries:
            raise ValueError("a planner needs a positive call rate and at least one query")
        self.client, self.queries, self.period_s, self.max_results = client, list(queries), 1.0 / call_hz, max_results
        self.call_hz = call_hz
        self.answered, self.dropped = 0, 0
        self.failed: dict[str, int] = {}
        self.latency_ms: list[float] = []
        self.first_call: float | None = None          # time.monotonic() of the first call
        self.stopped: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PlannerCalls:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)
        self.stopped = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(0.2) and int(self.client.diagnostics("grounding_node").get("objects", 0)) == 0:
            pass
        self.first_call = due = time.monotonic()
        while not self._stop.is_set():
            query = self.queries[(self.answered + self.dropped + sum(self.failed.values())) % len(self.queries)]
            try:
                response, ms = self.client.ground(query, max_results=self.max_results)
            except GraphError:
                self.dropped += 1
            else:
                self.latency_ms.append(ms)
                if response.success:
                    self.answered += 1
                else:
                    kind = answer_kind(Answer(False, response.message))
                    self.failed[kind] = self.failed.get(kind, 0) + 1
            due = max(due + self.period_s, time.monotonic() - self.period_s)
            self._stop.wait(max(0.0, due - time.monotonic()))

    def report(self) -> dict[str, Any]:
        """Calls made and their outcomes; `calls_per_s` (every call, dropped ones too) from the first call to the
        stop (or now)."""
        end = self.stopped if self.stopped is not None else time.monotonic()
        seconds = end - self.first_call if self.first_call is not None else 0.0
        calls = self.answered + self.dropped + sum(self.failed.values())
        return {"call_hz": self.call_hz, "answered": self.answered, "dropped": self.dropped, "failed": self.failed,
                "calls_per_s": calls / seconds if seconds > 0 else 0.0,
                "latency_ms": percentiles(self.latency_ms)}
