"""Benchmark: our multi-view fusion (`fuse_scene`) against a plain per-frame numpy reference on one synthetic room.

The scene: points sampled uniformly on the floor and walls of a 6 x 5 x 3 m room and on the faces of four boxes
standing in it; cameras on an ellipse around the room's centre, looking across it; depth ray-cast exactly from the
same boxes (so boxes occlude the walls behind them), at half the colour resolution as in ScanNet; the teacher is
one fixed random (D, 30, 40) grid of unit vectors for every frame.

Speed: wall time of the fusion call alone (inputs already in memory, one warm-up run on a small subset first);
points fused per second = scene points / that time.

Memory: each implementation runs in its own child process (multiprocessing "spawn") that builds the same scene
from the seed and warms up; then the kernel's peak-RSS mark is reset (writing 5 to /proc/self/clear_refs) and, after
the timed run, VmHWM is read. `peak_mb` is that peak for the whole process (interpreter, torch, inputs);
`peak_increase_mb` is the peak minus the RSS just before the run: what the fusion itself needed. Where clear_refs
cannot be written, both come from the lifetime ru_maxrss (the increase then includes the warm-up) and
`memory_method` says so.
"""
from __future__ import annotations

import multiprocessing
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ov3d_ros.config import MultiViewFusionConfig
from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.geometry.camera import PinholeCamera
from ov3d_ros.teachers.base import FeatureGrid, Teacher
from ov3d_ros.teachers.multiview import fuse_scene

Box = tuple[np.ndarray, np.ndarray]  # (lower corner, upper corner) of an axis-aligned box

ROOM: Box = (np.array([0.0, 0.0, 0.0]), np.array([6.0, 5.0, 3.0]))
BOXES: tuple[Box, ...] = tuple((np.array(lo), np.array(hi)) for lo, hi in (
    ((1.0, 1.0, 0.0), (2.0, 1.8, 0.8)),
    ((4.0, 3.0, 0.0), (5.2, 4.2, 1.2)),
    ((2.5, 3.5, 0.0), (3.3, 4.5, 0.5)),
    ((4.5, 0.8, 0.0), (5.3, 1.6, 1.0)),
))
GRID_SHAPE = (30, 40)
AGREEMENT_TOLERANCE = 1e-3


class GridTeacher(Teacher):
    """The same feature grid (D, Gh, Gw) for every frame."""

    name = "grid"

    def __init__(self, grid: torch.Tensor) -> None:
        self.grid = grid.to(torch.float32).contiguous()
        self.dim = int(grid.shape[0])

    def features(self, frame: PosedFrame) -> FeatureGrid:
        return FeatureGrid(self.grid, (frame.color_camera.width, frame.color_camera.height))


def random_unit_grid(dim: int, seed: int, shape: tuple[int, int] = GRID_SHAPE) -> torch.Tensor:
    """(dim, *shape) random unit vectors, one per cell (like normalised CLIP features)."""
    grid = torch.randn((dim, *shape), generator=torch.Generator().manual_seed(seed))
    return grid / grid.norm(dim=0, keepdim=True)


