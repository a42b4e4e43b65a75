"""OpenScene's on-disk formats: scene point clouds (`<scene>.pth`) and fused 2D features (`<scene>_<k>.pt`).

A scene file is ``torch.save((coords, colors, labels))`` of numpy arrays: coords (N, 3) float32, colors (N, 3)
float in [-1, 1], labels (N,) integer with 255 = ignore; some exports append instance labels as a fourth element
or leave the labels out. A fused-feature file is ``torch.save({"feat": (M, C) float16, "mask_full": (N,) bool})``
where the rows of ``feat`` belong, in order, to the points where ``mask_full`` is true. We add an optional
``"view_counts"`` (N,) int32 entry, which OpenScene's loader ignores.

Everything is read with ``torch.load(..., weights_only=True)``; the numpy globals a pickled array needs are
allow-listed for the call (under both their numpy 2 and numpy 1 module names, so older exports load too).
Every writer here writes atomically (a temporary file in the target folder, then ``os.replace``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ov3d_ros.files import atomic_path

IGNORE_LABEL = 255

_reconstruct = np.zeros(0).__reduce__()[0]  # what pickling an array refers to, whatever numpy calls its module
_NUMPY_SAFE_GLOBALS: list[Any] = [
    np.ndarray, np.dtype,
    *((_reconstruct, f"{module}.multiarray._reconstruct") for module in ("numpy._core", "numpy.core")),
    *(type(np.dtype(code)) for code in "?bBhHiIlLqQefdFD"),  # numpy.dtypes.Float32DType ...
]


class DataError(ValueError):
    """A data file is malformed, or a request names something the data does not have; the message says where."""


def load_torch_file(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)`` with numpy arrays allowed; one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with torch.serialization.safe_globals(_NUMPY_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt zip, a disallowed global, a truncated pickle ...: errors vary with the damage
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if "WeightsUnpickler error:" in reason:  # keep the cause, not torch's advice around it
            reason = reason.split("WeightsUnpickler error:", 1)[1].split(" Check the documentation")[0].strip()
        raise DataError(f"{path}: cannot load as a torch file ({reason})") from None


def _numpy(value: Any) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _torch(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.from_numpy(np.asarray(value))


@dataclass
class SceneCloud:
    """The points of one scene: positions, RGB colours, optional semantic and instance labels."""

    scene: str
    coords: np.ndarray                       # (N, 3) float32
    colors: np.ndarray                       # (N, 3) uint8, 0-255
    labels: np.ndarray | None = None         # (N,) int64, IGNORE_LABEL = unlabelled
    instance_labels: np.ndarray | None = None  # (N,) int64

    def __post_init__(self) -> None:
        self.coords = np.ascontiguousarray(self.coords, dtype=np.float32)
        if self.coords.ndim != 2 or self.coords.shape[1] != 3:
            raise DataError(f"scene {self.scene}: coords must be (N, 3), got shape {self.coords.shape}")
        n = self.coords.shape[0]
        self.colors = np.asarray(self.colors)
        if self.colors.shape != (n, 3) or self.colors.dtype != np.uint8:
            raise DataError(f"scene {self.scene}: colors must be ({n}, 3) uint8, "
                            f"got {self.colors.dtype} {self.colors.shape}")
        for name in ("labels", "instance_labels"):
            values = getattr(self, name)
            if values is None:
                continue
            values = np.asarray(values)
            if values.shape != (n,) or values.dtype.kind not in "iu":
                raise DataError(f"scene {self.scene}: {name} must be ({n},) integers, "
                                f"got {values.dtype} {values.shape}")
            setattr(self, name, values.astype(np.int64))

    @property
    def num_points(self) -> int:
        return int(self.coords.shape[0])


def _integer_labels(values: np.ndarray | None) -> np.ndarray | None:
    """Labels as int64: integral floats (some exports) are converted, OpenScene's -100 becomes IGNORE_LABEL."""
    if values is None or values.dtype.kind != "f" or not np.array_equal(values, np.round(values)):
        return values
    labels = values.astype(np.int64)
    labels[labels == -100] = IGNORE_LABEL
    return labels


