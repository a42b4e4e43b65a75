"""`ov3d <verb>`: the one command line of ov3d_ros. Every verb has --help; errors are one line and exit non-zero."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from ov3d_ros.config import ConfigError, default_config_path, load_perception_config


class CliError(Exception):
    """An error to report as one line (exit status 1)."""


# verb -> (help, issue that brings it) for verbs that are part of the contract but not built yet
PLANNED = {
    "demo": ("make a small synthetic scene bag, run the graph on it, ask grounding queries", 8),
    "synth": ("generate the synthetic world (bags, OpenScene files, ground truth, descriptions)", 4),
    "fuse": ("multi-view 2D feature fusion to OpenScene-layout feature files", 3),
    "train": ("training: distill, ggsd, vlg, grounding", 5),
    "eval": ("metrics as JSON plus plots: seg, ground", 3),
    "bench": ("benchmarks that print numbers beside a reference", 3),
}


def _cmd_launch(args: argparse.Namespace) -> int:
    config = Path(args.config)
    load_perception_config(config)  # fail fast, with a readable line, before any node starts
    from ov3d_ros.ros.launcher import graph_factories, run_nodes
    return run_nodes(graph_factories(), params_file=config)


def _cmd_replay(args: argparse.Namespace) -> int:
    if args.eval is not None:
        raise CliError("--eval is not built yet; issue #8 brings replay evaluation")
    if args.rate <= 0:
        raise CliError(f"--rate must be positive, got {args.rate}")
    from ov3d_ros.ros.replay import replay_bag
    stats = replay_bag(Path(args.bag), rate=args.rate, topics=args.topics, progress=not args.quiet,
                       wait_for_subscribers_s=args.wait_for_subscribers)
    counts = ", ".join(f"{topic} {n}" for topic, n in sorted(stats.published.items()))
    print(f"published {sum(stats.published.values())} messages ({counts}) in {stats.wall_time_s:.1f} s; "
          f"real-time factor {stats.real_time_factor:.2f}")
    return 0


def _planned(verb: str, issue: int) -> Callable[[argparse.Namespace], int]:
    def run(_: argparse.Namespace) -> int:
        print(f"ov3d {verb}: not built yet; issue #{issue} brings it", file=sys.stderr)
        return 2
    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ov3d", description="Open-vocabulary 3D perception for ROS 2.")
    verbs = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)

    launch = verbs.add_parser("launch", help="start the node graph in one process from a perception YAML",
                              description="Start the perception node graph in this process (MultiThreadedExecutor); "
                                          "SIGINT or SIGTERM stops it cleanly.")
    launch.add_argument("--config", default=str(default_config_path("perception.yaml")),
                        help="ROS 2 parameter file (default: %(default)s)")
    launch.set_defaults(run=_cmd_launch)

    replay = verbs.add_parser("replay", help="publish a rosbag2 (MCAP or sqlite3) into the graph, with /clock",
                              description="Publish a bag's messages at their recorded pace (scaled by --rate) "
                                          "with /clock and the QoS each topic was recorded with.")
    replay.add_argument("bag", help="bag folder (or .mcap file)")
    replay.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default: %(default)s)")
    replay.add_argument("--topics", nargs="+", default=None, help="only these topics (default: all)")
    replay.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                        help="start once every topic has a subscriber, or after S seconds (default: %(default)s)")
    replay.add_argument("--eval", metavar="GT", default=None, help="score the online map and grounding against GT")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.set_defaults(run=_cmd_replay)

    for verb, (text, issue) in PLANNED.items():
        sub = verbs.add_parser(verb, help=f"{text} (issue #{issue})",
                               description=f"{text}. Not built yet: issue #{issue} brings it.")
        sub.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        sub.set_defaults(run=_planned(verb, issue))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (CliError, ConfigError, OSError, ValueError, LookupError) as exc:
        print(f"ov3d {args.verb}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
