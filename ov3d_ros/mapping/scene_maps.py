"""The map the fusion node builds from a scene's posed RGB-D frames, made offline and cached on disk: what the
running graph labels, for scoring a student on it (`ov3d eval seg --fused-map`) and for training on it
(`ggsd.fused_map_share`). A student trained only on a dataset's clean clouds learns infinitely thin surfaces and
loses about half its mIoU on the thick, noisy surfaces of a fused depth map."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ov3d_ros.config import FusionNodeConfig
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.files import atomic_path
from ov3d_ros.mapping.semantic_map import SemanticMapSettings
from ov3d_ros.mapping.surface import project_to_surfaces

CACHE_VERSION = 2          # 2: projection keeps the raw points' neighbours
FOLDER = "maps"            # <dataset>/maps/<scene>-<key>.npz
TRANSFER_DISTANCE_M = 0.05     # a point takes the signals of the nearest point of another cloud within this distance


@dataclass(frozen=True)
class SceneMap:
    """A fused map: voxel centres as the fusion node publishes them, the same points projected onto their surfaces
    as the segmentation node shows them to the network, and the voxels' mean colours."""

    xyz: np.ndarray       # (M, 3) float32
    surface: np.ndarray   # (M, 3) float32
    rgb: np.ndarray       # (M, 3) uint8


def fuse_scene_map(dataset: Dataset, scene: str, fusion: FusionNodeConfig,
                   settings: SemanticMapSettings = SemanticMapSettings(), workers: int = 1) -> SceneMap:
    """The map fused from every posed RGB-D frame of `scene` (`fuse_frames`), projected onto its surfaces with
    `settings`' neighbours and iterations."""
    xyz, rgb = fuse_frames(dataset.frames(scene), fusion)
    surface = project_to_surfaces(xyz, settings.surface_neighbours, settings.surface_iterations, workers=workers)
    return SceneMap(xyz, surface, rgb)


def fuse_frames(frames: Iterable[PosedFrame], fusion: FusionNodeConfig) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3) float32 voxel centres and (M, 3) uint8 colours of the map the fusion node builds from posed RGB-D
    `frames` with `fusion`'s voxel size, depth stride and range (every frame a keyframe)."""
    from ov3d_ros.geometry.transforms import RigidTransform
    from ov3d_ros.mapping.sensor_points import rgbd_points
    from ov3d_ros.mapping.voxel_map import VoxelMap
    from ov3d_ros.messages.pointcloud import unpack_rgb

    voxels = VoxelMap(fusion.voxel_size_m, fusion.max_voxels)
    for frame in frames:
        voxels.integrate(rgbd_points(frame.color, frame.depth_m, frame.depth_camera,
                                     RigidTransform.from_matrix(frame.camera_to_world), 0, fusion.depth_stride,
                                     fusion.depth_min_m, fusion.depth_max_m))
    points = voxels.to_points()
    xyz = np.stack((points["x"], points["y"], points["z"]), axis=1).astype(np.float32)
    return xyz, unpack_rgb(points["rgb"])


class SceneMapCache:
    """Fused maps of a dataset's scenes on disk, `<dataset>/maps/<scene>-<key>.npz`; the key hashes the fusion and
    projection parameters and the names, sizes and times of the scene's frame files, so a changed frame or
    parameter makes a new map."""

    def __init__(self, dataset: Dataset, fusion: FusionNodeConfig,
                 settings: SemanticMapSettings = SemanticMapSettings(), workers: int = 1) -> None:
        self.dataset, self.fusion, self.settings, self.workers = dataset, fusion, settings, workers
        self.directory = dataset.root / FOLDER

    def path(self, scene: str) -> Path:
        """The cache file of a scene's map under this cache's parameters."""
        digest = hashlib.sha256()
        params = {"version": CACHE_VERSION, "voxel_size_m": self.fusion.voxel_size_m,
                  "max_voxels": self.fusion.max_voxels, "depth_stride": self.fusion.depth_stride,
                  "depth_min_m": self.fusion.depth_min_m, "depth_max_m": self.fusion.depth_max_m,
                  "surface_neighbours": self.settings.surface_neighbours,
                  "surface_iterations": self.settings.surface_iterations}
        digest.update(json.dumps(params, sort_keys=True).encode())
        folder = self.dataset.export_scene(scene).folder
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
        return self.directory / f"{scene}-{digest.hexdigest()[:20]}.npz"

    def get(self, scene: str) -> SceneMap:
        """The scene's map: read from the cache, else fused (`fuse_scene_map`) and written atomically. A file that
        cannot be read or is inconsistent is made again."""
        path = self.path(scene)
        try:
            with np.load(path, allow_pickle=False) as stored:
                cached = SceneMap(stored["xyz"], stored["surface"], stored["rgb"])
            if cached.xyz.shape == cached.surface.shape == cached.rgb.shape and cached.xyz.shape[1:] == (3,):
                return cached
        except (OSError, ValueError, KeyError, EOFError):
            pass
        made = fuse_scene_map(self.dataset, scene, self.fusion, self.settings, self.workers)
        with atomic_path(path) as temporary, open(temporary, "wb") as stream:
            np.savez(stream, xyz=made.xyz, surface=made.surface, rgb=made.rgb)
        return made


def nearest_map_point(map_xyz: np.ndarray, points: np.ndarray,
                      max_distance: float = TRANSFER_DISTANCE_M) -> tuple[np.ndarray, np.ndarray]:
    """For each of `points` (P, 3): whether a point of `map_xyz` (M, 3, M > 0) lies within `max_distance`, and the
    index of the nearest one (meaningful where it does): how a map's predictions are carried to ground truth, and
    a clean cloud's training signals to a map."""
    from scipy.spatial import cKDTree

    distance, nearest = cKDTree(map_xyz).query(points, distance_upper_bound=max_distance)
    hit = np.isfinite(distance)
    return hit, np.where(hit, nearest, 0)
