"""Per-point pseudo labels of a scene (3DSS-VLG stage 1) on disk: `<scene>.npz`, readable with plain numpy.

Arrays: `labels` (N,) int16 class index, -1 where the point has no fused feature; `confidence` (N,) float16 in
[0, 1] (0 where unlabelled); `classes` (C,) the class names the indices refer to; `scene_labels` (C,) bool, the
scene-level labels the pseudo labels were restricted to.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ov3d_ros.data.openscene import DataError
from ov3d_ros.files import atomic_path


@dataclass
class PseudoLabels:
    """A scene's pseudo labels and what they were made from (see the module docstring)."""

    labels: np.ndarray        # (N,) int16
    confidence: np.ndarray    # (N,) float16
    classes: tuple[str, ...]
    scene_labels: np.ndarray  # (C,) bool

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels).astype(np.int16)
        self.confidence = np.asarray(self.confidence).astype(np.float16)
        self.scene_labels = np.asarray(self.scene_labels).astype(bool)
        count = len(self.classes)
        if self.labels.ndim != 1 or self.confidence.shape != self.labels.shape:
            raise DataError(f"labels and confidence must be (N,) of one length, got {self.labels.shape} and "
                            f"{self.confidence.shape}")
        if self.scene_labels.shape != (count,):
            raise DataError(f"scene_labels must be ({count},), got {self.scene_labels.shape}")
        if self.labels.size and (self.labels.min() < -1 or self.labels.max() >= count):
            raise DataError(f"labels must be -1 or class indices below {count}")
        assigned = self.labels[self.labels >= 0]
        if assigned.size and not self.scene_labels[assigned].all():
            raise DataError("a pseudo label names a class outside the scene-level labels")

    @property
    def labelled(self) -> np.ndarray:
        """(N,) bool: the point has a pseudo label."""
        return self.labels >= 0


def write_pseudo_labels(path: str | os.PathLike, pseudo: PseudoLabels) -> None:
    """Write atomically as an uncompressed .npz (the name must end in .npz)."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            np.savez(stream, labels=pseudo.labels, confidence=pseudo.confidence,
                     classes=np.asarray(pseudo.classes, dtype=str), scene_labels=pseudo.scene_labels)


def read_pseudo_labels(path: str | os.PathLike) -> PseudoLabels:
    """Read and validate a pseudo-label file (no pickles: `allow_pickle=False`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pseudo labels at {path} (run `ov3d train vlg --stage pseudo`)")
    try:
        with np.load(path, allow_pickle=False) as content:
            fields = {key: content[key] for key in ("labels", "confidence", "classes", "scene_labels")}
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"{path}: not a pseudo-label file ({exc})") from None
    try:
        return PseudoLabels(fields["labels"], fields["confidence"], tuple(str(c) for c in fields["classes"]),
                            fields["scene_labels"])
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
