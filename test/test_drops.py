"""DropCounter counts every drop and throttles the log per reason; guarded callbacks never raise."""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
from ov3d_ros.ros.drops import DropCounter, guarded  # noqa: E402


class Logger:
    def __init__(self):
        self.lines = []

    def warning(self, text):
        self.lines.append(text)


class Subject:
    def __init__(self):
        self.drops = DropCounter(Logger(), throttle_s=3600)

    @guarded("malformed_thing")
    def value_error(self, text):
        raise ValueError(text)

    @guarded("malformed_thing")
    def lookup_error(self):
        raise LookupError("no transform")

    @guarded("malformed_thing")
    def bug(self):
        return 1 / 0


def test_counts_every_drop_but_logs_each_reason_once_per_period():
    s = Subject()
    for i in range(10):
        s.value_error(f"bad {i}")
    s.lookup_error()
    s.bug()
    assert s.drops.counts == {"malformed_thing": 10, "tf_lookup_failed": 1, "internal_error": 1}
    assert s.drops.total == 12
    lines = s.drops._logger.lines
    assert len(lines) == 3
    assert "malformed_thing, 1 so far" in lines[0] and "ZeroDivisionError" in lines[2]
