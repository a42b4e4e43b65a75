"""Benchmarks of the running graph over DDS: /ground_object round trips on a map of many objects, and a soak
(a bag looped for minutes) that records the graph's resident memory while a planner calls /ground_object."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from ov3d_interfaces.msg import ObjectMap

from ov3d_ros.config import LanguageConfig
from ov3d_ros.evaluation.bench_grounding import distinct_queries, synthetic_objects
from ov3d_ros.evaluation.latency import percentiles
from ov3d_ros.messages.object_map import ObjectMapContent, object_map_to_msg
from ov3d_ros.ros.graph_client import GraphClient, GraphProcess
from ov3d_ros.ros.planner_calls import PlannerProcess
from ov3d_ros.ros.qos import LATCHED
from ov3d_ros.ros.replay import replay_bag


def run_service_benchmark(client: GraphClient, language: LanguageConfig, objects: int, queries: int,
                          seed: int = 0) -> dict[str, Any]:
    """Publish a map of `objects` synthetic objects to the grounding node and time `queries` distinct queries
    through /ground_object (round trip through DDS, text encoding included)."""
    from ov3d_ros.data.synthetic.categories import label_entries
    from ov3d_ros.language.vocabulary import configured_vocabulary

    vocabulary = configured_vocabulary(label_entries(), language)
    rng = np.random.default_rng(seed)
    content = ObjectMapContent(synthetic_objects(vocabulary, objects, rng), np.arange(objects),
                               tuple(vocabulary.entries()), vocabulary.encoder_name, None, "map", time.time_ns())
    client.wait_for_graph()
    publisher = client.node.create_publisher(ObjectMap, "/ov3d/objects", LATCHED)
    publisher.publish(object_map_to_msg(content))
    client.wait_until(lambda: client.diagnostics("grounding_node").get("objects") == str(objects), 60.0,
                      f"the grounding node holding the {objects} objects")
    client.ground("warm up the text encoder")
    latencies, unanswered = [], 0
    for text in distinct_queries(queries, rng):
        response, ms = client.ground(text, max_results=5)
        latencies.append(ms)
        unanswered += not response.success
    return {"objects": objects, "queries": queries, "round_trip_ms": percentiles(latencies),
            "unanswered": unanswered}


SOAK_QUERIES = ("the chair next to the table", "the table", "the largest cabinet", "the door",
                "the chair closest to the window", "the bookshelf against the wall")


def run_soak(graph: GraphProcess, client: GraphClient, bag: Path, minutes: float, rate: float,
             sample_s: float = 5.0, call_hz: float = 20.0) -> dict[str, Any]:
    """Loop `bag` at `rate` for `minutes` into `graph`; sample its resident memory every `sample_s` while a
    planner asks /ground_object at `call_hz` (SOAK_QUERIES in turn, from a process of its own: `PlannerProcess`)."""
    from ov3d_ros.data.rosbag import BagReader

    with BagReader(bag) as reader:
        loops = max(1, int(np.ceil(minutes * 60.0 * rate / (reader.duration_s + 1.0))))
    client.wait_for_graph()
    stop = threading.Event()
    memory: list[tuple[float, float, int]] = []          # (seconds since start, RSS MB, map voxels)
    started = time.monotonic()

    def sample() -> None:
        while not stop.wait(sample_s):
            voxels = int(client.diagnostics("fusion_node").get("map.voxels", 0))
            memory.append((time.monotonic() - started, graph.resident_mb(), voxels))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    planner = PlannerProcess(SOAK_QUERIES, call_hz).start()
    deadline = threading.Timer(minutes * 60.0, stop.set)
    deadline.start()
    try:
        stats = replay_bag(bag, rate=rate, progress=False, wait_for_subscribers_s=30.0, loops=loops, stop=stop)
    finally:
        stop.set()
        deadline.cancel()
        planner.stop()
        sampler.join(timeout=30.0)
    fusion = client.diagnostics("fusion_node")
    budget = int(fusion.get("map.budget", 0))
    full_at = next((t for t, _, voxels in memory if budget and voxels >= budget), None)
    after = [rss for t, rss, _ in memory if full_at is not None and t >= full_at]
    return {
        "minutes": minutes, "rate": rate, "loops": loops, "bag_seconds_played": stats.bag_duration_s,
        "published": dict(stats.published), "memory_mb": [[t, rss, voxels] for t, rss, voxels in memory],
        "graph_processes": len(graph.pids()),
        "budget_voxels": budget, "budget_full_after_s": full_at,
        "rss_after_full_mb": {"first": after[0], "last": after[-1], "max": max(after), "min": min(after)}
        if after else None,
        "rss_windows_mb": _windows(memory, 120.0),
        "service_calls": planner.report(),
        "drops": {name: {k: v for k, v in client.diagnostics(name).items() if k.startswith("drops.")}
                  for name in ("fusion_node", "segmentation_node", "grounding_node")},
        "evicted_voxels": int(fusion.get("map.evicted", 0)),
    }


def _windows(memory: list[tuple[float, float, int]], width_s: float) -> list[dict[str, float]]:
    """Mean and max resident memory in consecutive windows of `width_s`."""
    out = []
    for start in np.arange(0.0, memory[-1][0] if memory else 0.0, width_s):
        rss = [value for t, value, _ in memory if start <= t < start + width_s]
        if rss:
            out.append({"from_s": float(start), "to_s": float(start + width_s), "mean": float(np.mean(rss)),
                        "max": float(np.max(rss))})
    return out
