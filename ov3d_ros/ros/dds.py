"""DDS transport settings every process of the graph starts with."""
from __future__ import annotations

import os

from ov3d_ros.config import default_config_path

PROFILES_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"


def configure_transport() -> None:
    """Point Fast DDS at the package's transport profile (config/fastdds.xml: a shared-memory segment that holds
    whole camera frames) unless the user set a profile of their own. Call before the first rclpy context."""
    profile = default_config_path("fastdds.xml")
    if profile.is_file():
        os.environ.setdefault(PROFILES_VARIABLE, str(profile))
