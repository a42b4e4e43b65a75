"""`ov3d eval ground`: proposals from a labelled map of each scene, then Acc@0.25 / Acc@0.5 (overall / unique /
multiple) and the time per query of every grounder given, beside the proposals' recall of the targets."""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from ov3d_ros.config import ConfigError, load_pipeline_config
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.evaluation.grounding import grounding_accuracy, score_case
from ov3d_ros.evaluation.reports import write_json
from ov3d_ros.grounding.engine import resolve_grounder_path
from ov3d_ros.grounding.grounders import DistilledGrounder, coarse_ranking, load_grounding_model
from ov3d_ros.training.grounding import GroundingData, GroundingExample, grounding_setup, load_grounding_data, \
    teacher_from

GROUPS = ("overall", "unique", "multiple")
THRESHOLDS = ("@0.25", "@0.5")
# example -> index of the object chosen in its scene (None: the scene has no objects)
Picker = Callable[[GroundingExample], "int | None"]


def _pickers(args: argparse.Namespace, data: GroundingData,
             class_weight: float) -> tuple[dict[str, Picker], dict[str, str]]:
    """The methods to score, and the runtime each grounder network runs in."""
    rng = np.random.default_rng(args.seed)

    def random_of_class(example: GroundingExample) -> int | None:
        labels = data.scenes[example.scene].objects.labels
        same = np.flatnonzero(labels == example.query.parsed.target_label)
        pool = same if len(same) else np.arange(len(labels))
        return int(pool[rng.integers(len(pool))]) if len(pool) else None

    def coarse(example: GroundingExample) -> int | None:
        return int(np.argmax(coarse_ranking(example.coarse, class_weight))) if len(example.coarse) else None

    pickers: dict[str, Picker] = {"random proposal of the predicted class": random_of_class,
                                  "coarse stage only": coarse}
    if args.teacher:
        model, content = load_grounding_model(args.teacher, "reconstructor")
        teacher = teacher_from(model, content)

        def coarse_to_fine(example: GroundingExample) -> int | None:
            chosen, log_posterior = teacher.posterior(example.query, data.scenes[example.scene])
            return int(chosen[np.argmax(log_posterior)]) if len(chosen) else None
        pickers["coarse-to-fine teacher"] = coarse_to_fine
    runtimes = {}
    for name, path in (("distilled grounder", args.grounder), ("fully supervised grounder", args.supervised)):
        if path:
            grounder = DistilledGrounder(load_grounding_model(resolve_grounder_path(path), "grounder")[0])
            pickers[name] = _grounder_picker(grounder, data)
            runtimes[name] = grounder.runtime
    return pickers, runtimes


def _run_picker(pick: Picker, data: GroundingData, name: str) -> tuple[list[int | None], float]:
    """A picker's choice for every example of the split, and its mean ms per query (the choosing only)."""
    choices, elapsed = [], 0.0
    for example in tqdm(data.examples, desc=name, unit="query", leave=False):
        start = time.perf_counter()
        choices.append(pick(example))
        elapsed += time.perf_counter() - start
    return choices, 1000.0 * elapsed / max(len(data.examples), 1)


def _grounder_picker(grounder: DistilledGrounder, data: GroundingData) -> Picker:
    def pick(example: GroundingExample) -> int | None:
        scores = grounder.scores(example.query, data.scenes[example.scene], example.coarse)
        return int(np.argmax(scores)) if len(scores) else None
    return pick


def run_eval_ground(args: argparse.Namespace) -> int:
    from ov3d_ros.evaluation.plots import plot_method_bars

    config = load_pipeline_config(args.config)
    if args.class_weight is not None and not 0 <= args.class_weight <= 1:
        raise ConfigError(f"--class-weight must be in [0, 1], got {args.class_weight}")
    if args.fused:
        config = dataclasses.replace(config, grounding=dataclasses.replace(config.grounding, fused=args.fused))
    dataset = Dataset(Path(args.data))
    setup = grounding_setup(dataset, config, args.map)
    data = load_grounding_data(dataset, args.split, setup, config.grounding.neighbours)
    pickers, runtimes = _pickers(args, data, args.class_weight if args.class_weight is not None else
                                 config.grounding.class_weight)
    torch.set_num_threads(1)                   # per-query times on one core, as a service answers
    table, timing = {}, {}
    for name, pick in pickers.items():
        choices, timing[name] = _run_picker(pick, data, name)
        table[name] = grounding_accuracy([
            score_case(example.eval_type, None if chosen is None else data.scenes[example.scene].objects.boxes[chosen],
                       example.target) for example, chosen in zip(data.examples, choices)])
    recall = data.recall
    print(f"grounding on {args.split}: {len(data.scenes)} scenes, {len(data.examples)} expressions; map: {args.map}; "
          f"proposal recall of the targets " + ", ".join(f"{k} {100 * v:.1f}" for k, v in recall.items()))
    print(f"{'method':<40}" + "".join(f"{g + ' ' + t:>15}" for g in GROUPS for t in THRESHOLDS) + f"{'ms/query':>10}")
    for name, groups in table.items():
        print(f"{name:<40}" + "".join(f"{groups.get(g, {}).get(f'acc{t}', float('nan')):>15.1f}"
                                      for g in GROUPS for t in THRESHOLDS) + f"{timing[name]:>10.2f}")
    report = {"split": args.split, "map": args.map, "scenes": data.scene_ids, "proposal_recall": recall,
              "methods": table, "ms_per_query": timing, "runtimes": runtimes,
              "note": "ms/query: ranking one query's objects on one thread of this machine (query embeddings "
                      "precomputed)"}
    if args.grounder:
        eager = DistilledGrounder(load_grounding_model(resolve_grounder_path(args.grounder), "grounder")[0], "torch")
        timing["distilled grounder in PyTorch eager"] = _run_picker(_grounder_picker(eager, data), data,
                                                                    "distilled grounder in PyTorch eager")[1]
        print(f"distilled grounder: {timing['distilled grounder']:.2f} ms/query in {runtimes['distilled grounder']}, "
              f"{timing['distilled grounder in PyTorch eager']:.2f} in PyTorch eager")
    if "coarse-to-fine teacher" in timing and "distilled grounder" in timing:
        report["teacher_over_distilled_time"] = {
            name: timing["coarse-to-fine teacher"] / timing[name]
            for name in ("distilled grounder", "distilled grounder in PyTorch eager")}
        print("the distilled grounder ranks " + ", ".join(
            f"{ratio:.1f}x faster than its teacher ({name})"
            for name, ratio in report["teacher_over_distilled_time"].items()))
    out = Path(args.json)
    write_json(out, report)
    plot_method_bars(list(table), {f"overall Acc{t}": [table[m]["overall"][f"acc{t}"] for m in table]
                                   for t in THRESHOLDS}, "%", out.with_suffix(".png"))
    print(f"report: {out} (+ .png)")
    return 0

