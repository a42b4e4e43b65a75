"""`ov3d <verb>`: the one command line of ov3d_ros. Every verb has --help; errors are one line and exit non-zero."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from ov3d_ros.config import ConfigError, PerceptionConfig, default_config_path, load_perception_config


class CliError(Exception):
    """An error to report as one line (exit status 1)."""


Handler = Callable[[argparse.Namespace], int]

def _cmd_launch(args: argparse.Namespace) -> int:
    config = Path(args.config)
    load_perception_config(config)  # fail fast, with a readable line, before any node starts
    if args.node or args.one_process:
        from ov3d_ros.ros.launcher import graph_factories, run_nodes
        return run_nodes(graph_factories([args.node] if args.node else None), params_file=config)
    from ov3d_ros.ros.launcher import run_node_processes
    return run_node_processes(PerceptionConfig.node_names(), config)


def _cmd_replay(args: argparse.Namespace) -> int:
    if args.rate <= 0:
        raise CliError(f"--rate must be positive, got {args.rate}")
    if args.planner_hz is not None and args.planner_hz < 0:
        raise CliError(f"--planner-hz must not be negative, got {args.planner_hz}")
    if args.eval is not None:
        from ov3d_ros.commands.replay import run_replay_eval
        return run_replay_eval(args)
    if args.launch or args.json or args.scene or args.planner_hz is not None:
        raise CliError("--launch, --json, --scene and --planner-hz go with --eval")
    from ov3d_ros.ros.replay import replay_bag
    stats = replay_bag(Path(args.bag), rate=args.rate, topics=args.topics, progress=not args.quiet,
                       wait_for_subscribers_s=args.wait_for_subscribers)
    counts = ", ".join(f"{topic} {n}" for topic, n in sorted(stats.published.items()))
    print(f"published {sum(stats.published.values())} messages ({counts}) in {stats.wall_time_s:.1f} s; "
          f"real-time factor {stats.real_time_factor:.2f}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.frames < 2 or args.duration <= 0 or args.rate <= 0:
        raise CliError("--frames must be at least 2, --duration and --rate positive")
    from ov3d_ros.commands.demo import run_demo
    return run_demo(args)


def _command(module: str, function: str) -> Handler:
    """The handler `ov3d_ros.commands.<module>.<function>`, imported when the verb runs (so `ov3d --help` and the
    other verbs never import torch or rclpy for it)."""
    def run(args: argparse.Namespace) -> int:
        import importlib
        return getattr(importlib.import_module(f"ov3d_ros.commands.{module}"), function)(args)
    return run


def _train(name: str, args: argparse.Namespace) -> int:
    from ov3d_ros.commands import train
    return getattr(train, name)(args)


def _bench(name: str, args: argparse.Namespace) -> int:
    from ov3d_ros.commands import bench
    return getattr(bench, name)(args)


def _graph_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(default_config_path("perception.yaml")),
                        help="perception parameter file of the graph (default: %(default)s)")


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(default_config_path("pipeline.yaml")),
                        help="pipeline YAML with the language / teacher / fusion sections (default: %(default)s)")


def _data_split_args(parser: argparse.ArgumentParser, data_help: str) -> None:
    """--data (required) and --split (default val), for the verbs that score one split of a dataset."""
    parser.add_argument("--data", required=True, help=data_help)
    parser.add_argument("--split", default="val", help="split to score (default: %(default)s)")


def _training_args(parser: argparse.ArgumentParser, data_help: str, out_help: str,
                   data_required: bool = False) -> None:
    """--data, --out, the step budgets and the time budget, shared by the training and ablation verbs."""
    parser.add_argument("--data", required=data_required, default=None, help=data_help)
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--distill-steps", type=int, default=None, help="override ggsd.distill_steps")
    parser.add_argument("--self-distill-steps", type=int, default=None, help="override ggsd.self_distill_steps")
    parser.add_argument("--train-split", default=None,
                        help="override ggsd.train_split (several splits joined by '+', e.g. train+extra)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="override ggsd.time_budget_s: train for this many minutes (the learning-rate schedule "
                             "and the stage split run on elapsed time; the step counts only set the stage shares)")


def _training_bench(benches: argparse._SubParsersAction, name: str, handler: str, text: str, description: str,
                    out_help: str) -> argparse.ArgumentParser:
    """A bench verb that trains students on a dataset: --data, --out, budgets, --quiet, --config."""
    parser = benches.add_parser(name, help=text, description=description)
    _training_args(parser, data_help="dataset root with fused features (ov3d synth / fuse)", out_help=out_help,
                   data_required=True)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _config_arg(parser)
    parser.set_defaults(run=lambda args: _bench(handler, args))
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ov3d", description="Open-vocabulary 3D perception for ROS 2.")
    verbs = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)

    launch = verbs.add_parser("launch", help="start the node graph from a perception YAML",
                              description="Start the perception node graph: one child process per node, as `ros2 "
                                          "launch ov3d_ros perception.launch.py` does (a node that exits stops the "
                                          "others); SIGINT or SIGTERM stops it cleanly.")
    launch.add_argument("--config", default=str(default_config_path("perception.yaml")),
                        help="ROS 2 parameter file (default: %(default)s)")
    where = launch.add_mutually_exclusive_group()
    where.add_argument("--one-process", action="store_true",
                       help="every node in this process (MultiThreadedExecutor): one interpreter's memory, but the "
                            "nodes share its lock, so /ground_object waits while the others run Python")
    where.add_argument("--node", choices=PerceptionConfig.node_names(), help="only this node, in this process")
    launch.set_defaults(run=_cmd_launch)

    replay = verbs.add_parser("replay", help="publish a rosbag2 (MCAP or sqlite3) into the graph, with /clock",
                              description="Publish a bag's messages at their recorded pace (scaled by --rate) "
                                          "with /clock and the QoS each topic was recorded with.")
    replay.add_argument("bag", help="bag folder (or .mcap file)")
    replay.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default: %(default)s)")
    replay.add_argument("--topics", nargs="+", default=None, help="only these topics (default: all)")
    replay.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                        help="start once every topic has a subscriber, or after S seconds (default: %(default)s)")
    replay.add_argument("--eval", metavar="DATA", default=None,
                        help="dataset root holding the bag's scene (ov3d synth layout): score the online semantic "
                             "map, grounding through /ground_object, latencies and the real-time factor")
    replay.add_argument("--scene", default=None, help="with --eval: the bag's scene id (default: the bag's name)")
    replay.add_argument("--json", default=None, metavar="OUT",
                        help="with --eval: report path (default: replay_<scene>.json), plots beside it")
    replay.add_argument("--launch", action="store_true",
                        help="with --eval: start the graph (ov3d launch --config) for the replay and stop it after")
    replay.add_argument("--planner-hz", type=float, default=None, metavar="HZ",
                        help="with --eval: a planner asks /ground_object the scene's descriptions at this rate while "
                             "the bag plays, timed as the map updates (default: 2; 0: none)")
    _graph_config_arg(replay)
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(run=_cmd_replay)

    fuse = verbs.add_parser("fuse", help="multi-view 2D feature fusion to OpenScene-layout feature files",
                            description="Project every scene point into every posed frame, keep the views that "
                                        "see it (depth test), average the 2D teacher's features over them and "
                                        "write <out>/<scene>_0.pt (OpenScene layout). Resumable per scene.")
    fuse.add_argument("--data", required=True, help="dataset root (dataset.yaml, 3d/, 2d/)")
    fuse.add_argument("--teacher", choices=["open_clip_dense", "precomputed", "simulated"], default=None,
                      help="2D teacher (default: teacher.kind of the config)")
    fuse.add_argument("--out", default=None, help="output folder (default: <data>/fused/<teacher>)")
    fuse.add_argument("--split", default=None, help="only the scenes of this split (default: all)")
    fuse.add_argument("--scenes", nargs="+", default=None, help="only these scenes")
    fuse.add_argument("--overwrite", action="store_true", help="recompute scenes whose output exists")
    _config_arg(fuse)
    fuse.set_defaults(run=_command("fuse", "run_fuse"))

    synth = verbs.add_parser("synth", help="generate the synthetic world (bags, OpenScene files, ground truth, "
                                           "descriptions)",
                             description="Render procedurally furnished rooms into a dataset root: scene clouds "
                                         "with labels, RGB-D frame folders, MCAP bags, fused simulated-teacher "
                                         "features, PLY, previews, boxes and ScanRefer-style descriptions.")
    synth.add_argument("--out", required=True, help="dataset root to write (created or extended)")
    synth.add_argument("--scenes", type=int, help="number of scenes (seeds S, S+1, ...)")
    synth.add_argument("--seed", type=int, help="seed of the first scene")
    synth.add_argument("--split", default="train", help="split the scenes go to (default: %(default)s)")
    synth.add_argument("--benchmark", nargs="?", const="", default=None, metavar="FILE",
                       help="generate both splits of the fixed benchmark (default file: config/benchmark.yaml)")
    synth.add_argument("--frames", type=int, help="camera frames per scene (default 30)")
    synth.add_argument("--width", type=int, help="image width (default 640)")
    synth.add_argument("--height", type=int, help="image height (default 480)")
    synth.add_argument("--duration", type=float, help="seconds of the bag's loop (default 15)")
    synth.add_argument("--lidar", action="store_true", help="also render a LiDAR on a robot")
    synth.add_argument("--teacher-noise", type=float, help="simulated 2D teacher noise level (default 1.0)")
    synth.add_argument("--no-fuse", action="store_true", help="skip fusing the simulated teacher's features")
    synth.add_argument("--no-bag", action="store_true", help="skip writing bags")
    synth.add_argument("--compressed-images", action="store_true",
                       help="bags carry JPEG colour on <topic>/compressed and compressedDepth PNG depth on "
                            "<topic>/compressedDepth (replay with fusion_node color_transport: compressed, "
                            "depth_transport: compressedDepth)")
    _config_arg(synth)
    synth.set_defaults(run=_command("synth", "run_synth"))

    groups = {"train": "training, with checkpoints, resume, logs and progress",
              "eval": "metrics as JSON plus plots", "bench": "benchmarks that print numbers beside a reference"}
    sub_parsers = {}
    for verb, text in groups.items():
        group = verbs.add_parser(verb, help=text, description=text)
        sub_parsers[verb] = group.add_subparsers(dest="subverb", metavar="<what>", required=True)

    seg = sub_parsers["eval"].add_parser(
        "seg", help="semantic segmentation mIoU / mAcc of per-point features against ground truth",
        description="Label every point with the nearest text embedding of the dataset's classes and score it: "
                    "mIoU, mAcc, per-class IoU, head / common / tail, a confusion-matrix PNG and a per-class chart.")
    _data_split_args(seg, "dataset root (dataset.yaml, 3d/)")
    source = seg.add_mutually_exclusive_group(required=True)
    source.add_argument("--fused", help="fused 2D features: a name under <data>/fused/ or a folder (2D fusion)")
    source.add_argument("--features", help="per-point features: a folder of <scene>.pt/.npy or one such file")
    source.add_argument("--checkpoint", help="a trained 3D student checkpoint ('default' = the shipped one)")
    seg.add_argument("--no-colour", action="store_true",
                     help="with --checkpoint: withhold the scenes' colours, as from a LiDAR-only map")
    seg.add_argument("--fused-map", nargs="?", const="default", metavar="PERCEPTION_YAML",
                     help="with --checkpoint: run the student on the map the fusion node builds from each scene's "
                          "RGB-D frames (its parameters from this perception file, default the packaged one), as "
                          "the running graph does, not on the scene's clean cloud")
    seg.add_argument("--superpoint-vote", action="store_true",
                     help="vote the labels inside superpoints of the labelled cloud (the scene's, or the fused "
                          "map's), as the semantic map labels its voxels")
    seg.add_argument("--json", required=True, help="where to write the JSON report (plots go beside it)")
    _config_arg(seg)
    seg.set_defaults(run=_command("eval_seg", "run_eval_seg"))

    ground = sub_parsers["eval"].add_parser(
        "ground", help="grounding Acc@0.25 / Acc@0.5 (overall / unique / multiple) on a split's descriptions",
        description="Label each scene's map (2D fusion or a student), cut it into object proposals, and score the "
                    "grounders on scanrefer/<split>.json: a random proposal of the predicted class, the coarse stage, "
                    "and the teacher, distilled and fully supervised checkpoints given; also the proposals' recall "
                    "of the targets and each method's time per query.")
    _data_split_args(ground, "dataset root with scanrefer/<split>.json")
    ground.add_argument("--map", default="fused", help="'fused' (2D fusion) or a student checkpoint (or 'default')")
    ground.add_argument("--fused", default=None, help="fused features under <data>/fused/ (default: the config's)")
    ground.add_argument("--teacher", default=None, help="coarse-to-fine teacher checkpoint (teacher.pt) to score")
    ground.add_argument("--grounder", default=None, help="distilled grounder checkpoint to score ('default' = shipped)")
    ground.add_argument("--supervised", default=None, help="fully supervised grounder checkpoint to score")
    ground.add_argument("--class-weight", type=float, default=None,
                        help="coarse stage: class vs feature weight (default: the config's)")
    ground.add_argument("--seed", type=int, default=0, help="seed of the random baseline")
    ground.add_argument("--json", required=True, help="where to write the JSON report (a PNG goes beside it)")
    _config_arg(ground)
    ground.set_defaults(run=_command("eval_ground", "run_eval_ground"))

    fusion_bench = sub_parsers["bench"].add_parser(
        "fusion", help="points fused per second: ours vs a per-frame numpy reference",
        description="Fuse a synthetic 100k-point scene with 30 frames with our torch implementation and a "
                    "straightforward per-frame numpy reference; print speed, their ratio and peak memory.")
    fusion_bench.add_argument("--points", type=int, default=100_000)
    fusion_bench.add_argument("--frames", type=int, default=30)
    fusion_bench.add_argument("--dim", type=int, default=512, help="feature dimension (default: %(default)s)")
    fusion_bench.add_argument("--json", default=None, help="also write the numbers as JSON")
    fusion_bench.set_defaults(run=lambda args: _bench("run_bench_fusion", args))

    noise = sub_parsers["bench"].add_parser(
        "teacher-noise", help="2D-fusion mIoU of the simulated teacher against its noise level",
        description="Fuse the simulated teacher on a split at several noise levels and score each: shows how "
                    "mIoU moves with the noise and checks the calibration of the default level.")
    noise.add_argument("--data", required=True, help="dataset root made by `ov3d synth`")
    noise.add_argument("--split", default="val")
    noise.add_argument("--levels", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5, 2.0])
    noise.add_argument("--json", default=None, help="write the table as JSON and a PNG curve beside it")
    _config_arg(noise)
    noise.set_defaults(run=lambda args: _bench("run_bench_teacher_noise", args))

    ggsd = sub_parsers["train"].add_parser(
        "ggsd", conflict_handler="resolve", help="train the 3D student with GGSD (distillation + EMA self-distillation)",
        description="Geometry-guided distillation from fused 2D features, then EMA self-distillation with "
                    "superpoint voting; every stage is a switch in the ggsd section of the config (plain 2D->3D "
                    "distillation: superpoint_loss false, self_distillation false). Resumes from <out>/last.pt.")
    _training_args(ggsd, data_help="dataset root (default: ggsd.data of the config)",
                   out_help="run folder: checkpoints, log.csv, tensorboard/")
    ggsd.add_argument("--restart", action="store_true", help="ignore an existing last.pt and start over")
    _config_arg(ggsd)
    ggsd.set_defaults(run=lambda args: _train("run_train_ggsd", args), plain_distillation=False)
    distill = sub_parsers["train"].add_parser(
        "distill", parents=[ggsd], add_help=False,
        help="plain 2D->3D distillation (OpenScene's L_p only): ggsd with its geometric parts switched off",
        description="OpenScene-style pixel-point distillation: the ggsd trainer with superpoint_loss, "
                    "self_distillation and superpoint_voting off, whatever the config says.")
    distill.set_defaults(run=lambda args: _train("run_train_ggsd", args), plain_distillation=True)

    recipes = sub_parsers["bench"].add_parser(
        "student-recipes", help="student training recipes, each trained for the same wall-clock time",
        description="Train the student under each recipe (loss, inputs, voxel size, crops, batch...) for --minutes "
                    "of step time and score it on the first training scenes and on the val split: steps, s/step, "
                    "mIoU, classes labelled right, tail mIoU; recipes.json and recipes.png (val mIoU against "
                    "training hours).")
    recipes.add_argument("--data", required=True, help="dataset root with fused features (ov3d synth / fuse)")
    recipes.add_argument("--out", default="runs/recipes", help="folder for the runs, recipes.json and recipes.png")
    recipes.add_argument("--minutes", type=float, default=5.0, help="training time per recipe (default: %(default)s)")
    recipes.add_argument("--rows", nargs="+", metavar="NAME", help="only these recipes (names as printed)")
    recipes.add_argument("--train-scenes", type=int, default=2, help="training scenes scored (default: %(default)s)")
    recipes.add_argument("--quiet", action="store_true", help="no progress bars")
    _config_arg(recipes)
    recipes.set_defaults(run=lambda args: _bench("run_bench_student_recipes", args))

    _training_bench(sub_parsers["bench"], "ggsd-ablation", "run_bench_ggsd_ablation",
                    "GGSD's Table 4 on the benchmark: 2D fusion and four trained rows, one budget",
                    "Train pixel-point distillation, geometry-guided distillation, + EMA self-distillation and full "
                    "GGSD with one budget (the stage-2 rows resume from the geometry-guided checkpoint) and score "
                    "each on the val split beside 2D fusion. A row cut off part way resumes from its last.pt.",
                    "folder for the four runs and ablation.json").add_argument(
        "--restart", action="store_true", help="train every row from scratch (ignore the rows' last.pt)")

    vlg = sub_parsers["train"].add_parser(
        "vlg", help="3DSS-VLG: pseudo labels from scene-level labels, adapter, soft guidance of the student",
        description="Weak supervision from scene-level labels (the vlg section of the config; the student stage "
                    "uses the ggsd section's optimiser and crops): 'pseudo' writes <out>/pseudo/<scene>.npz and "
                    "scores them on the val split, 'adapter' trains <out>/adapter.pt on them, 'guidance' trains "
                    "the 3D student towards the frozen adapter in <out>/student/, 'all' runs the three.")
    vlg.add_argument("--stage", choices=["pseudo", "adapter", "guidance", "all"], default="all")
    vlg.add_argument("--data", default=None, help="dataset root (default: ggsd.data of the config)")
    vlg.add_argument("--out", required=True, help="run folder: pseudo/, adapter.pt, student/")
    vlg.add_argument("--labels", default=None, help="scene-level label file (default: vlg.scene_labels)")
    vlg.add_argument("--guidance-steps", type=int, default=None, help="override vlg.guidance_steps")
    vlg.add_argument("--restart", action="store_true", help="student stage: ignore an existing last.pt")
    _config_arg(vlg)
    vlg.set_defaults(run=lambda args: _train("run_train_vlg", args))

    grounding = sub_parsers["train"].add_parser(
        "grounding", help="weakly supervised grounding: coarse-to-fine teacher, distilled and supervised grounders",
        description="WS-3DVG from (scene, sentence) pairs (the grounding section of the config): 'teacher' trains "
                    "the keyword reconstructor of the coarse-to-fine teacher (<out>/teacher.pt), 'distill' the "
                    "two-stage grounder from the teacher's ranked candidates plus a MIL loss (<out>/grounder.pt), "
                    "'supervised' the same grounder on the true targets as an upper bound (<out>/supervised.pt); "
                    "'all' runs the three. Proposals come from maps labelled by the fused 2D features.")
    grounding.add_argument("--stage", choices=["teacher", "distill", "supervised", "all"], default="all")
    grounding.add_argument("--data", default=None, help="dataset root (default: grounding.data of the config)")
    grounding.add_argument("--out", required=True, help="run folder: checkpoints and <stage>_log.csv")
    _config_arg(grounding)
    grounding.set_defaults(run=lambda args: _train("run_train_grounding", args))

    grounding_bench = sub_parsers["bench"].add_parser(
        "grounding", help="latency percentiles of the grounding engine on a map of --objects objects, one core",
        description="Build a synthetic map of --objects objects over the benchmark's vocabulary and time the "
                    "grounding engine on --queries distinct queries (validation, parsing, text encoding, ranking) "
                    "on one thread; prints and writes the percentiles per stage.")
    grounding_bench.add_argument("--objects", type=int, default=200)
    grounding_bench.add_argument("--queries", type=int, default=300)
    grounding_bench.add_argument("--checkpoint", default="default",
                                 help="distilled grounder ('default' = shipped; 'coarse' = the coarse stage only)")
    grounding_bench.add_argument("--seed", type=int, default=0)
    grounding_bench.add_argument("--json", default=None, help="also write the numbers as JSON")
    _config_arg(grounding_bench)
    grounding_bench.set_defaults(run=lambda args: _bench("run_bench_grounding", args))

    relations_bench = sub_parsers["bench"].add_parser(
        "relations", help="grounding accuracy per spatial relation on generated probe maps, without and with the "
                          "relation module",
        description="Generate --probes small maps per spatial relation (left, right, in front of, behind, between, "
                    "next to, on, above, under, largest, smallest, tallest, shortest, closest, farthest), each with "
                    "a target that only that relation tells apart from the others of its class, and ground their "
                    "sentences with the coarse stage and the distilled grounder, each without and with the "
                    "relation module; prints the share answered right per relation.")
    relations_bench.add_argument("--probes", type=int, default=50, help="probes per relation (default: %(default)s)")
    relations_bench.add_argument("--seed", type=int, default=0)
    relations_bench.add_argument("--checkpoint", default="default",
                                 help="distilled grounder ('default' = shipped; 'coarse' = the coarse stage only)")
    relations_bench.add_argument("--json", default=None, help="also write the numbers as JSON")
    _config_arg(relations_bench)
    relations_bench.set_defaults(run=lambda args: _bench("run_bench_relations", args))

    vlg_bench = _training_bench(
        sub_parsers["bench"], "vlg", "run_bench_vlg",
        "3DSS-VLG beside 2D fusion, its own stages, GGSD and their combination, one budget",
        "On the val split: 2D fusion, the pseudo labels, the adapter alone, full 3DSS-VLG (student), the GGSD student "
        "and the combination (adapter targets + GGSD with scene-label masking in its superpoint voting), all "
        "students trained with the ggsd budget.", "folder for the runs and vlg.json")
    vlg_bench.add_argument("--ggsd-checkpoint", default=None,
                           help="a GGSD student trained with the same budget (e.g. the ablation's full row) "
                                "instead of training one")

    superpoints = sub_parsers["bench"].add_parser(
        "superpoints", help="superpoint purity on a split and the time for --points points on one thread",
        description="Purity (share of labelled points whose superpoint's majority label is theirs) per scene of a "
                    "split, from <data>/superpoints/ (computed where missing), then the time to compute the "
                    "superpoints of the split's first scene cut to --points points, on one thread.")
    _data_split_args(superpoints, "dataset root")
    superpoints.add_argument("--points", type=int, default=100_000)
    superpoints.add_argument("--json", default=None, help="also write the numbers as JSON")
    superpoints.set_defaults(run=lambda args: _bench("run_bench_superpoints", args))

    student = sub_parsers["bench"].add_parser(
        "student", help="student forward+backward / inference time and peak memory: ours vs spconv",
        description="Build the student and an identical spconv network with the same weights on a room-like "
                    "~100k-voxel input; time each in its own process (spconv is only correct at 1 thread).")
    student.add_argument("--voxels", type=int, default=100_000)
    student.add_argument("--preset", default="default")
    student.add_argument("--threads", type=int, default=2)
    student.add_argument("--json", default=None)
    student.set_defaults(run=lambda args: _bench("run_bench_student", args))

    text = sub_parsers["bench"].add_parser(
        "text", help="time to embed a ~200-label vocabulary, cold and from the cache",
        description="Load the configured text encoder and embed the synthetic world's 53 classes with their "
                    "synonyms (~200 texts) into an empty cache, then again from the cache.")
    _config_arg(text)
    text.set_defaults(run=lambda args: _bench("run_bench_text", args))

    service = sub_parsers["bench"].add_parser(
        "service", help="/ground_object round trips through DDS on a map of --objects objects",
        description="Start the graph (ov3d launch --config) in a child process, publish a synthetic map of --objects "
                    "objects to the grounding node, and time --queries distinct queries through /ground_object "
                    "from this process (DDS both ways, text encoding included).")
    service.add_argument("--objects", type=int, default=200)
    service.add_argument("--queries", type=int, default=300)
    service.add_argument("--seed", type=int, default=0)
    service.add_argument("--json", default=None, help="also write the numbers as JSON")
    _graph_config_arg(service)
    service.set_defaults(run=lambda args: _bench("run_bench_service", args))

    soak = sub_parsers["bench"].add_parser(
        "soak", help="loop a bag into the graph for --minutes: resident memory and service calls",
        description="Start the graph with a voxel budget of --max-voxels, loop BAG (re-stamped each pass) at --rate "
                    "for --minutes, sample the graph's resident memory every 5 s and, once it holds objects, call "
                    "/ground_object at --call-hz; write the memory curve (JSON + PNG), the calls' latency and "
                    "the dropped or failed calls.")
    soak.add_argument("bag", help="bag folder (or .mcap file)")
    soak.add_argument("--minutes", type=float, default=10.0)
    soak.add_argument("--rate", type=float, default=2.0)
    soak.add_argument("--max-voxels", type=int, default=150_000, help="fusion_node.max_voxels for the soak")
    soak.add_argument("--call-hz", type=float, default=20.0,
                      help="/ground_object calls a second, as a planner would make them (default 20)")
    soak.add_argument("--json", default="soak.json", help="report path; the PNG goes beside it")
    _graph_config_arg(soak)
    soak.set_defaults(run=lambda args: _bench("run_bench_soak", args))

    importer = verbs.add_parser(
        "import", help="a recorded bag (TF + colour / depth / camera info) as a scene of a training dataset",
        description="Fuse the bag's posed RGB-D frames (raw or compressed) into the map the fusion node would "
                    "build and write it as a scene cloud, with the frames in the ScanNet-export layout and the scene "
                    "in dataset.yaml, so that `ov3d fuse` and `ov3d train ...` run on it unchanged.")
    importer.add_argument("bag", help="rosbag2 folder or file (MCAP or sqlite3)")
    importer.add_argument("--out", required=True, help="dataset root (created or extended)")
    importer.add_argument("--split", default="train", help="split of the scene (default: %(default)s)")
    importer.add_argument("--scene", help="scene id (default: the bag's name)")
    importer.add_argument("--labels", help="scene-level labels, comma-separated class names (for 3DSS-VLG; "
                                           "merged into <out>/scene_labels.yaml)")
    importer.add_argument("--classes", help="a new dataset's classes: a text file, one 'name' or 'name: synonym, "
                                            "...' per line (default: the built-in indoor vocabulary)")
    importer.add_argument("--stride", type=int, default=1, help="use every n-th frame (default: %(default)s)")
    _graph_config_arg(importer)
    importer.set_defaults(run=_command("import_bag", "run_import"))

    view = verbs.add_parser("view", help="a live Foxglove view of the running graph (WebSocket, optional MCAP)",
                            description="Relay the semantic map, the instance boxes, the last /ground_object "
                                        "answer, the camera image and the diagnostics to a Foxglove WebSocket server "
                                        "(open ws://HOST:PORT in Foxglove with config/ov3d.foxglove.json); with "
                                        "--mcap also record them. SIGINT stops it.")
    view.add_argument("--port", type=int, default=8765, help="WebSocket port (default: %(default)s; 0 = any)")
    view.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s; 0.0.0.0 "
                                                          "for other machines)")
    view.add_argument("--mcap", help="also record the channels to this MCAP file")
    _graph_config_arg(view)
    view.set_defaults(run=_command("view", "run_view_command"))

    doctor = verbs.add_parser("doctor", help="check the ROS install, weights and input topics the graph needs",
                              description="Print the ROS distribution and RMW, the DDS domain, whether "
                                          "torchsparse / CUDA are usable, which weights load and their text space, "
                                          "and for each input topic of the parameter file whether something "
                                          "publishes it and at what rate. Exit status 1 when the graph could not "
                                          "work (a failed check).")
    _graph_config_arg(doctor)
    doctor.add_argument("--listen", type=float, default=3.0,
                        help="seconds to count messages on each input topic (default: %(default)s)")
    doctor.add_argument("--no-topics", action="store_true",
                        help="check the install and the weights only (no DDS traffic)")
    doctor.set_defaults(run=_command("doctor", "run_doctor"))

    demo = verbs.add_parser("demo", help="the whole online stack on a synthetic room: replay, grounding answers, "
                                         "semantic-map picture and PLY",
                            description="Render a small synthetic room (RGB-D + LiDAR bag), start the node graph, "
                                        "replay the bag, ask grounding queries (one a synonym the vocabulary does "
                                        "not list), print the answers and write a top-down semantic-map PNG, a PLY "
                                        "and the replay evaluation's JSON into --out. Needs no arguments.")
    demo.add_argument("--out", default="runs/demo", help="output folder, replaced (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the room (default: %(default)s)")
    demo.add_argument("--frames", type=int, default=45, help="RGB-D frames (default: %(default)s)")
    demo.add_argument("--duration", type=float, default=15.0, help="seconds of bag (default: %(default)s)")
    demo.add_argument("--rate", type=float, default=1.0, help="replay speed factor (default: %(default)s)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    name = " ".join(filter(None, [args.verb, getattr(args, "subverb", None)]))
    try:
        return int(args.run(args) or 0)
    except (CliError, ConfigError, OSError, ValueError, LookupError) as exc:
        print(f"ov3d {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
