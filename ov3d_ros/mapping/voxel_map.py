"""The incremental world-frame voxel map: per-voxel mean position and colour, observation count and time.

A voxel's colour is the mean of its coloured points only (`PointBatch.coloured`): one seen by the camera and an
uncoloured LiDAR has the camera's colour, one seen only by uncoloured LiDAR has LIDAR_GREY and colour count 0.

Memory is bounded by `max_voxels`. Eviction policy: when an integration leaves more voxels than the budget, the
voxels seen longest ago are removed first, and among equally old ones those with the fewest observations, so
the area around the robot and well-observed structure survive a long run.

`save` / `load` write and read the whole map as one `.npz` file (atomically), so a node restarted after a crash
resumes where its last snapshot left it.
"""
from __future__ import annotations

import os
import threading

import numpy as np

from ov3d_ros.files import atomic_path
from ov3d_ros.geometry.voxels import pack_coords, unpack_keys, voxel_coords
from ov3d_ros.mapping.sensor_points import LIDAR_GREY, PointBatch
from ov3d_ros.messages.pointcloud import pack_rgb

MAP_POINT_DTYPE = np.dtype([("x", np.float32), ("y", np.float32), ("z", np.float32), ("rgb", np.float32),
                            ("count", np.uint32), ("observations", np.uint32), ("colour_count", np.uint32)])
SNAPSHOT_FORMAT = "ov3d-voxel-map-1"


class MapFileError(ValueError):
    """A map file is missing, unreadable or does not fit this map."""


