"""Sparse voxel tensors: integer coordinates, features, a tensor stride and the kernel-map cache of one forward pass.

Coordinates are (N, 4) integers (batch, x, y, z) on the grid of the tensor's own level: a voxel of a stride-s tensor
covers s x s x s finest voxels, and its coordinate is floor(finest coordinate / s) (the torchsparse 2.1 and spconv
convention). Every level made by `voxelize` and the portable backend keeps its rows sorted by `pack_keys`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import torch

COORD_BITS = 18                      # per axis: +-131072 voxels, +-2.6 km at 2 cm
BATCH_BITS = 9                       # up to 512 batch items; 9 + 3 * 18 = 63 bits
MAX_BATCH = 1 << BATCH_BITS
_OFFSET = 1 << (COORD_BITS - 1)
_MASK = (1 << COORD_BITS) - 1
_MARGIN = 4                          # neighbour keys (key + offset delta) of in-range coordinates never wrap

T = TypeVar("T")


def pack_keys(coords: torch.Tensor) -> torch.Tensor:
    """(N, 4) integer (batch, x, y, z) -> (N,) int64 keys, ordered by batch, then x, y, z; raises if out of range.

    Keys are additive: the key of (b, x + dx, y + dy, z + dz) is key + `key_deltas` of (dx, dy, dz) (|d| <= 4).
    """
    coords = coords.to(torch.int64)
    xyz = coords[:, 1:] + _OFFSET
    if coords.numel() and (int(xyz.min()) < _MARGIN or int(xyz.max()) > _MASK - _MARGIN):
        raise ValueError(f"voxel coordinates outside +-{_OFFSET - _MARGIN} cannot be packed")
    if coords.numel() and (int(coords[:, 0].min()) < 0 or int(coords[:, 0].max()) >= MAX_BATCH):
        raise ValueError(f"batch indices must lie in [0, {MAX_BATCH})")
    return (coords[:, 0] << (3 * COORD_BITS)) | (xyz[:, 0] << (2 * COORD_BITS)) | (xyz[:, 1] << COORD_BITS) | xyz[:, 2]


def unpack_keys(keys: torch.Tensor) -> torch.Tensor:
    """(N,) int64 keys -> (N, 4) int64 (batch, x, y, z); inverse of `pack_keys`."""
    fields = [keys >> (3 * COORD_BITS)] + [((keys >> (s * COORD_BITS)) & _MASK) - _OFFSET for s in (2, 1, 0)]
    return torch.stack(fields, dim=1)


def key_deltas(offsets: torch.Tensor) -> torch.Tensor:
    """(K, 3) integer offsets -> (K,) int64 key increments (see `pack_keys`)."""
    offsets = offsets.to(torch.int64)
    return offsets[:, 0] * (1 << (2 * COORD_BITS)) + offsets[:, 1] * (1 << COORD_BITS) + offsets[:, 2]


@dataclass(eq=False)
class KernelMapCache:
    """Kernel maps of one forward pass, shared by every tensor derived from one input.

    `maps` holds, per (stride, kernel size, kind), the portable backend's maps: "subm" (submanifold neighbours of
    a level) and "down" (stride-2 map from a level to the next, which the transposed convolution back onto that
    level reuses). Other backends keep their own state in `backend_state`.
    """

    maps: dict[tuple[int, int, str], Any] = field(default_factory=dict)
    backend_state: dict[str, Any] = field(default_factory=dict)

    def get(self, key: tuple[int, int, str], build: Callable[[], T]) -> T:
        """The map under `key`, built with `build()` on first use."""
        if key not in self.maps:
            self.maps[key] = build()
        return self.maps[key]


@dataclass(eq=False)
class SparseTensor:
    """Features (N, C) of N voxels with coordinates (N, 4) (batch, x, y, z) at tensor stride `stride`."""

    coords: torch.Tensor
    features: torch.Tensor
    stride: int = 1
    cache: KernelMapCache = field(default_factory=KernelMapCache)

    def __post_init__(self) -> None:
        if self.coords.ndim != 2 or self.coords.shape[1] != 4 or self.coords.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"coords must be (N, 4) int32 / int64, got {tuple(self.coords.shape)} {self.coords.dtype}")
        if self.features.ndim != 2 or self.features.shape[0] != self.coords.shape[0]:
            raise ValueError(f"features must be (N, C) with N = {self.coords.shape[0]}, got "
                             f"{tuple(self.features.shape)}")

    def replace_feature(self, features: torch.Tensor) -> SparseTensor:
        """The same voxels (and cache) with other features (spconv's name, so modules work on both)."""
        return SparseTensor(self.coords, features, self.stride, self.cache)


def cat_features(first: Any, second: Any) -> Any:
    """Channel-wise concatenation of two tensors over the same voxels in the same order (ours or spconv's)."""
    if first.features.shape[0] != second.features.shape[0]:
        raise ValueError(f"cannot concatenate features of {first.features.shape[0]} and "
                         f"{second.features.shape[0]} voxels")
    return first.replace_feature(torch.cat((first.features, second.features), dim=1))


def voxelize(points: torch.Tensor, voxel_size: float, batch: torch.Tensor | None = None,
             features: torch.Tensor | None = None) -> tuple[SparseTensor, torch.Tensor]:
    """Points (N, 3) -> (stride-1 tensor of their unique voxels, point_to_voxel (N,) row index per point).

    A voxel's features are the mean of its points' `features` (N, C); without features every voxel gets the
    constant 1. `batch` (N,) assigns points to batch items (default: all 0). Voxels are sorted by `pack_keys`.
    """
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {tuple(points.shape)}")
    grid = torch.floor(points.to(torch.float64) / voxel_size).to(torch.int64)
    batch_column = (torch.zeros(len(points), dtype=torch.int64, device=points.device) if batch is None
                    else batch.to(device=points.device, dtype=torch.int64))
    keys, point_to_voxel = torch.unique(pack_keys(torch.cat((batch_column[:, None], grid), dim=1)),
                                        return_inverse=True)
    coords = unpack_keys(keys).to(torch.int32)
    if features is None:
        voxel_features = torch.ones((len(keys), 1), dtype=points.dtype, device=points.device)
    else:
        counts = torch.bincount(point_to_voxel, minlength=len(keys)).to(features.dtype)
        sums = features.new_zeros((len(keys), features.shape[1])).index_add_(0, point_to_voxel, features)
        voxel_features = sums / counts[:, None]
    return SparseTensor(coords, voxel_features), point_to_voxel


def devoxelize(voxels: SparseTensor, point_to_voxel: torch.Tensor) -> torch.Tensor:
    """(N, C) features of the points: each point gets its voxel's row (the inverse of `voxelize`)."""
    return voxels.features[point_to_voxel]
