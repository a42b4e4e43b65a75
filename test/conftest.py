"""Shared fixtures. Every test run gets its own ROS_DOMAIN_ID so parallel runs on one machine never cross."""
from __future__ import annotations

import os

import pytest

# Set before any test imports rclpy; child processes inherit it through os.environ.
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 200)


@pytest.fixture
def ros_context():
    """A fresh rclpy context for in-process node tests, shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    yield context
    if context.ok():
        rclpy.shutdown(context=context)
