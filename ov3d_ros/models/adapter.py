"""The 3DSS-VLG adapter: a bottleneck MLP over 2D-projected embeddings with a strong identity path.

    adapted = normalise((1 - w) * x + w * mlp(x)),   mlp = Linear(D, H) -> ReLU -> Linear(H, D)

A small w (0.05 by default) keeps an untrained adapter close to the identity, so training starts from the fused
embeddings and only specialises them.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ov3d_ros.files import load_torch_checkpoint, save_torch

FORMAT = "ov3d-adapter-1"


class Adapter(nn.Module):
    """Bottleneck residual adapter on unit-norm (N, dim) embeddings; returns unit-norm rows."""

    def __init__(self, dim: int, hidden: int, weight: float = 0.05) -> None:
        super().__init__()
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"adapter weight must be in [0, 1], got {weight}")
        self.dim, self.hidden, self.weight = dim, hidden, weight
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize((1.0 - self.weight) * x + self.weight * self.mlp(x), dim=1)

    @torch.no_grad()
    def map_rows(self, rows: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
        """The adapted rows (float32) of a large (N, dim) tensor of any float dtype, in chunks, without autograd."""
        out = torch.empty((len(rows), self.dim), dtype=torch.float32)
        for start in range(0, len(rows), chunk):
            out[start:start + chunk] = self(rows[start:start + chunk].float())
        return out


def save_adapter(path: str | os.PathLike, adapter: Adapter, text_space: str, extra: dict[str, Any] | None = None,
                 ) -> None:
    """Atomic, `weights_only`-loadable checkpoint with the adapter's sizes and its text space."""
    save_torch(path, {"format": FORMAT, "dim": adapter.dim, "hidden": adapter.hidden, "weight": adapter.weight,
                      "text_space": text_space, "model": adapter.state_dict(), **(extra or {})})


def load_adapter(path: str | os.PathLike) -> tuple[Adapter, dict[str, Any]]:
    """The adapter of a checkpoint (eval mode, frozen) and the checkpoint's content."""
    content = load_torch_checkpoint(path, FORMAT, "adapter", "run `ov3d train vlg --stage adapter`")
    adapter = Adapter(int(content["dim"]), int(content["hidden"]), float(content["weight"]))
    adapter.load_state_dict(content["model"])
    adapter.requires_grad_(False)
    return adapter.eval(), content