def look_at(position: Sequence[float], target: Sequence[float]) -> np.ndarray:
    """4x4 camera-to-world pose of an optical frame (z forward, x right, y down) at `position` facing `target`.

    The world's z axis is up; the camera must not look straight up or down.
    """
    position = np.asarray(position, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    pose = np.eye(4)
    pose[:3, :3] = np.column_stack((right, np.cross(forward, right), forward))
    pose[:3, 3] = position
    return pose


def _slabs(origin: np.ndarray, directions: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameters where rays enter and leave an axis-aligned box (enter > leave: a miss)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = (box[0] - origin) / directions, (box[1] - origin) / directions
    return np.minimum(low, high).max(axis=1), np.maximum(low, high).min(axis=1)


def render_depth(camera: PinholeCamera, camera_to_world: np.ndarray, room: Box = ROOM,
                 boxes: Sequence[Box] = BOXES) -> np.ndarray:
    """Exact (H, W) float32 depth of a camera inside `room` (its inner walls) with solid `boxes` in it."""
    u, v = np.meshgrid(np.arange(camera.width), np.arange(camera.height))
    rays = np.stack(((u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, np.ones(u.shape)), axis=-1)
    # camera-frame rays have z = 1, so the ray parameter of a hit is its depth
    directions = rays.reshape(-1, 3) @ camera_to_world[:3, :3].T
    origin = camera_to_world[:3, 3]
    depth = _slabs(origin, directions, room)[1]
    for box in boxes:
        enter, leave = _slabs(origin, directions, box)
        depth = np.where((enter <= leave) & (enter > 0), np.minimum(depth, enter), depth)
    return depth.reshape(camera.height, camera.width).astype(np.float32)


def box_faces(box: Box, skip: tuple[str, ...] = ()) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Faces (corner, edge, edge) of a box; `skip` may hold "bottom" and "top"."""
    low, high = box
    faces = []
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        edges = [np.eye(3)[a] * (high[a] - low[a]) for a in others]
        for side, name in ((low, "bottom"), (high, "top")):
            if axis == 2 and name in skip:
                continue
            corner = low.astype(np.float64).copy()
            corner[axis] = side[axis]
            faces.append((corner, *edges))
    return faces


def sample_faces(faces: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], count: int,
                 rng: np.random.Generator) -> np.ndarray:
    """`count` (N, 3) float32 points uniform over the union of rectangular faces."""
    areas = np.array([np.linalg.norm(np.cross(e1, e2)) for _, e1, e2 in faces])
    per_face = rng.multinomial(count, areas / areas.sum())
    parts = [corner + rng.random((n, 1)) * e1 + rng.random((n, 1)) * e2
             for (corner, e1, e2), n in zip(faces, per_face)]
    return np.concatenate(parts).astype(np.float32)


def synthetic_room(points: int, frames: int, width: int, height: int, seed: int
                   ) -> tuple[np.ndarray, list[PosedFrame]]:
    """The benchmark scene: surface points and posed frames (grey colour, exact half-resolution depth)."""
    rng = np.random.default_rng(seed)
    faces = box_faces(ROOM, skip=("top",)) + [f for box in BOXES for f in box_faces(box, skip=("bottom",))]
    cloud = sample_faces(faces, points, rng)
    focal = 525.0 * width / 640.0
    color_camera = PinholeCamera(width, height, focal, focal, (width - 1) / 2, (height - 1) / 2)
    depth_camera = color_camera.scaled(0.5, 0.5)
    centre = (ROOM[0] + ROOM[1]) / 2
    color = np.full((height, width, 3), 128, dtype=np.uint8)
    posed = []
    for k, angle in enumerate(np.linspace(0.0, 2 * np.pi, frames, endpoint=False)):
        position = centre + [2.0 * np.cos(angle), 1.5 * np.sin(angle), 1.5 + 0.1 * np.sin(3 * angle) - centre[2]]
        target = centre + [*rng.uniform(-0.5, 0.5, 2), 0.8 - centre[2]]
        pose = look_at(position, target)
        posed.append(PosedFrame("bench", k, color, color_camera, render_depth(depth_camera, pose), depth_camera,
                                pose))
    return cloud, posed


def _nearest_inside(u: np.ndarray, v: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    return (np.floor(u + 0.5) >= 0) & (np.floor(u + 0.5) < camera.width) & (np.floor(v + 0.5) >= 0) \
        & (np.floor(v + 0.5) < camera.height)


def reference_fusion(points: np.ndarray, frames: Sequence[PosedFrame], teacher: Teacher,
                     config: MultiViewFusionConfig) -> tuple[np.ndarray, np.ndarray]:
    """The textbook loop in numpy: per frame project, depth-test, sample bilinearly, add. Returns (feat, mask).

    Written independently of `fuse_scene` (its own projection, pixel rounding and bilinear weights), so that
    agreement between the two means something.
    """
    sums = np.zeros((len(points), teacher.dim), dtype=np.float32)
    counts = np.zeros(len(points), dtype=np.int64)
    for frame in frames:
        world_to_camera = np.linalg.inv(frame.camera_to_world)
        xyz = points.astype(np.float64) @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
        z = xyz[:, 2]
        dc, cc = frame.depth_camera, frame.color_camera
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = dc.fx * xyz[:, 0] / z + dc.cx, dc.fy * xyz[:, 1] / z + dc.cy
            candidate = np.flatnonzero((z > 0) & _nearest_inside(u, v, dc))
        measured = frame.depth_m[np.floor(v[candidate] + 0.5).astype(int), np.floor(u[candidate] + 0.5).astype(int)]
        zc = z[candidate]
        ok = ((measured >= config.min_depth_m) & (measured <= config.max_depth_m)
              & (np.abs(measured - zc) <= config.depth_tolerance_m + config.depth_tolerance_rel * zc))
        visible = candidate[ok]
        u, v = cc.fx * xyz[visible, 0] / z[visible] + cc.cx, cc.fy * xyz[visible, 1] / z[visible] + cc.cy
        inside = _nearest_inside(u, v, cc)
        visible, u, v = visible[inside], u[inside], v[inside]
        grid = teacher.features(frame).features.numpy().transpose(1, 2, 0)  # (Gh, Gw, D)
        gh, gw = grid.shape[:2]
        # pixel -> grid coordinate of cell centres, clamped at the outermost centres (border padding)
        gx = np.clip((u + 0.5) * gw / cc.width - 0.5, 0, gw - 1)
        gy = np.clip((v + 0.5) * gh / cc.height - 0.5, 0, gh - 1)
        x0, y0 = np.floor(gx).astype(int), np.floor(gy).astype(int)
        x1, y1 = np.minimum(x0 + 1, gw - 1), np.minimum(y0 + 1, gh - 1)
        wx, wy = (gx - x0)[:, None], (gy - y0)[:, None]
        sums[visible] += ((1 - wy) * ((1 - wx) * grid[y0, x0] + wx * grid[y0, x1])
                          + wy * ((1 - wx) * grid[y1, x0] + wx * grid[y1, x1]))
        counts[visible] += 1
    mask = counts > 0
    return sums[mask] / counts[mask, None], mask


def _ours(points: np.ndarray, frames: Sequence[PosedFrame], teacher: Teacher,
          config: MultiViewFusionConfig) -> tuple[np.ndarray, np.ndarray]:
    fused = fuse_scene(points, frames, teacher, config)
    return fused.feat.numpy(), fused.mask_full.numpy()


# name -> implementation; the first is ours, the second the reference
IMPLEMENTATIONS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "ours: fuse_scene (torch, chunked)": _ours,
    "reference: numpy loop per frame": reference_fusion,
}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def reset_peak() -> tuple[int, str]:
    """RSS now (kB) after resetting the peak mark, and the method; the lifetime peak where that is impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kb("VmRSS"), "VmHWM after resetting it via /proc/self/clear_refs, per child process"
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "lifetime ru_maxrss of each child process"


def peak_rss_kb(method: str) -> int:
    """Peak RSS (kB) since `reset_peak`, measured by the method it returned."""
    return _status_kb("VmHWM") if method.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _measure(kind: str, scene: dict[str, int], out: str) -> dict[str, Any]:
    """In a child process: build the scene, warm up, run `kind` once under measurement, save its output."""
    points, frames = synthetic_room(scene["points"], scene["frames"], scene["width"], scene["height"], scene["seed"])
    teacher = GridTeacher(random_unit_grid(scene["dim"], scene["seed"]))
    config = MultiViewFusionConfig()
    run = IMPLEMENTATIONS[kind]
    run(points[:1000], frames[:2], teacher, config)
    baseline_kb, method = reset_peak()
    start = time.perf_counter()
    feat, mask = run(points, frames, teacher, config)
    seconds = time.perf_counter() - start
    peak_kb = peak_rss_kb(method)
    np.save(f"{out}.feat.npy", feat)
    np.save(f"{out}.mask.npy", mask)
    return {"name": kind, "seconds": seconds, "points_per_s": len(points) / seconds,
            "frames_per_s": len(frames) / seconds, "peak_mb": peak_kb / 1024,
            "peak_increase_mb": (peak_kb - baseline_kb) / 1024, "memory_method": method}


def run_fusion_benchmark(points: int = 100_000, frames: int = 30, width: int = 640, height: int = 480,
                         dim: int = 512, seed: int = 0) -> dict[str, Any]:
    """Time and measure ours and the reference on the same synthetic room; raises if their outputs disagree.

    Returns the scene parameters, "fused_points", "max_abs_diff", "speedup" (ours over the reference, in points
    per second) and "rows": per implementation (ours first) its name, seconds, points_per_s, frames_per_s,
    peak_mb, peak_increase_mb and memory_method.
    """
    scene = {"points": points, "frames": frames, "width": width, "height": height, "dim": dim, "seed": seed}
    context = multiprocessing.get_context("spawn")
    rows, feats, masks = [], [], []
    with tempfile.TemporaryDirectory(prefix="ov3d-bench-fusion-") as folder:
        for i, kind in enumerate(IMPLEMENTATIONS):
            # a fresh process per implementation: separate peak memory
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
                rows.append(executor.submit(_measure, kind, scene, f"{folder}/{i}").result())
            feats.append(np.load(f"{folder}/{i}.feat.npy").astype(np.float32))
            masks.append(np.load(f"{folder}/{i}.mask.npy"))
    mismatched = int((masks[0] != masks[1]).sum())
    if mismatched:
        raise RuntimeError(f"fusion benchmark: ours and the reference disagree on which of {points} points are "
                           f"seen ({mismatched} differ)")
    max_abs_diff = float(np.abs(feats[0] - feats[1]).max(initial=0.0))
    if max_abs_diff >= AGREEMENT_TOLERANCE:
        raise RuntimeError(f"fusion benchmark: ours and the reference differ by up to {max_abs_diff:.3g} "
                           f"(tolerance {AGREEMENT_TOLERANCE})")
    return {**scene, "fused_points": int(masks[0].sum()), "max_abs_diff": max_abs_diff,
            "speedup": rows[0]["points_per_s"] / rows[1]["points_per_s"], "rows": rows}
