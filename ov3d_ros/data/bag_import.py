"""A robot's own recording as a training scene: `import_bag` turns a rosbag2 (TF + colour / depth / camera info,
raw or compressed) into a scene of our dataset layout, so `ov3d fuse` and `ov3d train ...` run on it unchanged.

- the scene cloud (`3d/<split>/<scene>.pth`) is the map the fusion node would build from the bag's frames
  (`fuse_frames`, with the parameter file's fusion settings), without labels (every point IGNORE_LABEL);
- the posed frames go to `2d/<scene>/` in the ScanNet-export layout (colour, 16-bit depth, pose, intrinsics);
- the scene joins `split` in `dataset.yaml` (created with the given classes when the root is new);
- optional scene-level labels (the classes the room contains, 3DSS-VLG's weak supervision) are merged into
  `scene_labels.yaml`, the file `vlg.scene_labels` reads.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import yaml

from ov3d_ros.config import FusionNodeConfig
from ov3d_ros.data.bag_frames import bag_frames
from ov3d_ros.data.dataset import DATASET_FILE, Dataset, add_scenes
from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.data.openscene import DataError, SceneCloud, write_scene_pth
from ov3d_ros.data.scannet_export import write_frame
from ov3d_ros.data.scene_labels import parse_scene_labels
from ov3d_ros.files import atomic_path
from ov3d_ros.mapping.scene_maps import fuse_frames

SCENE_LABELS_FILE = "scene_labels.yaml"


@dataclass(frozen=True)
class ImportReport:
    """What one import wrote."""

    scene: str
    split: str
    frames: int
    points: int
    seconds: float


def _written(frames: Iterable[PosedFrame], folder: Path) -> Iterator[PosedFrame]:
    for frame in frames:
        write_frame(folder, frame)
        yield frame


def import_bag(bag: str | Path, root: str | Path, fusion: FusionNodeConfig, classes: Sequence[str],
               synonyms: dict[str, Sequence[str]] | None = None, split: str = "train", scene: str | None = None,
               scene_labels: Sequence[str] = (), frame_stride: int = 1) -> ImportReport:
    """Import `bag` as scene `scene` (default: the bag's folder name) of `split` under `root`. `classes` (and their
    `synonyms`) name the dataset's classes when `root` has no dataset.yaml yet; `scene_labels` are names among
    them. Re-importing a scene replaces its frames and cloud."""
    started = time.perf_counter()
    bag, root = Path(bag), Path(root)
    scene = scene or bag.name
    if not scene or scene != Path(scene).name or scene.startswith("."):
        raise DataError(f"scene must be a plain file-name part, got {scene!r}")
    if frame_stride < 1:
        raise DataError(f"frame_stride must be at least 1, got {frame_stride}")
    existing = Dataset(root).classes if (root / DATASET_FILE).exists() else tuple(classes)
    labels_entry = _checked_scene_labels(scene, scene_labels, existing, synonyms)
    images = fusion.image_inputs()
    folder = root / "2d" / scene
    staging = folder.with_name(f".{scene}.importing")
    shutil.rmtree(staging, ignore_errors=True)
    source = bag_frames(bag, fusion.map_frame, images["color"][0], images["depth"][0], fusion.camera_info_topic,
                        fusion.sync_slop_s, frame_stride)
    xyz, rgb = fuse_frames(_written(source, staging), fusion)
    frames = len(list((staging / "pose").glob("*.txt")))
    if not frames or not len(xyz):
        shutil.rmtree(staging, ignore_errors=True)
        raise DataError(f"{bag}: no posed RGB-D frame with valid depth (topics {images['color'][0]}, "
                        f"{images['depth'][0]}, {fusion.camera_info_topic}; TF to '{fusion.map_frame}')")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    write_scene_pth(root / "3d" / split / f"{scene}.pth", SceneCloud(scene, xyz, rgb, None))
    for other in (root / "3d").glob(f"*/{scene}.pth"):            # a scene moved to another split
        if other.parent.name != split:
            other.unlink()
    add_scenes(root, split, [scene], {"classes": list(existing), "ignore_label": 255, "splits": {},
                                      "synonyms": {k: list(v) for k, v in (synonyms or {}).items() if v}})
    if labels_entry:
        _merge_scene_labels(root / SCENE_LABELS_FILE, scene, labels_entry)
    return ImportReport(scene, split, frames, len(xyz), time.perf_counter() - started)


def _checked_scene_labels(scene: str, names: Sequence[str], classes: Sequence[str],
                          synonyms: dict[str, Sequence[str]] | None) -> list[str]:
    """The names, checked against the classes (unknown names are a DataError suggesting the nearest)."""
    if not names:
        return []
    parse_scene_labels({scene: list(names)}, classes, synonyms)
    return list(names)


def _merge_scene_labels(path: Path, scene: str, names: list[str]) -> None:
    entries = yaml.safe_load(path.read_text()) if path.exists() else {}
    if not isinstance(entries, dict):
        raise DataError(f"{path} must map scene ids to label lists")
    entries[scene] = names
    with atomic_path(path) as temporary:
        temporary.write_text(yaml.safe_dump(entries, sort_keys=True))
