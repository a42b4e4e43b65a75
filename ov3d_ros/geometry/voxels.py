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
