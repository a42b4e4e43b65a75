"""`ov3d doctor`: print what the perception graph needs and what this machine and the live graph give it."""
from __future__ import annotations

import argparse

from ov3d_ros.config import ConfigError, PerceptionConfig, load_perception_config
from ov3d_ros.ros.doctor import FAIL, WARN, run_checks


def run_doctor(args: argparse.Namespace) -> int:
    """One line per check, then a verdict; exit status 1 when a check failed (the graph could not work)."""
    if args.listen <= 0:
        raise ConfigError(f"--listen must be positive, got {args.listen}")
    config: PerceptionConfig | None = None
    error = None
    try:
        config = load_perception_config(args.config)
    except (ConfigError, OSError) as exc:
        error = f"{args.config}: {exc}"
    findings = run_checks(config, error, topics=not args.no_topics, listen_s=args.listen)
    for finding in findings:
        print(finding.line())
    failed = [f.check for f in findings if f.status == FAIL]
    warned = sum(f.status == WARN for f in findings)
    print(f"{len(findings)} checks: {len(failed)} failed ({', '.join(failed) or 'none'}), {warned} warning(s)")
    return 1 if failed else 0
