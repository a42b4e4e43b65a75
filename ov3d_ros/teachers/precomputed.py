"""A teacher that reads feature maps computed elsewhere: `<directory>/<scene>/<frame index>.npy` or `.pt`."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.data.openscene import DataError, load_torch_file
from ov3d_ros.teachers.base import FeatureGrid, Teacher

SUFFIXES = (".npy", ".pt")
LAYOUTS = ("chw", "hwc")


def _load_array(path: Path) -> torch.Tensor:
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{path}: not a numeric .npy array ({exc})") from None
    else:
        array = load_torch_file(path)
    if not isinstance(array, torch.Tensor) and not (isinstance(array, np.ndarray) and array.dtype.kind in "biuf"):
        raise DataError(f"{path}: expected a numeric array or tensor, got {type(array).__name__}")
    return torch.as_tensor(array).to(torch.float32)


class PrecomputedTeacher(Teacher):
    """Feature maps from files, one per frame: a (D, h, w) ("chw") or (h, w, D) ("hwc") array of any grid size.

    The grid is laid over the frame's colour image. `dim` defaults to the channel count of the first file found
    (in sorted order); every file must agree with it.
    """

    name = "precomputed"

    def __init__(self, directory: str | os.PathLike[str], layout: str = "chw", dim: int | None = None) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be 'chw' or 'hwc', got {layout!r}")
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"no such folder: {self.directory}")
        self.layout = layout
        if dim is None:
            first = next((p for folder in sorted(self.directory.iterdir()) if folder.is_dir()
                          for p in sorted(folder.iterdir()) if p.suffix in SUFFIXES), None)
            if first is None:
                raise FileNotFoundError(f"no feature files <scene>/<frame>.npy or .pt under {self.directory}")
            dim = self._load(first).shape[0]
        self.dim = dim

    def _load(self, path: Path) -> torch.Tensor:
        features = _load_array(path)
        if features.ndim != 3:
            raise DataError(f"{path}: expected a 3-D {self.layout} feature map, got shape {tuple(features.shape)}")
        return (features.permute(2, 0, 1) if self.layout == "hwc" else features).contiguous()

    def path(self, scene: str, index: int) -> Path:
        """The feature file of a frame (.npy preferred when both exist)."""
        candidates = [self.directory / scene / f"{index}{suffix}" for suffix in SUFFIXES]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"no feature file for frame {scene}/{index}: "
                                    f"{' or '.join(str(p) for p in candidates)}")
        return found

    def features(self, frame: PosedFrame) -> FeatureGrid:
        path = self.path(frame.scene, frame.index)
        features = self._load(path)
        if features.shape[0] != self.dim:
            raise DataError(f"{path}: {features.shape[0]} feature channels, expected {self.dim} "
                            f"(layout {self.layout})")
        return FeatureGrid(features, (frame.color_camera.width, frame.color_camera.height))
