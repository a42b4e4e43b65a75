"""`ov3d view`: a live Foxglove view of the running graph (`ov3d_ros.ros.view`)."""
from __future__ import annotations

import argparse

from ov3d_ros.config import ConfigError, load_perception_config


def run_view_command(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0-65535, got {args.port}")
    config = load_perception_config(args.config)
    try:
        from ov3d_ros.ros.view import run_view
    except ImportError as exc:
        raise ConfigError(f"ov3d view needs foxglove-sdk and rclpy ({exc}); run ./setup.sh") from None
    return run_view(config, args.host, args.port, args.mcap)
