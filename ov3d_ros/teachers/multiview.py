"""Multi-view fusion: a 2D teacher's per-pixel features averaged onto the 3D points that each view sees.

For every frame a point is visible when it projects (with the depth camera) in front of the camera onto a pixel
of the depth image whose reading is valid (within [min_depth_m, max_depth_m]) and agrees with the point's depth
to within ``depth_tolerance_m + depth_tolerance_rel * depth``. Visible points are projected with the colour camera
(same pose: ScanNet's colour and depth share it) and, when inside the colour image, take the bilinear sample of
the teacher's feature grid there. A point's fused feature is the plain average over the views that saw it, as
OpenScene computes it: not re-normalised (cosine similarity, the only use downstream, ignores the scale).

Frames are streamed, one at a time. Memory is the float32 accumulator of N x D sums (4 N D bytes), per-frame work
bounded by ``point_chunk`` points, and at the end the float16 result of the M points seen.
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm import tqdm

from ov3d_ros.config import MultiViewFusionConfig
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.data.openscene import FusedFeatures, fused_filename, write_fused
from ov3d_ros.geometry.camera import PinholeCamera
from ov3d_ros.teachers.base import Teacher


def _nearest_pixel(uv: np.ndarray, camera: PinholeCamera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inside mask, column, row) of the pixels nearest to `uv`; NaN coordinates are outside."""
    with np.errstate(invalid="ignore"):
        col, row = np.floor(uv[:, 0] + 0.5), np.floor(uv[:, 1] + 0.5)
        inside = (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
    return inside, col[inside].astype(np.int64), row[inside].astype(np.int64)


def visible_points(points: np.ndarray, frame: PosedFrame, world_to_camera: np.ndarray,
                   config: MultiViewFusionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Indices into `points` (world frame) of the points `frame` sees, and their colour-image pixels (V, 2)."""
    camera_points = points.astype(np.float64) @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    uv, depth = frame.depth_camera.project(camera_points)
    inside, col, row = _nearest_pixel(uv, frame.depth_camera)
    index = np.flatnonzero(inside)
    measured = frame.depth_m[row, col].astype(np.float64)
    depth = depth[index]
    agrees = ((measured >= config.min_depth_m) & (measured <= config.max_depth_m)
              & (np.abs(measured - depth) <= config.depth_tolerance_m + config.depth_tolerance_rel * depth))
    index = index[agrees]
    uv_color, _ = frame.color_camera.project(camera_points[index])
    in_color = _nearest_pixel(uv_color, frame.color_camera)[0]
    return index[in_color], uv_color[in_color]


def fuse_scene(points: np.ndarray, frames: Iterable[PosedFrame], teacher: Teacher, config: MultiViewFusionConfig,
               progress: bool = False) -> FusedFeatures:
    """Average `teacher`'s features over the frames that see each point (see the module docstring).

    Every `config.frame_stride`-th frame is used. Returns float16 features of the points seen at least once
    (`mask_full`) and every point's view count.
    """
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"expected (N, 3) points, got shape {points.shape}")
    chunk = config.point_chunk
    # channel-major: a frame's samples come out of grid_sample as contiguous (D, V), the fast way to add them
    sums = torch.zeros((teacher.dim, len(points)), dtype=torch.float32)
    counts = np.zeros(len(points), dtype=np.int32)
    for frame in tqdm(itertools.islice(frames, 0, None, config.frame_stride), desc="frames", unit="frame",
                      leave=False, disable=not progress):
        world_to_camera = np.linalg.inv(frame.camera_to_world)
        indices, pixels = [np.empty(0, np.int64)], [np.empty((0, 2))]
        for start in range(0, len(points), chunk):
            found, uv = visible_points(points[start:start + chunk], frame, world_to_camera, config)
            indices.append(found + start)
            pixels.append(uv)
        index = np.concatenate(indices)
        if not len(index):
            continue
        grid = teacher.features(frame)
        expected_size = (frame.color_camera.width, frame.color_camera.height)
        if grid.dim != teacher.dim or tuple(grid.image_size) != expected_size:
            raise ValueError(f"teacher {teacher.name} gave {grid.dim} channels over {grid.image_size} for frame "
                             f"{frame.scene}/{frame.index}; expected {teacher.dim} channels over {expected_size}")
        counts[index] += 1
        index, uv = torch.from_numpy(index), torch.from_numpy(np.concatenate(pixels).astype(np.float32))
        for start in range(0, len(index), chunk):
            sums.index_add_(1, index[start:start + chunk], grid.sample(uv[start:start + chunk]).T)
    mask = torch.from_numpy(counts > 0)
    feat = sums[:, mask]
    del sums  # free the accumulator before the float16 copy
    feat /= torch.from_numpy(counts)[mask]
    return FusedFeatures(feat.T.to(torch.float16, memory_format=torch.contiguous_format), mask, counts)


def fuse_dataset(dataset: Dataset, teacher: Teacher, out_dir: str | Path, config: MultiViewFusionConfig,
                 scenes: Iterable[str] | None = None, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Fuse every scene (default: all splits) into `out_dir/<scene>_0.pt`; resumable scene by scene.

    A scene whose output exists is skipped unless `overwrite`; each file is written atomically, so an interrupted
    run leaves only whole files. Returns a summary with per-scene stats: points, fused points (seen at least
    once), mean views (over the fused points), frames used, frames skipped for an invalid pose, seconds.
    """
    out_dir = Path(out_dir)
    scenes = list(scenes) if scenes is not None else dataset.all_scenes()
    for scene in scenes:
        dataset.info.split_of(scene)  # fail before any work on a scene the dataset does not have
    # the export applies the frame stride itself, so skipped frames are never read from disk
    per_frame = dataclasses.replace(config, frame_stride=1)
    stats: dict[str, dict[str, Any]] = {}
    for scene in tqdm(scenes, desc="scenes", unit="scene", disable=not progress):
        path = out_dir / fused_filename(scene)
        if path.exists() and not overwrite:
            stats[scene] = {"skipped": True}
            continue
        start = time.perf_counter()
        cloud = dataset.scene_cloud(scene)
        export = dataset.export_scene(scene)
        fused = fuse_scene(cloud.coords, export.frames(config.frame_stride), teacher, per_frame, progress)
        write_fused(path, fused)
        seen = fused.view_counts[fused.mask_full]
        stats[scene] = {
            "skipped": False,
            "points": cloud.num_points,
            "fused_points": int(seen.numel()),
            "mean_views": float(seen.float().mean()) if seen.numel() else 0.0,
            "frames": len(export.indices[::config.frame_stride]) - export.skipped_poses,
            "invalid_poses": export.skipped_poses,
            "seconds": time.perf_counter() - start,
        }
    return {
        "out_dir": str(out_dir),
        "teacher": teacher.name,
        "dim": teacher.dim,
        "fused": sum(not s["skipped"] for s in stats.values()),
        "skipped": sum(s["skipped"] for s in stats.values()),
        "scenes": stats,
    }