def read_scene_pth(path: str | os.PathLike[str], scene: str | None = None) -> SceneCloud:
    """Read an OpenScene scene file; `scene` defaults to the file name without its suffix."""
    path = Path(path)
    content = load_torch_file(path)
    if not isinstance(content, (tuple, list)) or not 2 <= len(content) <= 4:
        raise DataError(f"{path}: expected a tuple (coords, colors[, labels[, instance labels]])")
    coords, colors, *rest = (_numpy(item) for item in content)
    if colors.ndim != 2 or colors.shape[1] != 3 or colors.dtype.kind != "f":
        raise DataError(f"{path}: colors must be (N, 3) floats in [-1, 1], got {colors.dtype} {colors.shape}")
    rgb = np.clip(np.rint((colors.astype(np.float64) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    labels, instances = (_integer_labels(values) for values in (rest + [None, None])[:2])
    try:
        return SceneCloud(scene or path.stem, coords, rgb, labels, instances)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def write_scene_pth(path: str | os.PathLike[str], cloud: SceneCloud) -> None:
    """Write `cloud` as OpenScene does: a tuple of numpy arrays, colours as float32 in [-1, 1].

    Without labels every point is written as IGNORE_LABEL (OpenScene's loader expects the third element);
    instance labels, when present, are appended as a fourth element.
    """
    labels = cloud.labels if cloud.labels is not None else np.full(cloud.num_points, IGNORE_LABEL, np.int64)
    content = (cloud.coords, (cloud.colors.astype(np.float32) / 127.5 - 1.0), labels)
    if cloud.instance_labels is not None:
        content += (cloud.instance_labels,)
    with atomic_path(path) as temporary:
        torch.save(content, temporary)


@dataclass
class FusedFeatures:
    """Fused 2D features of a scene's points: rows of `feat` belong to the points where `mask_full` is true."""

    feat: torch.Tensor                       # (M, C) float16
    mask_full: torch.Tensor                  # (N,) bool, M true entries
    view_counts: torch.Tensor | None = None  # (N,) int32: views that saw each point

    def __post_init__(self) -> None:
        self.feat = _torch(self.feat).to(torch.float16)
        self.mask_full = _torch(self.mask_full)
        if self.feat.ndim != 2:
            raise DataError(f"feat must be (M, C), got shape {tuple(self.feat.shape)}")
        if self.mask_full.ndim != 1:
            raise DataError(f"mask_full must be (N,), got shape {tuple(self.mask_full.shape)}")
        if self.mask_full.dtype != torch.bool:
            if self.mask_full.dtype.is_floating_point or bool((self.mask_full.to(torch.int64) & ~1).any()):
                raise DataError(f"mask_full must be booleans (or integer 0/1), got {self.mask_full.dtype}")
            self.mask_full = self.mask_full != 0
        fused = int(self.mask_full.sum())
        if fused != self.feat.shape[0]:
            raise DataError(f"feat has {self.feat.shape[0]} rows but mask_full marks {fused} points")
        if self.view_counts is not None:
            self.view_counts = _torch(self.view_counts).to(torch.int32)
            if self.view_counts.shape != self.mask_full.shape:
                raise DataError(f"view_counts must be ({self.num_points},), "
                                f"got shape {tuple(self.view_counts.shape)}")

    @property
    def num_points(self) -> int:
        return int(self.mask_full.shape[0])

    @property
    def dim(self) -> int:
        return int(self.feat.shape[1])

    def dense(self, num_points: int | None = None) -> torch.Tensor:
        """(N, C) float32 features of every point, zeros where `mask_full` is false.

        `num_points`, when given, must equal N (a guard against pairing features with the wrong scene).
        """
        if num_points is not None and num_points != self.num_points:
            raise DataError(f"fused features cover {self.num_points} points, not {num_points}")
        dense = torch.zeros((self.num_points, self.dim), dtype=torch.float32)
        dense[self.mask_full] = self.feat.float()
        return dense


def read_fused(path: str | os.PathLike[str]) -> FusedFeatures:
    """Read a fused-feature file (ours or OpenScene's: tensors or numpy arrays)."""
    path = Path(path)
    content = load_torch_file(path)
    if not isinstance(content, dict) or not {"feat", "mask_full"} <= set(content):
        raise DataError(f"{path}: expected a dict with 'feat' and 'mask_full'")
    try:
        return FusedFeatures(content["feat"], content["mask_full"], content.get("view_counts"))
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def write_fused(path: str | os.PathLike[str], fused: FusedFeatures) -> None:
    """Write `fused` in OpenScene's layout (plus "view_counts" when known)."""
    content = {"feat": fused.feat.contiguous(), "mask_full": fused.mask_full.contiguous()}
    if fused.view_counts is not None:
        content["view_counts"] = fused.view_counts.contiguous()
    with atomic_path(path) as temporary:
        torch.save(content, temporary)


def fused_filename(scene: str, k: int = 0) -> str:
    """File name of the k-th fused-feature file of a scene: `<scene>_<k>.pt`."""
    return f"{scene}_{k}.pt"


def fused_paths(folder: str | os.PathLike[str], scene: str) -> list[Path]:
    """Every `<scene>_<k>.pt` in `folder`, ordered by k (OpenScene may write several per scene)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder: {folder}")
    pattern = re.compile(rf"{re.escape(scene)}_(\d+)\.pt")
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.fullmatch(p.name))]
    return [p for _, p in sorted(found)]
