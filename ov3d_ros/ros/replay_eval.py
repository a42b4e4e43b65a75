"""`ov3d replay BAG --eval DATA`: play a bag through the running graph and score what comes out.

Reported: the online semantic map's mIoU on the scene's ground truth next to the offline evaluation of the same
checkpoint on the same scene; grounding Acc@0.25 / 0.5 on the scene's descriptions through the real
/ground_object service (with its round-trip latency, after the graph settled and, from a planner asking while
the bag plays, as the map updates); the described objects' recall by the online objects and by the same
checkpoint's objects offline; how soon the semantic map reflects new data; each node's
stage latencies and dropped inputs from /diagnostics; and the real-time factor.

Refresh latency: for every semantic map received during the replay, the time since the newest sensor reading it
holds was published. Real-time factor: the seconds of bag the graph took in per second of wall time. That is the
bag's duration times the share of each sensor topic's messages the fusion node received (the smallest share),
over the replay's own wall time plus however much longer than its usual refresh latency the graph took to show
the last reading. A graph that keeps up scores the replay rate.
"""
from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from ov3d_ros.config import FusionNodeConfig, PerceptionConfig
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.evaluation.answers import Answer, answer_report
from ov3d_ros.evaluation.grounding import grounding_accuracy
from ov3d_ros.evaluation.latency import percentiles
from ov3d_ros.evaluation.online import (LabelledMap, answer_box, grounding_cases, offline_scores, offline_student,
                                        online_scores, proposal_recalls, scene_descriptions, segmentation_summary)
from ov3d_ros.geometry.boxes import OrientedBox
from ov3d_ros.ros.graph_client import GraphClient, GraphError
from ov3d_ros.ros.planner_calls import PlannerProcess
from ov3d_ros.ros.replay import replay_bag

NODES = ("fusion_node", "segmentation_node", "grounding_node")
PLANNER_HZ = 2.0           # a planner's /ground_object calls while the bag plays


@dataclass
class PublishLog:
    """Log time (ns) -> when it was published (time.monotonic()), in publishing order."""

    stamps: list[int] = field(default_factory=list)
    walls: list[float] = field(default_factory=list)

    def add(self, stamp_ns: int, wall: float) -> None:
        self.stamps.append(stamp_ns)
        self.walls.append(wall)

    def published_at(self, stamp_ns: int) -> float | None:
        """When the newest message stamped at or before `stamp_ns` went out."""
        i = bisect.bisect_right(self.stamps, stamp_ns) - 1
        return self.walls[i] if i >= 0 else None


def dataset_entries(dataset: Dataset) -> list[str]:
    """The dataset's classes as vocabulary entries, with its synonyms."""
    synonyms = dataset.info.synonyms
    return [f"{name}: {', '.join(synonyms[name])}" if synonyms.get(name) else name for name in dataset.classes]


def unsettled(client: GraphClient) -> str | None:
    """Why the graph has not caught up yet, or None once every node has: the fusion map is published, the
    semantic map and objects hold it, no block is stale, and the grounding node holds the newest objects."""
    fusion, seg, ground = (client.diagnostics(n) for n in NODES)
    missing = [name for name, values in zip(NODES, (fusion, seg, ground)) if not values]
    if missing:
        return f"no diagnostics from {', '.join(missing)}"
    checks = (
        ("fusion map published", fusion.get("published.version") == fusion.get("map.version")),
        ("no reading waits for TF", fusion.get("queue.waiting_for_tf") == "0"),
        ("semantic map holds the fusion map", seg.get("semantic_map.stamp_ns") == fusion.get("map.stamp_ns")),
        ("no stale block", seg.get("stale_blocks") == "0"),
        ("no map waits for labelling", seg.get("queue.maps_waiting") == "0"),
        ("objects hold the semantic map", seg.get("objects.version") == seg.get("semantic.version")),
        ("grounding holds the newest objects", ground.get("objects.stamp_ns") == seg.get("semantic_map.stamp_ns")
         and ground.get("objects") == seg.get("objects")),
    )
    unmet = [what for what, ok in checks if not ok]
    return "; ".join(f"not yet: {what}" for what in unmet) or None


def stage_latencies(values: dict[str, str]) -> dict[str, dict[str, float]]:
    """{stage: {p50_ms, p90_ms, max_ms, count}} from a node's diagnostics."""
    stages: dict[str, dict[str, float]] = {}
    for key, value in values.items():
        stage, _, stat = key.rpartition(".")
        if stat in ("p50_ms", "p90_ms", "max_ms", "count") and stage:
            stages.setdefault(stage, {})[stat] = float(value)
    return stages


def counters(values: dict[str, str], prefix: str) -> dict[str, int]:
    return {key[len(prefix):]: int(float(value)) for key, value in values.items() if key.startswith(prefix)}


def ingested_fraction(fusion: FusionNodeConfig, published: dict[str, int], received: dict[str, int]) -> float:
    """The smallest share of a sensor topic's published messages that the fusion node received (DDS drops a
    best-effort message a subscriber is too slow to take)."""
    topics = {"color": fusion.color_topic, "depth": fusion.depth_topic, "info": fusion.camera_info_topic,
              "lidar": fusion.lidar_topic}
    shares = [min(1.0, received.get(key, 0) / published[topic]) for key, topic in topics.items()
              if published.get(topic)]
    return min(shares, default=1.0)


def ground_all(client: GraphClient, queries: Sequence[str], progress: bool) -> tuple[list[Any], list[float]]:
    """Every query through /ground_object, one at a time: the responses and round-trip times (ms)."""
    responses, latencies = [], []
    for query in tqdm(queries, desc="grounding", unit="query", disable=not progress):
        response, ms = client.ground(query, max_results=1)
        responses.append(response)
        latencies.append(ms)
    return responses, latencies


