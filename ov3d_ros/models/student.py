"""The 3D student: a MinkUNet18A-style sparse U-Net (the OpenScene / GGSD backbone) giving unit-norm features.

Layout for channels (c1..cn) and blocks (b1..bn): a stem 3x3x3 submanifold conv to c1 at the voxel level; n
encoder stages, each a 2x2x2 stride-2 conv then b_i residual basic blocks at width c_i; n decoder stages, each a
transposed 2x2x2 conv back onto the finer level, concatenation with that level's encoder output (the skip) and
residual blocks (the first one also narrows the concatenation); a linear head to `out_dim` and L2 normalisation.
Decoder widths mirror the encoder (the level's encoder width; c1 at the voxel level), and each decoder stage has
as many blocks as the encoder stage of its level. Differences from MinkUNet18A: a 3x3x3 stem (not 5x5x5) and a
mirrored (narrower) decoder, to fit CPU budgets.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ov3d_ros.geometry.voxels import grid_offset
from ov3d_ros.models.inputs import check_inputs, input_channels, point_inputs
from ov3d_ros.sparse.layers import (DownConv3d, PointwiseConv3d, SparseInstanceNorm, SparseReLU, SubmanifoldConv3d,
                                    UpConv3d)
from ov3d_ros.sparse.tensor import SparseTensor, cat_features, devoxelize, voxelize


@dataclass(frozen=True)
class StudentConfig:
    """Width and depth of the student.

    channels: encoder width per stage (one stage per stride-2 level); blocks: residual blocks per stage (>= 1);
    out_dim: output feature size (the teacher's / text encoder's space); voxel_size: metres; inputs: the per-point
    inputs besides geometry (`ov3d_ros.models.inputs`: "colour", "height"), () = geometry only.
    """

    channels: tuple[int, ...] = (32, 48, 64, 96)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    out_dim: int = 384
    voxel_size: float = 0.02
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        object.__setattr__(self, "inputs", check_inputs(self.inputs))
        if not self.channels or len(self.channels) != len(self.blocks):
            raise ValueError(f"channels and blocks need one entry per stage, got {self.channels} and {self.blocks}")
        if min(self.channels) < 1 or min(self.blocks) < 1:
            raise ValueError("every stage needs >= 1 channel and >= 1 block")
        if self.out_dim < 1 or self.voxel_size <= 0:
            raise ValueError("out_dim must be >= 1 and voxel_size > 0")

    @property
    def in_channels(self) -> int:
        """Channels of an input voxel: occupancy plus the inputs' channels."""
        return input_channels(self.inputs)


PRESETS: dict[str, StudentConfig] = {
    "tiny": StudentConfig(channels=(8, 16, 24, 32), blocks=(1, 1, 1, 1), out_dim=16),
    "default": StudentConfig(),
}


