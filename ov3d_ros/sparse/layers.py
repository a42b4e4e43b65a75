"""Sparse layers (nn.Module, SparseTensor -> SparseTensor, so they chain in nn.Sequential).

Every convolution keeps its weight as (K, C_in, C_out), K = kernel volume, in the offset order documented in
`ov3d_ros.sparse.kernel_maps` (x slowest, z fastest); the selected backend (`ov3d_ros.sparse.backends`) runs it.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ov3d_ros.sparse.backends import ConvKind, backend_for
from ov3d_ros.sparse.tensor import SparseTensor


class _SparseConv(nn.Module):
    """A convolution with weight (K, C_in, C_out) and optional bias (C_out,)."""

    kind: ClassVar[ConvKind]

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, fan_in_volume: int,
                 bias: bool) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        bound = 1.0 / math.sqrt(in_channels * fan_in_volume)
        self.weight = nn.Parameter(torch.empty(kernel_size ** 3, in_channels, out_channels).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound)) if bias else None

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"bias={self.bias is not None}")

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = backend_for(x.features).conv(x, self.weight, self.kind, self.kernel_size)
        return out if self.bias is None else out.replace_feature(out.features + self.bias)


class SubmanifoldConv3d(_SparseConv):
    """Submanifold convolution (odd kernel, 3 by default): outputs exactly on the input voxels."""

    kind = "subm"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = False) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"submanifold kernels must have an odd size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, kernel_size ** 3, bias)


class DownConv3d(_SparseConv):
    """2x2x2 convolution with stride 2: one output per occupied coarse voxel."""

    kind = "down"

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, 2, 8, bias)


class UpConv3d(_SparseConv):
    """Transposed 2x2x2 stride-2 convolution onto exactly the voxels of the finer level that the matching
    DownConv3d came from (same forward pass), in their order; each fine voxel reads its one coarse parent."""

    kind = "up"

    def __init__(self, in_channels: int, out_channels: int, bias: bool = False) -> None:
        super().__init__(in_channels, out_channels, 2, 1, bias)


class PointwiseConv3d(_SparseConv):
    """1x1x1 convolution (a linear layer per voxel); weight (1, C_in, C_out), bias by default."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, 1, bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        weight = self.weight[0]
        return x.replace_feature(x.features @ weight if self.bias is None
                                 else torch.addmm(self.bias, x.features, weight))


class SparseInstanceNorm(nn.Module):
    """Normalises each channel over the voxels of each batch item (one map, room or crop), then scales and shifts.

    Training and inference normalise alike: a map is normalised by its own statistics whether it is labelled
    online, offline, with colour or without, never by running statistics pooled over other rooms (with one item
    per batch this is BatchNorm1d in training mode, so the two train identically; README, "Normalisation")."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.eps = num_features, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feature(self.normalise(x.features, x.coords[:, 0]))

    def normalise(self, features: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """(N, C) features of voxels in batch items `batch` (N,) -> normalised per item, scaled and shifted."""
        if len(features) == 0:
            return features
        if bool(batch.min() == batch.max()):
            return F.batch_norm(features, None, None, self.weight, self.bias, True, 0.0, self.eps)
        batch = batch.long()
        items = int(batch.max()) + 1
        count = torch.bincount(batch, minlength=items).clamp_min(1).to(features.dtype).unsqueeze(1)
        mean = features.new_zeros(items, features.shape[1]).index_add_(0, batch, features) / count
        centred = features - mean[batch]
        var = features.new_zeros(items, features.shape[1]).index_add_(0, batch, centred * centred) / count
        return centred * torch.rsqrt(var[batch] + self.eps) * self.weight + self.bias


class SparseReLU(nn.ReLU):
    """ReLU of the voxel features."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace_feature(F.relu(x.features, inplace=self.inplace))