def as_answer(response: Any) -> Answer:
    """A /ground_object response as the evaluation's Answer (its top candidate's score)."""
    return Answer(bool(response.success), response.message,
                  float(response.candidates[0].score) if response.success and response.candidates else None)


def top_box(response: Any) -> OrientedBox | None:
    if not response.success or not response.candidates:
        return None
    best = response.candidates[0]
    p, q, s = best.pose.pose.position, best.pose.pose.orientation, best.size
    return answer_box((p.x, p.y, p.z), (q.x, q.y, q.z, q.w), (s.x, s.y, s.z))


def run_replay_evaluation(client: GraphClient, bag: Path, dataset: Dataset, scene: str, config: PerceptionConfig,
                          rate: float = 1.0, entries: Sequence[str] | None = None, settle_timeout_s: float = 180.0,
                          progress: bool = True, planner_hz: float = PLANNER_HZ) -> tuple[dict[str, Any], LabelledMap]:
    """Replay `bag` into the graph `client` talks to, wait until it settles, and score it (see the module
    docstring). The graph labels with the dataset's classes (`entries`: default with the dataset's synonyms).
    While the bag plays, a planner asks the scene's descriptions at `planner_hz` (0: none), timed as the map
    updates. Returns the report and the final semantic map."""
    entries = dataset_entries(dataset) if entries is None else list(entries)
    expressions = scene_descriptions(dataset, scene)
    client.wait_for_graph()
    client.set_vocabulary(entries)
    log = PublishLog()
    planner = PlannerProcess([e.description for e in expressions], planner_hz).start() \
        if planner_hz > 0 and expressions else None
    try:
        stats = replay_bag(bag, rate=rate, progress=progress, wait_for_subscribers_s=30.0, on_publish=log.add)
    finally:
        if planner is not None:
            planner.stop()
    replay_end = time.monotonic()
    timeline: list[tuple[float, str | None]] = []       # (s after the replay, what the graph still waits for)

    def settled_now() -> bool:
        reason = unsettled(client)
        if not timeline or timeline[-1][1] != reason:
            timeline.append((round(time.monotonic() - replay_end, 2), reason))
        return reason is None

    try:
        settle_s = client.wait_until(settled_now, settle_timeout_s, "the graph settling after the replay")
    except GraphError as error:
        raise GraphError(f"{error} ({timeline[-1][1]})") from None
    diagnostics = {name: client.diagnostics(name) for name in NODES}
    labelled = client.semantic_map(dataset.classes)
    if labelled is None:
        raise GraphError("no semantic map was received")
    samples = list(client.map_samples)
    refresh = [s.received - published for s in samples
               if (published := log.published_at(s.stamp_ns)) is not None and s.received <= replay_end + 1e-3]
    final_stamp = int(diagnostics["fusion_node"]["map.stamp_ns"])
    caught_up = next((s.received for s in samples if s.stamp_ns >= final_stamp), replay_end)
    lag_s = max(0.0, caught_up - replay_end)
    refresh_stats = percentiles(refresh)
    # the graph kept up when its lag at the end is no more than its usual refresh latency
    processing_s = stats.wall_time_s + max(0.0, lag_s - refresh_stats["p50"])
    received = counters(diagnostics["fusion_node"], "received.")
    ingested = ingested_fraction(config.fusion_node, dict(stats.published), received)

    seg_config = config.segmentation_node
    online, coverage = online_scores(dataset, scene, labelled)
    student, space = offline_student(dataset, seg_config.student_checkpoint, seg_config.language)
    offline = offline_scores(dataset, scene, student, space)
    responses, latencies = ground_all(client, [e.description for e in expressions], progress)
    objects = client.objects()
    recall = proposal_recalls(dataset, scene, objects.objects.boxes if objects is not None else [], student, space,
                              labelled)
    cases = grounding_cases(dataset, scene, expressions, [top_box(r) for r in responses])
    online_summary, offline_summary = segmentation_summary(online), segmentation_summary(offline)
    report = {
        "bag": str(bag), "scene": scene, "rate": rate,
        "replay": {"bag_duration_s": stats.bag_duration_s, "wall_time_s": stats.wall_time_s,
                   "published": dict(stats.published)},
        "real_time_factor": stats.bag_duration_s * ingested / processing_s if processing_s > 0 else float("nan"),
        "ingested_fraction": ingested,
        "lag_after_replay_s": lag_s,
        "settled_after_replay_s": settle_s,
        "settle_timeline": [{"after_s": t, "waiting_for": reason} for t, reason in timeline],
        "semantic_map_refresh_s": refresh_stats | {"count": len(refresh)},
        "segmentation": {"online": online_summary, "offline": offline_summary, "coverage": coverage,
                         "online_minus_offline_miou": online_summary["miou"] - offline_summary["miou"],
                         "map_voxels": len(labelled.xyz)},
        "grounding": {"accuracy": grounding_accuracy(cases), "queries": len(expressions),
                      "answered": sum(bool(r.success) for r in responses),
                      "answers": answer_report([as_answer(r) for r in responses], cases),
                      "service_latency_ms": percentiles(latencies), "proposal_recall": recall,
                      "while_updating": planner.report() if planner is not None else None},
        "stages": {name: stage_latencies(values) for name, values in diagnostics.items()},
        "drops": {name: counters(values, "drops.") for name, values in diagnostics.items()},
        "received": received,
        "integrated": counters(diagnostics["fusion_node"], "integrated."),
    }
    return report, labelled
