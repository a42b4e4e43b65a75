"""Keyframe selection by motion: a sensor reading is integrated only when its sensor has moved or turned enough
since the last integrated one (or enough time has passed), so a sensor at 15 Hz that stands still costs nothing."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from ov3d_ros.geometry.transforms import RigidTransform


@dataclass(frozen=True)
class KeyframePolicy:
    """A reading is a keyframe when its sensor moved `translation_m`, turned `rotation_deg`, or `max_interval_s`
    passed since its last keyframe (0 everywhere: every reading is one)."""

    translation_m: float = 0.05
    rotation_deg: float = 5.0
    max_interval_s: float = 1.0


class KeyframeSelector:
    """Remembers the last keyframe pose and stamp of each sensor frame. Thread-safe."""

    def __init__(self, policy: KeyframePolicy) -> None:
        self.policy = policy
        self._last: dict[str, tuple[RigidTransform, int]] = {}
        self._lock = threading.Lock()

    def due(self, sensor: str, pose: RigidTransform, stamp_ns: int) -> bool:
        """True when a reading of `sensor` at map pose `pose` would be a keyframe."""
        p = self.policy
        with self._lock:
            last = self._last.get(sensor)
        if last is None:
            return True
        previous, previous_ns = last
        moved = float(np.linalg.norm(pose.translation - previous.translation))
        turned = float(np.degrees((previous.inverse() * pose).rotation.magnitude()))
        waited = (stamp_ns - previous_ns) / 1e9
        return not (moved < p.translation_m and turned < p.rotation_deg and 0 <= waited < p.max_interval_s)

    def mark(self, sensor: str, pose: RigidTransform, stamp_ns: int) -> None:
        """Remember an integrated reading as the sensor's last keyframe."""
        with self._lock:
            self._last[sensor] = (pose, stamp_ns)

    def reset(self) -> None:
        with self._lock:
            self._last.clear()
