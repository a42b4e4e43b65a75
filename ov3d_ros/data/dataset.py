"""Our dataset layout: OpenScene scene files, ScanNet-export frame folders and fused features under one root.

```
ROOT/dataset.yaml                     classes, ignore_label, splits, optional groups
ROOT/3d/<split>/<scene>.pth           scene point clouds (ov3d_ros.data.openscene)
ROOT/2d/<scene>/...                   posed RGB-D frames (ov3d_ros.data.scannet_export)
ROOT/fused/<name>/<scene>_<k>.pt      fused 2D features of one teacher / fusion run
```
`dataset.yaml`:
```
classes: [wall, floor, chair]
ignore_label: 255                     # optional, 255 by default
splits: {train: [scene0000_00], val: [scene0011_00]}
groups: {head: [wall], common: [floor], tail: [chair]}   # optional: see Dataset.groups
```
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import yaml

from ov3d_ros.config import load_yaml
from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.data.openscene import IGNORE_LABEL, DataError, SceneCloud, fused_filename, read_scene_pth
from ov3d_ros.data.scannet_export import ScanNetExportScene
from ov3d_ros.files import atomic_path

DATASET_FILE = "dataset.yaml"
GROUP_NAMES = ("head", "common", "tail")
_KEYS = ("classes", "ignore_label", "splits", "groups", "synonyms", "confusions")


def _names(value: Any, where: str) -> tuple[str, ...]:
    """A list of unique non-empty strings."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DataError(f"{where} must be a list of non-empty strings")
    duplicates = sorted({v for v in value if value.count(v) > 1})
    if duplicates:
        raise DataError(f"{where} lists {', '.join(duplicates)} more than once")
    return tuple(value)


@dataclass(frozen=True)
class DatasetInfo:
    """The contents of `dataset.yaml`, validated."""

    root: Path
    classes: tuple[str, ...]
    ignore_label: int
    splits: dict[str, tuple[str, ...]]
    groups: dict[str, tuple[str, ...]] | None
    synonyms: dict[str, tuple[str, ...]] = field(default_factory=dict)    # class -> other names for it
    confusions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # class -> classes it is mistaken for

    @classmethod
    def load(cls, root: str | os.PathLike[str]) -> DatasetInfo:
        """Read and check `<root>/dataset.yaml`; errors name the file and the key."""
        root = Path(root)
        path = root / DATASET_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        doc = load_yaml(path)
        unknown = sorted(set(doc) - set(_KEYS))
        if unknown:
            raise DataError(f"{path}: unknown key(s) {', '.join(unknown)}; known: {', '.join(_KEYS)}")
        for key in ("classes", "splits"):
            if key not in doc:
                raise DataError(f"{path}: '{key}' is missing")
        classes = _names(doc["classes"], f"{path}: classes")
        if not classes:
            raise DataError(f"{path}: classes must not be empty")
        ignore_label = doc.get("ignore_label", IGNORE_LABEL)
        if type(ignore_label) is not int or 0 <= ignore_label < len(classes):
            raise DataError(f"{path}: ignore_label must be an integer outside 0..{len(classes) - 1}, "
                            f"got {ignore_label!r}")
        splits = cls._mapping(doc["splits"], f"{path}: splits")
        if not splits:
            raise DataError(f"{path}: splits must name at least one split")
        seen: dict[str, str] = {}
        for split, scenes in splits.items():
            for scene in scenes:
                if scene in seen:
                    raise DataError(f"{path}: scene {scene} is in both split {seen[scene]} and {split}")
                seen[scene] = split
        groups = None
        if doc.get("groups") is not None:
            groups = cls._mapping(doc["groups"], f"{path}: groups")
            cls._check_groups(groups, classes, f"{path}: groups")
        extras = {}
        for key in ("synonyms", "confusions"):
            extras[key] = cls._mapping(doc.get(key) or {}, f"{path}: {key}")
            unknown = sorted(set(extras[key]) - set(classes))
            if unknown:
                raise DataError(f"{path}: {key} name(s) {', '.join(unknown)} that are not classes")
        bad = sorted({c for targets in extras["confusions"].values() for c in targets} - set(classes))
        if bad:
            raise DataError(f"{path}: confusions name(s) {', '.join(bad)} that are not classes")
        return cls(root, classes, ignore_label, splits, groups, **extras)

    @staticmethod
    def _mapping(value: Any, where: str) -> dict[str, tuple[str, ...]]:
        if not isinstance(value, dict):
            raise DataError(f"{where} must be a mapping of name -> list")
        return {str(name): _names(items or [], f"{where}.{name}") for name, items in value.items()}

    @staticmethod
    def _check_groups(groups: dict[str, tuple[str, ...]], classes: tuple[str, ...], where: str) -> None:
        if set(groups) != set(GROUP_NAMES):
            raise DataError(f"{where} must have exactly the keys {', '.join(GROUP_NAMES)}")
        grouped = [name for members in groups.values() for name in members]
        unknown = sorted(set(grouped) - set(classes))
        if unknown:
            raise DataError(f"{where} name(s) {', '.join(unknown)} that are not classes")
        twice = sorted({name for name in grouped if grouped.count(name) > 1})
        if twice:
            raise DataError(f"{where} put {', '.join(twice)} into more than one group")

    def split_of(self, scene: str) -> str:
        """The split a scene belongs to."""
        for split, scenes in self.splits.items():
            if scene in scenes:
                return split
        raise DataError(f"scene {scene!r} is in no split of {self.root / DATASET_FILE}")


