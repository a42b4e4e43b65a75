"""Labelled point clouds as binary PLY (x, y, z, red, green, blue, label, instance): maps and datasets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from plyfile import PlyData, PlyElement

from ov3d_ros.data.openscene import DataError, SceneCloud
from ov3d_ros.files import atomic_path


def write_ply(path: str | Path, xyz: np.ndarray, rgb: np.ndarray, labels: np.ndarray | None = None,
              instances: np.ndarray | None = None) -> None:
    """Binary PLY of the points; `label` (uint8, 255 = none) and `instance` (int32) only when given."""
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    fields += [("label", "u1")] if labels is not None else []
    fields += [("instance", "i4")] if instances is not None else []
    vertex = np.empty(len(xyz), fields)
    vertex["x"], vertex["y"], vertex["z"] = np.asarray(xyz, dtype=np.float32).T
    vertex["red"], vertex["green"], vertex["blue"] = np.asarray(rgb, dtype=np.uint8).T
    if labels is not None:
        vertex["label"] = labels
    if instances is not None:
        vertex["instance"] = instances
    with atomic_path(path) as temporary:
        PlyData([PlyElement.describe(vertex, "vertex")], text=False).write(str(temporary))


def read_ply(path: str | Path) -> SceneCloud:
    """A PLY point cloud (any PLY with x, y, z; colour, label and instance when present)."""
    path = Path(path)
    try:
        vertex = PlyData.read(str(path))["vertex"].data
    except FileNotFoundError:
        raise FileNotFoundError(f"no such file: {path}") from None
    except (KeyError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: not a PLY point cloud ({exc})") from None
    names = vertex.dtype.names or ()
    if not {"x", "y", "z"} <= set(names):
        raise DataError(f"{path}: vertices have no x, y, z")
    xyz = np.stack([vertex[a] for a in "xyz"], axis=1).astype(np.float32)
    rgb = (np.stack([vertex[c] for c in ("red", "green", "blue")], axis=1).astype(np.uint8)
           if {"red", "green", "blue"} <= set(names) else np.zeros((len(xyz), 3), np.uint8))
    labels = np.asarray(vertex["label"], dtype=np.int64) if "label" in names else None
    instances = np.asarray(vertex["instance"], dtype=np.int64) if "instance" in names else None
    return SceneCloud(path.stem, xyz, rgb, labels, instances)
