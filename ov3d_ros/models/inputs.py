"""What a student sees per point besides its position: one definition for training and every consumer.

A checkpoint names its inputs (`StudentConfig.inputs`); `point_inputs` builds exactly those channels from what a
caller has, so `ov3d eval`, the benches, the training loop and the segmentation node feed a student the same way.

- ``colour``: RGB in [0, 1] centred on 0.5, then a flag that is 1 where the colour is known. A map without colour
  (a LiDAR-only map) gets zeros and flag 0: the value colour dropout shows the student in training.
- ``height``: metres above the floor of the gravity-aligned map frame (z up), divided by HEIGHT_SCALE_M. The floor
  is the `FLOOR_PERCENTILE` of the whole map's z (never a tile's or a crop's), so the value does not depend on
  which part of a map the network sees.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

INPUT_CHANNELS: dict[str, int] = {"colour": 4, "height": 1}
HEIGHT_SCALE_M = 1.0
FLOOR_PERCENTILE = 1.0


def check_inputs(inputs: Iterable[str]) -> tuple[str, ...]:
    """The inputs as a tuple in canonical order; ValueError for an unknown or repeated name."""
    names = tuple(inputs)
    unknown = [n for n in names if n not in INPUT_CHANNELS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"student inputs must be distinct names among {', '.join(INPUT_CHANNELS)}; got "
                         f"{list(names)}")
    return tuple(n for n in INPUT_CHANNELS if n in names)


def input_channels(inputs: Iterable[str]) -> int:
    """Channels of a voxel's input: the constant 1 (occupancy) and each named input's channels."""
    return 1 + sum(INPUT_CHANNELS[n] for n in check_inputs(inputs))


def floor_height(z: np.ndarray) -> float:
    """The floor's z in a gravity-aligned frame: a low percentile of the map's z (robust to a few points below)."""
    z = np.asarray(z, dtype=np.float64)
    return float(np.percentile(z, FLOOR_PERCENTILE)) if z.size else 0.0


def point_inputs(inputs: Iterable[str], xyz: np.ndarray | torch.Tensor, rgb: np.ndarray | torch.Tensor | None,
                 floor_z: float | None = None, colour_known: np.ndarray | None = None) -> torch.Tensor | None:
    """(N, channels - 1) float32 per-point inputs for a student taking `inputs`, or None when it takes geometry only.

    `xyz` (N, 3) are map-frame metres (z up); `rgb` (N, 3) floats in [0, 1] or uint8, None when the map has no
    colour; `floor_z` the floor of the whole map (`floor_height`), computed from `xyz` when None; `colour_known`
    (N,) bool marks the points whose colour is real (a map mixing RGB-D and uncoloured LiDAR voxels)."""
    names = check_inputs(inputs)
    if not names:
        return None
    xyz_t = torch.as_tensor(np.asarray(xyz) if not isinstance(xyz, torch.Tensor) else xyz)
    n = len(xyz_t)
    parts = []
    for name in names:
        if name == "colour":
            if rgb is None:
                parts.append(torch.zeros((n, 4), dtype=torch.float32))
            else:
                colour = torch.as_tensor(rgb)
                colour = colour.float() / 255.0 if colour.dtype == torch.uint8 else colour.float()
                if colour.shape != (n, 3):
                    raise ValueError(f"colour must be ({n}, 3), got {tuple(colour.shape)}")
                known = torch.ones((n, 1)) if colour_known is None else \
                    torch.as_tensor(np.asarray(colour_known, dtype=np.float32)).reshape(n, 1)
                parts.append(torch.cat(((colour - 0.5) * known, known), dim=1))
        elif name == "height":
            floor = floor_height(xyz_t[:, 2].numpy()) if floor_z is None else floor_z
            parts.append(((xyz_t[:, 2:3].double() - floor) / HEIGHT_SCALE_M).float())
    return torch.cat(parts, dim=1)