def frequency_groups(counts: np.ndarray, class_names: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """Head / common / tail classes: terciles of the classes ranked by point count (most frequent first).

    The ranking splits into three near-equal parts (the first parts take one more class when the number of
    classes is not divisible by three); ties keep class order. Classes keep their class-list order inside a group.
    """
    counts = np.asarray(counts)
    if counts.shape != (len(class_names),) or (counts < 0).any():
        raise ValueError(f"counts must be {len(class_names)} non-negative numbers, got shape {counts.shape}")
    ranking = np.argsort(-counts, kind="stable")
    return {name: [class_names[i] for i in sorted(part)]
            for name, part in zip(GROUP_NAMES, np.array_split(ranking, len(GROUP_NAMES)))}


class Dataset:
    """A dataset root in our layout (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.info = DatasetInfo.load(root)
        self.root = self.info.root

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def scenes(self, split: str) -> list[str]:
        """Scene ids of a split; "a+b" names the scenes of splits a and b."""
        scenes = []
        for part in split.split("+"):
            if part not in self.info.splits:
                raise DataError(f"unknown split {part!r}; {self.root / DATASET_FILE} has "
                                f"{', '.join(self.info.splits)}")
            scenes.extend(self.info.splits[part])
        return scenes

    def all_scenes(self) -> list[str]:
        """Scene ids of every split, split by split."""
        return [scene for scenes in self.info.splits.values() for scene in scenes]

    def scene_path(self, scene: str) -> Path:
        return self.root / "3d" / self.info.split_of(scene) / f"{scene}.pth"

    def scene_cloud(self, scene: str) -> SceneCloud:
        """The point cloud (with labels, if any) of a scene."""
        return read_scene_pth(self.scene_path(scene), scene)

    def export_scene(self, scene: str) -> ScanNetExportScene:
        """The frame folder of a scene."""
        return ScanNetExportScene(self.root / "2d" / scene, scene)

    def frames(self, scene: str, stride: int = 1) -> Iterator[PosedFrame]:
        """Every `stride`-th posed frame of a scene, streamed."""
        return self.export_scene(scene).frames(stride)

    def fused_dir(self, name: str) -> Path:
        """Folder of the fused features called `name` (one teacher / fusion run)."""
        return self.root / "fused" / name

    def fused_path(self, name: str, scene: str) -> Path:
        """The (first) fused-feature file of a scene: `fused/<name>/<scene>_0.pt`."""
        return self.fused_dir(name) / fused_filename(scene)

    def class_counts(self, split: str) -> np.ndarray:
        """(num_classes,) int64 labelled points per class over a split's scenes (ignore label excluded)."""
        counts = np.zeros(len(self.classes), dtype=np.int64)
        for scene in self.scenes(split):
            labels = self.scene_cloud(scene).labels
            if labels is None:
                continue
            labels = labels[labels != self.info.ignore_label]
            if labels.size and (labels.min() < 0 or labels.max() >= len(self.classes)):
                raise DataError(f"{self.scene_path(scene)}: labels outside 0..{len(self.classes) - 1} "
                                f"and not the ignore label {self.info.ignore_label}")
            counts += np.bincount(labels, minlength=len(self.classes))
        return counts

    def groups(self) -> dict[str, list[str]]:
        """Head / common / tail classes: from dataset.yaml, else frequency_groups of the train split's counts."""
        if self.info.groups is not None:
            return {name: list(members) for name, members in self.info.groups.items()}
        return frequency_groups(self.class_counts("train"), self.classes)


def add_scenes(root: str | os.PathLike[str], split: str, scenes: Iterable[str], new_file: dict[str, Any]) -> None:
    """Add `scenes` to `split` of `<root>/dataset.yaml`, moving them out of any other split. A missing file is
    created from `new_file` (classes, ignore_label, ...); an existing one keeps its own keys, and must have the same
    classes when `new_file` names them (DataError otherwise). Written atomically."""
    path = Path(root) / DATASET_FILE
    doc = load_yaml(path) if path.exists() else dict(new_file)
    if "classes" in new_file and list(doc.get("classes") or []) != list(new_file["classes"]):
        raise DataError(f"{path} holds other classes than these scenes'; write them to another dataset root")
    scenes = list(scenes)
    splits = {name: [s for s in members if s not in scenes] for name, members in (doc.get("splits") or {}).items()}
    splits[split] = sorted(set(splits.get(split, [])) | set(scenes))
    doc["splits"] = splits
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(yaml.safe_dump(doc, sort_keys=False))
