"""Voxel hashing: integer voxel coordinates packed into one int64 key (21 bits per axis, signed)."""
from __future__ import annotations

import numpy as np

_BITS = 21
_OFFSET = 1 << (_BITS - 1)          # coordinates in [-2**20, 2**20) voxels: +-21 km at 2 cm
_MASK = (1 << _BITS) - 1


def voxel_coords(xyz: np.ndarray, voxel_size: float) -> np.ndarray:
    """(N, 3) int64 voxel coordinates (floor) of (N, 3) points."""
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    return np.floor(np.asarray(xyz, dtype=np.float64) / voxel_size).astype(np.int64)


def pack_coords(coords: np.ndarray) -> np.ndarray:
    """(N, 3) int64 voxel coordinates -> (N,) int64 keys that sort x-major; raises if out of range."""
    shifted = np.asarray(coords, dtype=np.int64) + _OFFSET
    if shifted.size and (shifted.min() < 0 or shifted.max() > _MASK):
        raise ValueError(f"voxel coordinates outside +-{_OFFSET} voxels cannot be packed")
    return (shifted[:, 0] << (2 * _BITS)) | (shifted[:, 1] << _BITS) | shifted[:, 2]


def unpack_keys(keys: np.ndarray) -> np.ndarray:
    """(N,) int64 keys -> (N, 3) int64 voxel coordinates; inverse of pack_coords."""
    keys = np.asarray(keys, dtype=np.int64)
    coords = np.stack(((keys >> (2 * _BITS)) & _MASK, (keys >> _BITS) & _MASK, keys & _MASK), axis=1)
    return coords - _OFFSET


def neighbourhood_keys(coords: np.ndarray) -> np.ndarray:
    """Sorted packed keys of the voxels `coords` (N, 3) and of their 26 neighbours, each once."""
    steps = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
    return np.unique(pack_coords((np.asarray(coords, np.int64)[:, None, :] + steps[None]).reshape(-1, 3)))


GRID_PHASES = 16          # grid offsets are multiples of voxel_size / GRID_PHASES (stable as a map grows)
GRID_SAMPLE = 200_000     # points enough to find a map's dominant planes


def grid_offset(xyz: np.ndarray, voxel_size: float) -> np.ndarray:
    """(3,) float32 shift (each in [0, voxel_size)) that puts a map's dominant axis-aligned planes mid-voxel.

    Per axis, the circular mean of the coordinates modulo `voxel_size` goes to half a voxel. A plane on a voxel
    boundary (a floor at z = 0, walls at round coordinates) otherwise falls into two layers wherever sensor noise
    puts its points, and a network sees surfaces twice as thick as those it learnt from; where no plane dominates
    the shift is arbitrary and harmless. Rounded to voxel_size / GRID_PHASES."""
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    points = np.asarray(xyz).reshape(-1, 3)
    if not len(points):
        return np.zeros(3, np.float32)
    points = points[::max(1, len(points) // GRID_SAMPLE)].astype(np.float64)
    angle = ((2 * np.pi / voxel_size) * np.mod(points, voxel_size)).astype(np.float32)     # exact in float32
    phase = np.arctan2(np.sin(angle).mean(axis=0, dtype=np.float64),
                       np.cos(angle).mean(axis=0, dtype=np.float64)) / (2 * np.pi)         # (3,) in (-1/2, 1/2]
    steps = np.round((0.5 - phase) * GRID_PHASES) % GRID_PHASES
    return (steps * voxel_size / GRID_PHASES).astype(np.float32)
