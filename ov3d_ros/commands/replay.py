"""`ov3d replay BAG --eval DATA`: replay into the graph (started here with --launch, or already running) and
score it; JSON plus a top-down picture of the semantic map and the per-class IoU online against offline."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ov3d_ros.config import load_perception_config
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.evaluation.online import LabelledMap, plot_top_down
from ov3d_ros.evaluation.plots import plot_method_bars, plot_reliability
from ov3d_ros.evaluation.reports import write_json


def write_replay_report(report: dict[str, Any], labelled: LabelledMap, out_json: Path) -> None:
    """The JSON and its pictures beside it (`<stem>_map.png`, `<stem>_iou.png`, `<stem>_reliability.png`)."""
    seg = report["segmentation"]
    title = f"{report['scene']}: online mIoU {seg['online']['miou']:.1f} (offline {seg['offline']['miou']:.1f})"
    map_png = plot_top_down(labelled, out_json.with_name(f"{out_json.stem}_map.png"), title)
    classes = sorted(set(seg["online"]["per_class_iou"]) | set(seg["offline"]["per_class_iou"]))
    iou_png = plot_method_bars(classes, {name: [seg[name]["per_class_iou"].get(c, 0.0) for c in classes]
                                         for name in ("online", "offline")}, "IoU (%)",
                               out_json.with_name(f"{out_json.stem}_iou.png"))
    reliability_png = plot_reliability(report["grounding"]["answers"],
                                       out_json.with_name(f"{out_json.stem}_reliability.png"))
    report["plots"] = {"map": map_png.name, "per_class_iou": iou_png.name, "reliability": reliability_png.name}
    write_json(out_json, report)


def _while_updating(calls: dict[str, Any] | None) -> str:
    if calls is None:
        return "no /ground_object calls while the map updated"
    latency, failed = calls["latency_ms"], sum(calls["failed"].values())
    return (f"/ground_object while the map updated ({calls['call_hz']:g} Hz): p50 {latency['p50']:.1f} ms, p99 "
            f"{latency['p99']:.1f} ms; {calls['answered']} answered, {failed} refused, {calls['dropped']} dropped")


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The report's headline numbers, one per line."""
    seg, ground = report["segmentation"], report["grounding"]
    answers = ground["answers"]
    overall = ground["accuracy"]["overall"]
    refresh, service = report["semantic_map_refresh_s"], ground["service_latency_ms"]
    return [
        f"scene {report['scene']}: {report['replay']['bag_duration_s']:.1f} s of bag at rate {report['rate']}",
        f"real-time factor {report['real_time_factor']:.2f}; semantic map refresh p50 {refresh['p50']:.2f} s, "
        f"p90 {refresh['p90']:.2f} s; settled {report['settled_after_replay_s']:.1f} s after the replay",
        f"mIoU online {seg['online']['miou']:.1f} vs offline {seg['offline']['miou']:.1f} "
        f"(coverage {100 * seg['coverage']:.1f} %)",
        f"grounding Acc@0.25 {overall['acc@0.25']:.1f}, Acc@0.5 {overall['acc@0.5']:.1f} over "
        f"{ground['queries']} descriptions ({ground['answered']} answered); /ground_object p50 "
        f"{service['p50']:.1f} ms, p99 {service['p99']:.1f} ms",
        _while_updating(ground["while_updating"]),
        "proposal recall@0.25 of the described objects online {:.1f} % vs offline {:.1f} %".format(
            *(100 * ground["proposal_recall"][where]["recall@0.25"] for where in ("online", "offline")))
        + "; of the objects found offline, online missed: "
        + ", ".join(f"{reason} {count}" for reason, count in ground["proposal_recall"]["missed_online"].items()),
        f"answers right {100 * answers['precision_answered']:.1f} % of the time; "
        + ", ".join(f"{kind} {count}" for kind, count in answers["kinds"].items()),
    ]


def run_replay_eval(args: argparse.Namespace) -> int:
    import tempfile

    from ov3d_ros.ros.graph_client import GraphClient, GraphProcess, isolated_config
    from ov3d_ros.ros.replay_eval import PLANNER_HZ, run_replay_evaluation

    bag, dataset = Path(args.bag), Dataset(args.eval)
    scene = args.scene or bag.name
    dataset.info.split_of(scene)                      # an unknown scene fails here, with the known ones named
    config_path = Path(args.config)
    config = load_perception_config(config_path)
    out_json = Path(args.json) if args.json else Path(f"replay_{scene}.json")
    with tempfile.TemporaryDirectory() as state:
        # a graph started here begins empty and leaves no snapshot behind
        graph = GraphProcess(isolated_config(config_path, state), out_json.with_name(f"{out_json.stem}_graph.log")
                             ).start() if args.launch else None
        try:
            with GraphClient("ov3d_evaluator") as client:
                report, labelled = run_replay_evaluation(
                    client, bag, dataset, scene, config, rate=args.rate, progress=not args.quiet,
                    planner_hz=PLANNER_HZ if args.planner_hz is None else args.planner_hz)
        finally:
            if graph is not None:
                graph.stop()
    write_replay_report(report, labelled, out_json)
    print("\n".join(summary_lines(report)))
    print(f"wrote {out_json}")
    return 0
