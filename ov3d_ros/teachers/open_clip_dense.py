"""MaskCLIP-style dense features from an open_clip ViT: one language-aligned vector per image patch.

The image runs through the ViT as usual (positional embedding interpolated to the patch grid) up to the last block;
that block keeps only its value path, ``ln_1 -> value projection -> out_proj`` (no attention mixing, no residual,
no MLP), and every patch token then goes through ``ln_post -> proj`` into the joint image-text space
(Zhou et al., "Extract Free Dense Labels from CLIP", ECCV 2022).
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.language.open_clip_model import (import_open_clip, load_open_clip, model_embed_dim,
                                               resolve_checkpoint)
from ov3d_ros.teachers.base import FeatureGrid, Teacher


class OpenClipDenseTeacher(Teacher):
    """Patch features of an open_clip ViT (plain `VisionTransformer` towers with `nn.MultiheadAttention` blocks).

    Frames are resized to `input_size` = (width, height), rounded to whole patches; the returned grid covers the
    original colour image, so callers sample it with original pixel coordinates. The model loads on first use.
    """

    def __init__(self, model_name: str, checkpoint: str | os.PathLike | None,
                 input_size: tuple[int, int] = (320, 240), allow_random: bool = False) -> None:
        self.model_name = model_name
        self.name = f"open_clip_dense:{model_name}"
        self.dim = model_embed_dim(model_name)
        self.input_size = input_size
        self._checkpoint = resolve_checkpoint(checkpoint, allow_random)
        self._allow_random = allow_random

    def features(self, frame: PosedFrame) -> FeatureGrid:
        """(dim, Gh, Gw) unit-norm patch features of the frame's colour image."""
        visual = self._visual()
        patch_h, patch_w = visual.patch_size
        width, height = self.input_size
        size = (_whole_patches(height, patch_h), _whole_patches(width, patch_w))
        with torch.no_grad():
            tokens = self._patch_tokens(visual, self._preprocess(visual, frame.color, size))
        grid = tokens[0].reshape(size[0] // patch_h, size[1] // patch_w, -1).permute(2, 0, 1).contiguous()
        return FeatureGrid(features=grid, image_size=(frame.color.shape[1], frame.color.shape[0]))

    def _visual(self) -> torch.nn.Module:
        """The model's ViT, checked to be one whose last block this teacher knows how to take apart."""
        visual = load_open_clip(self.model_name, self._checkpoint, self._allow_random).model.visual
        open_clip = import_open_clip()
        supported = (isinstance(visual, open_clip.transformer.VisionTransformer) and visual.attn_pool is None
                     and all(isinstance(block, open_clip.transformer.ResidualAttentionBlock)
                             and not hasattr(block, "ln_1_kv") and block.attn.in_proj_weight is not None
                             for block in visual.transformer.resblocks))
        if not supported:
            raise ValueError(f"{self.name}: dense features need a plain open_clip VisionTransformer "
                             "(no timm tower, attentional pooling or custom attention blocks)")
        return visual

    @staticmethod
    def _preprocess(visual: torch.nn.Module, color: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
        """(1, 3, h, w) float32: RGB uint8 resized (antialiased bilinear) and normalised with the model's mean/std."""
        image = torch.from_numpy(np.ascontiguousarray(color)).permute(2, 0, 1)[None].to(torch.float32) / 255.0
        if tuple(image.shape[-2:]) != size:
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(visual.preprocess_cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(visual.preprocess_cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)
        return (image - mean) / std

    def _patch_tokens(self, visual: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
        """(1, Gh * Gw, dim) unit-norm patch features, row-major over the grid."""
        x = visual.conv1(image)                                   # (1, width, Gh, Gw)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)                          # (1, Gh * Gw, width)
        x = torch.cat([visual.class_embedding.view(1, 1, -1).to(x.dtype), x], dim=1)
        x = visual.ln_pre(x + self._positional_embedding(visual, grid).to(x.dtype))
        blocks = visual.transformer.resblocks
        batch_first = visual.transformer.batch_first
        x = x if batch_first else x.transpose(0, 1)
        for block in blocks[:-1]:
            x = block(x)
        x = x if batch_first else x.transpose(0, 1)
        last = blocks[-1]
        width = x.shape[-1]
        value_bias = last.attn.in_proj_bias[2 * width:] if last.attn.in_proj_bias is not None else None
        x = F.linear(last.ln_1(x), last.attn.in_proj_weight[2 * width:], value_bias)
        x = last.ls_1(last.attn.out_proj(x))
        x = visual.ln_post(x[:, 1:])                              # drop the class token
        if visual.proj is not None:
            x = x @ visual.proj
        return F.normalize(x.to(torch.float32), dim=-1)

    @staticmethod
    def _positional_embedding(visual: torch.nn.Module, grid: tuple[int, int]) -> torch.Tensor:
        """(1 + Gh * Gw, width): the class position plus the patch positions bicubically resized to `grid`."""
        embedding = visual.positional_embedding
        trained = tuple(visual.grid_size)
        if trained != grid:
            patches = embedding[1:].reshape(1, *trained, -1).permute(0, 3, 1, 2)
            patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
            embedding = torch.cat([embedding[:1], patches[0].permute(1, 2, 0).reshape(grid[0] * grid[1], -1)])
        return embedding


def _whole_patches(pixels: int, patch: int) -> int:
    """`pixels` rounded half-up to a multiple of `patch` (at least one patch)."""
    return max(1, math.floor(pixels / patch + 0.5)) * patch