def student_config(preset: str = "default", **overrides: object) -> StudentConfig:
    """A preset ("tiny" for tests, "default") with some fields replaced."""
    if preset not in PRESETS:
        raise ValueError(f"unknown student preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[preset], **overrides)


class _NormalizeRows(torch.autograd.Function):
    """Rows scaled to unit L2 norm in place; backward (g - y (g . y)) / |x| in one new tensor."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        norms = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min_(1e-12)
        ctx.mark_dirty(x)
        y = x.div_(norms)
        ctx.save_for_backward(y, norms)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        y, norms = ctx.saved_tensors
        grad = grad.contiguous()
        dots = torch.bmm(grad.unsqueeze(1), y.unsqueeze(2)).squeeze(2)
        return torch.addcmul(grad, y, dots, value=-1).div_(norms)


def normalize_rows_(x: torch.Tensor) -> torch.Tensor:
    """F.normalize(x, dim=1) done in place on a tensor that nothing else needs (e.g. a matmul's output).

    The head's (N, out_dim) output is by far the largest tensor of the network: autograd's F.normalize makes
    several more of that size in backward (about as long as all the convolutions at 100k voxels), this one.
    """
    return _NormalizeRows.apply(x)


def _conv_bn_relu(conv: nn.Module, width: int) -> list[nn.Module]:
    return [conv, SparseInstanceNorm(width), SparseReLU()]


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3x3 convs with batch norm; a 1x1 conv on the shortcut when the width changes."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn_relu(SubmanifoldConv3d(in_channels, out_channels), out_channels),
                                  SubmanifoldConv3d(out_channels, out_channels), SparseInstanceNorm(out_channels))
        self.shortcut = (nn.Identity() if in_channels == out_channels else
                         nn.Sequential(PointwiseConv3d(in_channels, out_channels, bias=False),
                                       SparseInstanceNorm(out_channels)))
        self.relu = SparseReLU()

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = self.body(x)
        return self.relu(out.replace_feature(out.features + self.shortcut(x).features))


def _blocks(in_channels: int, out_channels: int, count: int) -> list[nn.Module]:
    return [BasicBlock(in_channels if i == 0 else out_channels, out_channels) for i in range(count)]


class DecoderStage(nn.Module):
    """Transposed conv onto the finer level, concatenation with its skip features, residual blocks."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, blocks: int) -> None:
        super().__init__()
        self.up = nn.Sequential(*_conv_bn_relu(UpConv3d(in_channels, out_channels), out_channels))
        self.blocks = nn.Sequential(*_blocks(out_channels + skip_channels, out_channels, blocks))

    def forward(self, x: SparseTensor, skip: SparseTensor) -> SparseTensor:
        return self.blocks(cat_features(self.up(x), skip))


class Student(nn.Module):
    """Sparse U-Net from points (or voxels) to unit-norm `out_dim` features."""

    def __init__(self, config: StudentConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or StudentConfig()
        widths = (config.channels[0], *config.channels)         # per level: the stem's, then each stage's
        self.stem = nn.Sequential(*_conv_bn_relu(SubmanifoldConv3d(config.in_channels, widths[0]), widths[0]))
        self.encoder = nn.ModuleList(
            nn.Sequential(*_conv_bn_relu(DownConv3d(widths[level], widths[level + 1]), widths[level + 1]),
                          *_blocks(widths[level + 1], widths[level + 1], config.blocks[level]))
            for level in range(len(config.channels)))
        self.decoder = nn.ModuleList(
            DecoderStage(widths[level + 1], widths[level], widths[level], config.blocks[max(level - 1, 0)])
            for level in reversed(range(len(config.channels))))
        self.head = PointwiseConv3d(widths[0], config.out_dim)

    def voxelize(self, points: torch.Tensor, features: torch.Tensor | None = None,
                 batch: torch.Tensor | None = None) -> tuple[SparseTensor, torch.Tensor]:
        """Points (N, 3) [+ per-point input features (N, in_channels - 1) from `point_inputs`] -> (input voxels,
        point_to_voxel (N,)). Each voxel's input is the constant 1 followed by the mean of its points' features."""
        extra = 0 if features is None else features.shape[1]
        if extra + 1 != self.config.in_channels:
            raise ValueError(f"the student takes {self.config.in_channels - 1} per-point input features, got {extra}")
        ones = torch.ones((len(points), 1), dtype=points.dtype, device=points.device)
        point_features = ones if features is None else torch.cat((ones, features.to(points.dtype)), dim=1)
        return voxelize(points, self.config.voxel_size, batch, point_features)

    def forward_voxels(self, x: SparseTensor) -> SparseTensor:
        """Input voxels (stride 1, in_channels features) -> the same voxels with unit-norm (out_dim) features."""
        out = self.stem(x)
        skips = [out]
        for stage in self.encoder:
            out = stage(out)
            skips.append(out)
        skips.pop()
        for stage in self.decoder:
            out = stage(out, skips.pop())
        out = self.head(out)
        return out.replace_feature(normalize_rows_(out.features))

    def forward(self, points: torch.Tensor, features: torch.Tensor | None = None,
                batch: torch.Tensor | None = None,
                per_voxel: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Per-point unit-norm features (N, out_dim) of points (N, 3) in metres (see `voxelize`); with
        `per_voxel`, the (V, out_dim) features of their voxels and point_to_voxel (N,) instead (for losses that
        need not expand voxels to points)."""
        voxels, point_to_voxel = self.voxelize(points, features, batch)
        out = self.forward_voxels(voxels)
        return (out.features, point_to_voxel) if per_voxel else devoxelize(out, point_to_voxel)

    def run_on_map(self, xyz: np.ndarray | torch.Tensor, rgb: np.ndarray | torch.Tensor | None = None,
                   floor_z: float | None = None, colour_known: np.ndarray | None = None,
                   offset: np.ndarray | None = None,
                   per_voxel: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Per-point features of map points (N, 3), with the inputs this student takes built from what the caller
        has (`point_inputs`: colour where known, height above `floor_z`, the whole map's floor), voxelised on a
        grid shifted by `offset` (`grid_offset`: the whole map's dominant planes mid-voxel; from `xyz` when
        None); with `per_voxel`, its voxels' features and point_to_voxel instead (as `forward`)."""
        points = torch.as_tensor(np.asarray(xyz, dtype=np.float32) if not isinstance(xyz, torch.Tensor) else xyz)
        inputs = point_inputs(self.config.inputs, points, rgb, floor_z, colour_known)
        shift = grid_offset(points.detach().cpu().numpy(), self.config.voxel_size) if offset is None else offset
        return self(points + torch.as_tensor(np.asarray(shift, np.float32), device=points.device), inputs,
                    per_voxel=per_voxel)

