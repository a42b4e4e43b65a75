"""A planner's load on the running graph: /ground_object called on a fixed schedule from a background thread,
once the grounding node holds objects, with every call's round trip and outcome recorded; `PlannerProcess` makes
the calls from a process of its own, as a planner does.

`python -m ov3d_ros.ros.planner_calls --queries Q.json --hz H --report R.json` is that process: it calls until its
standard input closes, then writes the report."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from ov3d_ros.evaluation.answers import Answer, answer_kind
from ov3d_ros.evaluation.latency import percentiles
from ov3d_ros.ros.graph_client import GraphClient, GraphError

READY = "planner ready"      # what the planner process prints once it can call


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


class PlannerProcess:
    """`PlannerCalls` in a child process with its own client (`main`), so the calls share no interpreter lock
    with the caller: a replay's bag player in the same process delayed the planner's responses by up to 280 ms.
    The same start / stop / report as `PlannerCalls`."""

    def __init__(self, queries: Sequence[str], call_hz: float, max_results: int = 3) -> None:
        if call_hz <= 0 or not queries:
            raise ValueError("a planner needs a positive call rate and at least one query")
        self.queries, self.call_hz, self.max_results = list(queries), call_hz, max_results
        self._folder = Path(tempfile.mkdtemp(prefix="ov3d_planner_"))
        self._process: subprocess.Popen[bytes] | None = None
        self._report: dict[str, Any] | None = None

    def start(self) -> PlannerProcess:
        (self._folder / "queries.json").write_text(json.dumps(self.queries))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "ov3d_ros.ros.planner_calls", "--queries", str(self._folder / "queries.json"),
             "--hz", str(self.call_hz), "--max-results", str(self.max_results),
             "--report", str(self._folder / "report.json")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != READY.encode():      # its client is up (or it failed)
            raise GraphError(f"the planner process did not start (exit status {self._process.wait()})")
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Tell the child to stop (its standard input closes) and read its report."""
        if self._process is None:
            return
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        report = self._folder / "report.json"
        self._report = json.loads(report.read_text()) if report.is_file() else None
        shutil.rmtree(self._folder, ignore_errors=True)

    def report(self) -> dict[str, Any]:
        if self._report is None:
            raise RuntimeError("the planner process wrote no report (not started, or it failed)")
        return self._report


def main(argv: Sequence[str] | None = None) -> int:
    """The planner process of `PlannerProcess`."""
    parser = argparse.ArgumentParser(description="Call /ground_object on a schedule until stdin closes.")
    parser.add_argument("--queries", type=Path, required=True, help="JSON list of query texts")
    parser.add_argument("--hz", type=float, required=True, help="calls per second")
    parser.add_argument("--max-results", type=int, default=3)
    parser.add_argument("--report", type=Path, required=True, help="where the JSON report goes")
    args = parser.parse_args(argv)
    from ov3d_ros.files import atomic_path
    with GraphClient("ov3d_planner", semantic_map_topic="", objects_topic="") as client:
        calls = PlannerCalls(client, json.loads(args.queries.read_text()), args.hz, args.max_results).start()
        print(READY, flush=True)
        sys.stdin.read()
        calls.stop()
    with atomic_path(args.report) as temporary:
        Path(temporary).write_text(json.dumps(calls.report()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
