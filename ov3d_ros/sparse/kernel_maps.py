"""Kernel maps of the portable backend: which input row feeds which output row through which weight slice.

Kernel offsets, and so the rows of every weight (K, C_in, C_out), are in one fixed order for all layers and
backends: x slowest, z fastest, each axis ascending, i.e. for a 3x3x3 kernel index k = 9 (dx + 1) + 3 (dy + 1) +
(dz + 1) with d in {-1, 0, 1}, and for the 2x2x2 stride-2 kernels k = 4 dx + 2 dy + dz with d in {0, 1}. The
convolutions are cross-correlations: a submanifold output at c reads the input at c + d_k; a stride-2 output at o
reads the inputs at 2 o + d_k; the transposed convolution writes the coarse voxel o into the fine voxel 2 o + d_k.

Submanifold maps are neighbour tables (for the output-stationary convolution), stride-2 maps pair lists per
offset. Neighbours are found by coordinate hashing: through a dense index grid over the level's bounding box while
that is small (at most 64 cells per voxel), else through int64 keys (`pack_keys`: a neighbour's key is the key plus
a constant per offset) with one `searchsorted` into the level's sorted keys.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ov3d_ros.sparse.tensor import key_deltas, pack_keys, unpack_keys

_DENSE_CELLS_PER_VOXEL = 64     # neighbour search through a dense grid up to this many bounding-box cells per voxel


def kernel_offsets(kernel_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(K, 3) int64 offsets in the fixed order (x slowest); odd sizes are centred, size 2 is {0, 1}^3."""
    axis = torch.arange(kernel_size, device=device) - (kernel_size - 1) // 2
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)


@dataclass(frozen=True)
class NeighbourMap:
    """Submanifold map of a level: table[o, j] = the row of o's neighbour at kernel offset columns[j], or
    num_voxels where there is none. Offsets with no neighbour anywhere are left out (columns is symmetric)."""

    table: torch.Tensor
    columns: tuple[int, ...]
    num_voxels: int
    kernel_volume: int


@dataclass(frozen=True)
class KernelMap:
    """For each non-empty kernel offset: out[outputs[j]] += in[inputs[j]] @ weight[kernel_index[j]].

    `inputs_once` / `outputs_once`: every input (output) row occurs in exactly one pair over all offsets.
    """

    kernel_index: tuple[int, ...]
    inputs: tuple[torch.Tensor, ...]
    outputs: tuple[torch.Tensor, ...]
    num_inputs: int
    num_outputs: int
    inputs_once: bool = False
    outputs_once: bool = False

    @property
    def max_pairs(self) -> int:
        """The largest number of pairs of one offset (the size of the gather buffers)."""
        return max((len(rows) for rows in self.inputs), default=0)

    def transpose(self) -> KernelMap:
        """The same pairs read backwards (transposed convolution, input gradients)."""
        return KernelMap(self.kernel_index, self.outputs, self.inputs, self.num_outputs, self.num_inputs,
                         self.outputs_once, self.inputs_once)


@dataclass(frozen=True)
class DownMap:
    """The stride-2 map from a level (`fine_coords`) to the next (`coarse_coords`), and its transpose."""

    fine_coords: torch.Tensor
    coarse_coords: torch.Tensor
    down: KernelMap
    up: KernelMap


def _neighbour_rows(coords: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every offset (K, 3) and voxel: whether a voxel sits at its coordinate + offset, and that voxel's row
    (valid where found); both (K, N). A dense index grid over the bounding box when it is small (at most
    _DENSE_CELLS_PER_VOXEL cells per voxel), else a `searchsorted` of packed keys."""
    count = len(coords)
    if count:
        pad = torch.tensor([0, 1, 1, 1], device=coords.device) * int(offsets.abs().max())
        low = coords.min(dim=0).values.to(torch.int64) - pad
        batches, nx, ny, nz = (coords.max(dim=0).values.to(torch.int64) + pad - low + 1).tolist()
        if batches * nx * ny * nz <= _DENSE_CELLS_PER_VOXEL * count:
            strides = torch.tensor([nx * ny * nz, ny * nz, nz, 1], device=coords.device)
            linear = (coords.to(torch.int64) - low) @ strides
            grid = torch.full((batches * nx * ny * nz,), -1, dtype=torch.int64, device=coords.device)
            grid[linear] = torch.arange(count, device=coords.device)
            rows = grid[linear[None, :] + (offsets.to(torch.int64) @ strides[1:])[:, None]]
            return rows >= 0, rows
    keys = pack_keys(coords)
    ordered, order = torch.sort(keys)
    queries = keys[None, :] + key_deltas(offsets)[:, None]
    position = torch.searchsorted(ordered, queries).clamp_(max=max(count - 1, 0))
    return ordered[position] == queries, order[position]


def build_submanifold_map(coords: torch.Tensor, kernel_size: int = 3) -> NeighbourMap:
    """Submanifold neighbour table of one level (outputs on the input voxels) for an odd `kernel_size`.

    Only half of the offsets are searched: o's neighbour i at offset d has o as its neighbour at offset -d.
    """
    if kernel_size % 2 != 1:
        raise ValueError(f"submanifold kernels must have an odd size, got {kernel_size}")
    count, volume = len(coords), kernel_size ** 3
    centre = volume // 2
    found, position = _neighbour_rows(coords, kernel_offsets(kernel_size, coords.device)[centre + 1:])
    half, rows = torch.nonzero(found, as_tuple=True)
    neighbours = position[half, rows]
    table = torch.full((count, volume), count, dtype=torch.int64, device=coords.device)
    table[:, centre] = torch.arange(count, device=coords.device)
    table[rows, centre + 1 + half] = neighbours
    table[neighbours, centre - 1 - half] = rows
    columns = torch.nonzero((table < count).any(dim=0)).squeeze(1)
    return NeighbourMap(table[:, columns].contiguous(), tuple(columns.tolist()), count, volume)


def build_down_map(coords: torch.Tensor) -> DownMap:
    """The 2x2x2 stride-2 map of a level: every fine voxel feeds exactly one coarse voxel, through the weight
    slice of its position inside the coarse voxel. Coarse voxels are sorted by `pack_keys`."""
    fine = coords.to(torch.int64)
    coarse = torch.cat((fine[:, :1], fine[:, 1:] >> 1), dim=1)      # arithmetic shift: floor(c / 2), also c < 0
    coarse_keys, parent = torch.unique(pack_keys(coarse), return_inverse=True)
    parity = fine[:, 1:] & 1
    slot = parity[:, 0] * 4 + parity[:, 1] * 2 + parity[:, 2]
    groups = torch.argsort(slot, stable=True).split(torch.bincount(slot, minlength=8).tolist())
    kept = [(k, rows) for k, rows in enumerate(groups) if len(rows)]
    down = KernelMap(tuple(k for k, _ in kept), tuple(rows for _, rows in kept),
                     tuple(parent[rows] for _, rows in kept), len(coords), len(coarse_keys), inputs_once=True)
    return DownMap(coords, unpack_keys(coarse_keys).to(coords.dtype), down, down.transpose())
