"""Scene-level labels (which classes a scan contains, not where): from ground truth or from a file a user writes.

The file is YAML, one entry per scene, a list or a comma-separated string of class names or their synonyms:

    scene_0001: [bed, desk, lamp]
    scene_0002: sofa, coffee table, plant

Names are matched case-insensitively; an unknown name or scene is an error that suggests the nearest known one.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ov3d_ros.config import load_yaml
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.openscene import DataError

SceneLabels = dict[str, np.ndarray]  # scene id -> (C,) bool: the class is present in the scene


def _nearest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def name_index(classes: Sequence[str], synonyms: Mapping[str, Sequence[str]] | None = None) -> dict[str, int]:
    """Lower-cased class names and synonyms -> class index."""
    index = {name.lower(): i for i, name in enumerate(classes)}
    for label, names in (synonyms or {}).items():
        if label in classes:
            index.update((synonym.lower(), list(classes).index(label)) for synonym in names)
    return index


def parse_scene_labels(entries: Mapping[str, object], classes: Sequence[str],
                       synonyms: Mapping[str, Sequence[str]] | None = None, where: str = "scene labels",
                       ) -> SceneLabels:
    """Scene -> (C,) presence from a mapping of scene -> names (list, or one comma-separated string)."""
    index = name_index(classes, synonyms)
    labels: SceneLabels = {}
    for scene, value in entries.items():
        names = value.split(",") if isinstance(value, str) else value
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{where}: scene {scene!r} needs a list or a comma-separated string of class names")
        present = np.zeros(len(classes), dtype=bool)
        for name in (n.strip() for n in names):
            if not name:
                continue
            if name.lower() not in index:
                raise DataError(f"{where}: scene {scene!r}: unknown label {name!r}{_nearest(name.lower(), index)}")
            present[index[name.lower()]] = True
        if not present.any():
            raise DataError(f"{where}: scene {scene!r} lists no class")
        labels[str(scene)] = present
    return labels


def read_scene_labels(path: str | os.PathLike, classes: Sequence[str],
                      synonyms: Mapping[str, Sequence[str]] | None = None) -> SceneLabels:
    """Scene-level labels from a YAML file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no scene-label file at {path}")
    document = load_yaml(path)
    if not isinstance(document, dict):
        raise DataError(f"{path}: expected a mapping of scene -> class names")
    return parse_scene_labels(document, classes, synonyms, str(path))


def ground_truth_scene_labels(dataset: Dataset, scenes: Sequence[str]) -> SceneLabels:
    """The classes present in each scene's ground truth (ignore label excluded)."""
    labels: SceneLabels = {}
    for scene in scenes:
        gt = dataset.scene_cloud(scene).labels
        if gt is None:
            raise DataError(f"scene {scene} has no ground truth to take scene-level labels from; "
                            f"write them in a file (vlg.scene_labels)")
        gt = gt[(gt != dataset.info.ignore_label) & (gt >= 0) & (gt < len(dataset.classes))]
        labels[scene] = np.bincount(gt, minlength=len(dataset.classes)) > 0
    return labels


def dataset_scene_labels(dataset: Dataset, scenes: Sequence[str], path: str = "") -> SceneLabels:
    """Scene-level labels of `scenes`: from the file at `path` (every scene must be listed; other scenes in the
    file must exist in the dataset), or from the ground truth when `path` is empty."""
    if not path:
        return ground_truth_scene_labels(dataset, scenes)
    labels = read_scene_labels(path, dataset.classes, dataset.info.synonyms)
    known = dataset.all_scenes()
    for scene in labels:
        if scene not in known:
            raise DataError(f"{path}: unknown scene {scene!r}{_nearest(scene, known)}")
    missing = [scene for scene in scenes if scene not in labels]
    if missing:
        raise DataError(f"{path}: no labels for scene(s) {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    return {scene: labels[scene] for scene in scenes}
