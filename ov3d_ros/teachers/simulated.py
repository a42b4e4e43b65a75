"""The simulated 2D teacher hook: a noise model of a real teacher, applied to frames with ground-truth labels.

A real 2D teacher (LSeg, OpenSeg, MaskCLIP) looks at the colour image. On synthetic data we know each pixel's
class, so a calibrated noise model (the synthetic world provides one) turns the label image into the features
such a teacher would give, in the text space of the configured encoder.
"""
from __future__ import annotations

from typing import Protocol

from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.teachers.base import FeatureGrid, Teacher


class TeacherNoiseModel(Protocol):
    """Makes a real-teacher-like feature grid from a frame that carries ground-truth labels."""

    name: str
    dim: int

    def __call__(self, frame: PosedFrame) -> FeatureGrid: ...


class SimulatedTeacher(Teacher):
    """A Teacher whose features come from a noise model over the frame's ground-truth label image."""

    def __init__(self, model: TeacherNoiseModel) -> None:
        self.model = model
        self.name = f"simulated:{model.name}"
        self.dim = model.dim

    def features(self, frame: PosedFrame) -> FeatureGrid:
        if frame.labels is None:
            raise ValueError(f"frame {frame.scene}/{frame.index} has no label image: the simulated teacher needs "
                             "ground-truth labels (synthetic data, or a ScanNet export with label images)")
        return self.model(frame)