class VoxelMap:
    """Sorted-key voxel hash; integration is vectorised (unique + searchsorted), thread-safe."""

    def __init__(self, voxel_size: float, max_voxels: int) -> None:
        if voxel_size <= 0 or max_voxels < 1:
            raise ValueError("voxel_size must be positive and max_voxels at least 1")
        self.voxel_size = float(voxel_size)
        self.max_voxels = int(max_voxels)
        self.evicted = 0
        self.version = 0              # increases with every change of the map's content
        self.newest_stamp_ns = 0      # stamp of the newest reading integrated
        self._keys = np.empty(0, np.int64)
        self._sum_xyz = np.empty((0, 3), np.float64)
        self._sum_rgb = np.empty((0, 3), np.float64)
        self._count = np.empty(0, np.int64)
        self._colour_count = np.empty(0, np.int64)     # points of the voxel with a real colour (in _sum_rgb)
        self._observations = np.empty(0, np.int64)     # readings (frames, scans) that hit the voxel
        self._last_seen = np.empty(0, np.int64)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return int(self._keys.size)

    def integrate(self, batch: PointBatch) -> int:
        """Add a batch of map-frame points; returns how many new voxels it created."""
        if len(batch) == 0:
            return 0
        keys = pack_coords(voxel_coords(batch.xyz, self.voxel_size))
        unique, inverse = np.unique(keys, return_inverse=True)
        counts = np.bincount(inverse, minlength=unique.size)
        sum_xyz = np.stack([np.bincount(inverse, batch.xyz[:, i], unique.size) for i in range(3)], axis=1)
        if batch.coloured:
            sum_rgb = np.stack([np.bincount(inverse, batch.rgb[:, i], unique.size) for i in range(3)], axis=1)
            colour_counts = counts
        else:
            sum_rgb, colour_counts = np.zeros((unique.size, 3)), np.zeros_like(counts)
        with self._lock:
            pos = np.searchsorted(self._keys, unique)
            found = pos < self._keys.size
            found[found] = self._keys[pos[found]] == unique[found]
            hit = pos[found]
            self._sum_xyz[hit] += sum_xyz[found]
            self._sum_rgb[hit] += sum_rgb[found]
            self._count[hit] += counts[found]
            self._colour_count[hit] += colour_counts[found]
            self._observations[hit] += 1
            self._last_seen[hit] = np.maximum(self._last_seen[hit], batch.stamp_ns)
            new, at = ~found, pos[~found]
            self._keys = np.insert(self._keys, at, unique[new])
            self._sum_xyz = np.insert(self._sum_xyz, at, sum_xyz[new], axis=0)
            self._sum_rgb = np.insert(self._sum_rgb, at, sum_rgb[new], axis=0)
            self._count = np.insert(self._count, at, counts[new])
            self._colour_count = np.insert(self._colour_count, at, colour_counts[new])
            self._observations = np.insert(self._observations, at, 1)
            self._last_seen = np.insert(self._last_seen, at, batch.stamp_ns)
            self._evict_over_budget()
            self.version += 1
            self.newest_stamp_ns = max(self.newest_stamp_ns, batch.stamp_ns)
        return int(new.sum())

    def _evict_over_budget(self) -> None:
        excess = self._keys.size - self.max_voxels
        if excess <= 0:
            return
        victims = np.lexsort((self._count, self._last_seen))[:excess]
        keep = np.ones(self._keys.size, dtype=bool)
        keep[victims] = False
        self._keys, self._sum_xyz, self._sum_rgb = self._keys[keep], self._sum_xyz[keep], self._sum_rgb[keep]
        self._count, self._colour_count = self._count[keep], self._colour_count[keep]
        self._observations, self._last_seen = self._observations[keep], self._last_seen[keep]
        self.evicted += excess

    def voxel_coords(self) -> np.ndarray:
        """(N, 3) int64 integer voxel coordinates, in key order."""
        with self._lock:
            return unpack_keys(self._keys)

    def to_points(self) -> np.ndarray:
        """The map as a structured array: mean position, packed rgb (LIDAR_GREY where no point had a colour),
        point count, observations (readings that hit the voxel) and colour_count (points with a real colour)."""
        with self._lock:
            xyz = (self._sum_xyz / np.maximum(self._count, 1)[:, None]).astype(np.float32)
            coloured = self._colour_count[:, None]
            mean_rgb = np.where(coloured > 0, self._sum_rgb / np.maximum(coloured, 1), LIDAR_GREY)
            rgb = np.clip(np.rint(mean_rgb), 0, 255).astype(np.uint8)
            out = np.empty(self._keys.size, MAP_POINT_DTYPE)
            out["x"], out["y"], out["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
            out["rgb"] = pack_rgb(rgb)
            out["count"] = np.minimum(self._count, np.iinfo(np.uint32).max)
            out["observations"] = np.minimum(self._observations, np.iinfo(np.uint32).max)
            out["colour_count"] = np.minimum(self._colour_count, np.iinfo(np.uint32).max)
        return out

    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the whole map to `path` (.npz) atomically; returns the voxel count written."""
        with self._lock:
            arrays = {"keys": self._keys, "sum_xyz": self._sum_xyz, "sum_rgb": self._sum_rgb, "count": self._count,
                      "colour_count": self._colour_count, "observations": self._observations,
                      "last_seen": self._last_seen}
            counters = np.array([self.evicted, self.newest_stamp_ns], dtype=np.int64)
            with atomic_path(path) as temporary:
                with open(temporary, "wb") as stream:
                    np.savez(stream, format=np.array(SNAPSHOT_FORMAT), voxel_size=np.float64(self.voxel_size),
                             counters=counters, **arrays)
            return int(self._keys.size)

    def load(self, path: str | os.PathLike[str]) -> int:
        """Replace the map's content with the map saved at `path`; returns its voxel count. MapFileError when the
        file is missing or unreadable, or was saved at another voxel size; the map is then unchanged. A map over
        this map's budget is trimmed by the eviction policy. A snapshot from before colour counts were kept has
        every point taken as coloured."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if str(data["format"]) != SNAPSHOT_FORMAT:
                    raise MapFileError(f"{path}: not an ov3d voxel map ({SNAPSHOT_FORMAT})")
                voxel_size, counters = float(data["voxel_size"]), data["counters"]
                arrays = [data[name] for name in ("keys", "sum_xyz", "sum_rgb", "count", "observations", "last_seen")]
                colour_count = data["colour_count" if "colour_count" in data.files else "count"]
        except MapFileError:
            raise
        except (OSError, KeyError, ValueError) as exc:
            raise MapFileError(f"{path}: not a readable map file ({type(exc).__name__}: {exc})") from None
        keys, sum_xyz, sum_rgb, count, observations, last_seen = arrays
        if not np.isclose(voxel_size, self.voxel_size):
            raise MapFileError(f"{path} was saved with {voxel_size * 100:.1f} cm voxels, this map uses "
                               f"{self.voxel_size * 100:.1f} cm")
        n = keys.size
        if sum_xyz.shape != (n, 3) or sum_rgb.shape != (n, 3) or count.shape != (n,) or last_seen.shape != (n,) \
                or observations.shape != (n,) or colour_count.shape != (n,) \
                or (n > 1 and not np.all(np.diff(keys) > 0)):
            raise MapFileError(f"{path}: inconsistent map arrays")
        with self._lock:
            self._keys, self._sum_xyz, self._sum_rgb = keys.astype(np.int64), sum_xyz.astype(np.float64), \
                sum_rgb.astype(np.float64)
            self._count, self._last_seen = count.astype(np.int64), last_seen.astype(np.int64)
            self._colour_count = colour_count.astype(np.int64)
            self._observations = observations.astype(np.int64)
            self.evicted, self.newest_stamp_ns = int(counters[0]), int(counters[1])
            self._evict_over_budget()
            self.version += 1
            return int(self._keys.size)
