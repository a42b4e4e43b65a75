"""`ov3d demo`: the whole online stack on one synthetic room, with the embedded defaults and no arguments.

Renders a small scene (RGB-D + LiDAR bag, ground truth, descriptions), starts the node graph in a child process,
replays the bag into it, asks grounding queries through /ground_object (among them a synonym the vocabulary does
not list), prints the answers, and writes a top-down picture of the semantic map with the answers, the labelled
map as PLY and the replay evaluation's JSON.
"""
from __future__ import annotations

import argparse
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ov3d_ros.config import MultiViewFusionConfig, SynthConfig, default_config_path, load_perception_config
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.ply import write_ply
from ov3d_ros.data.scanrefer import ReferringExpression
from ov3d_ros.evaluation.answers import RIGHT_IOU
from ov3d_ros.evaluation.online import LabelledMap, plot_top_down, scene_descriptions
from ov3d_ros.geometry.boxes import OrientedBox, box_iou

SPLIT = "demo"
DESCRIPTION_QUERIES = 3
MIN_CLASS_VOXELS = 500        # a class "is on the map" when this many voxels carry it


@dataclass(frozen=True)
class DemoQuery:
    """A question for /ground_object and the ids of the objects that answer it rightly."""

    text: str
    targets: tuple[int, ...]


def choose_queries(expressions: Sequence[ReferringExpression], labelled: LabelledMap,
                   synonyms: dict[str, tuple[str, ...]], instance_classes: dict[int, str]) -> list[DemoQuery]:
    """A few of the scene's descriptions whose target class the map shows (answered by the described object),
    and a bare synonym of the most mapped object class (the vocabulary lists names only, so the synonym is new
    to it; answered by any object of that class)."""
    counts = np.bincount(labelled.label, minlength=len(labelled.labels))
    mapped = [labelled.labels[i] for i in np.argsort(-counts) if counts[i] >= MIN_CLASS_VOXELS]
    queries: list[DemoQuery] = []
    seen: set[str] = set()
    for expression in expressions:
        if expression.object_name in mapped and expression.object_name not in seen:
            queries.append(DemoQuery(expression.description, (expression.object_id,)))
            seen.add(expression.object_name)
        if len(queries) == DESCRIPTION_QUERIES:
            break
    objects = [name for name in mapped if name not in ("wall", "floor", "ceiling") and synonyms.get(name)]
    if objects:
        targets = tuple(i for i, name in instance_classes.items() if name == objects[0])
        queries.append(DemoQuery(f"the {synonyms[objects[0]][0]}", targets))
    return queries


def judge_answer(response: Any, targets: Sequence[OrientedBox]) -> tuple[str, OrientedBox | None, bool]:
    """One line about a /ground_object answer, the box of its best candidate, and whether that box overlaps one
    of `targets` with IoU >= RIGHT_IOU."""
    from ov3d_ros.ros.replay_eval import top_box

    if not response.success:
        return f"WRONG, no answer: {response.message}", None, False
    best, box = response.candidates[0], top_box(response)
    iou = max((box_iou(box, target) for target in targets), default=0.0) if box is not None else 0.0
    right = iou >= RIGHT_IOU
    p = best.pose.pose.position
    line = (f"{'right' if right else 'WRONG'} (IoU {iou:.2f} with the described object): {best.label} "
            f"#{best.instance_id} (score {best.score:.2f}) at ({p.x:.2f}, {p.y:.2f}, {p.z:.2f}), "
            f"{best.size.x:.2f} x {best.size.y:.2f} x {best.size.z:.2f} m")
    return line, box, right


def answers_summary(right: int, asked: int) -> str:
    """The demo's closing verdict on its questions."""
    return f"{right} of {asked} right (IoU >= {RIGHT_IOU} with the described object)"


def run_demo(args: argparse.Namespace) -> int:
    from ov3d_ros.commands.replay import summary_lines, write_replay_report
    from ov3d_ros.data.synthetic.world import synthesize
    from ov3d_ros.evaluation.grounding import instance_boxes, instance_classes
    from ov3d_ros.ros.graph_client import GraphClient, GraphProcess, isolated_config
    from ov3d_ros.ros.replay_eval import run_replay_evaluation

    started = time.monotonic()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    data = out / "data"
    synth = SynthConfig(frames=args.frames, duration_s=args.duration, lidar=True, descriptions_per_object=3)
    print(f"1/4 rendering a room (seed {args.seed}): {args.frames} RGB-D frames and a LiDAR over "
          f"{args.duration:.0f} s")
    synthesize(data, SPLIT, [args.seed], synth, teacher=None, fusion=MultiViewFusionConfig(), progress=False)
    dataset = Dataset(data)
    scene = dataset.scenes(SPLIT)[0]
    config_path = isolated_config(default_config_path("perception.yaml"), out)
    print("2/4 starting the graph (fusion, segmentation, grounding) and replaying the bag")
    with GraphProcess(config_path, out / "graph.log") as graph, GraphClient("ov3d_demo") as client:
        report, labelled = run_replay_evaluation(client, data / "bags" / scene, dataset, scene,
                                                 load_perception_config(config_path), rate=args.rate,
                                                 entries=list(dataset.classes), progress=not args.quiet)
        print("3/4 asking /ground_object")
        cloud = dataset.scene_cloud(scene)
        truth = instance_boxes(cloud)
        classes = {i: dataset.classes[c] for i, c in instance_classes(cloud).items() if c < len(dataset.classes)}
        queries = choose_queries(scene_descriptions(dataset, scene), labelled, dataset.info.synonyms, classes)
        answers: list[tuple[OrientedBox, str]] = []
        right = 0
        for query in queries:
            response, ms = client.ground(query.text, max_results=3)
            line, box, correct = judge_answer(response, [truth[i] for i in query.targets if i in truth])
            right += correct
            print(f"  '{query.text}'\n    -> {line} [{ms:.0f} ms]")
            if box is not None:
                answers.append((box, query.text if len(query.text) <= 24 else query.text[:22] + "..."))
        status = graph.stop()
    print("4/4 writing the results")
    write_replay_report(report, labelled, out / "report.json")
    picture = plot_top_down(labelled, out / "semantic_map.png", f"{scene}: semantic map and answers", answers)
    write_ply(out / "semantic_map.ply", labelled.xyz, labelled.rgb,
              labelled.label if len(labelled.labels) < 255 else None)     # PLY labels are uint8
    print("\n".join(summary_lines(report)))
    print(answers_summary(right, len(queries)))
    print(f"wrote {picture}, {out / 'semantic_map.ply'} and {out / 'report.json'} "
          f"in {time.monotonic() - started:.0f} s (graph exit status {status})")
    return 0
