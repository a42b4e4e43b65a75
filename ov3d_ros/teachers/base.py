"""The 2D teacher interface: a frame in, a feature map on a grid out, sampled at pixel coordinates."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ov3d_ros.data.frames import PosedFrame


@dataclass(frozen=True)
class FeatureGrid:
    """Features on a (Gh, Gw) grid laid evenly over an image of `image_size` = (width, height) pixels.

    Cell (i, j) covers pixels [j * W / Gw, (j + 1) * W / Gw) x [i * H / Gh, (i + 1) * H / Gh); its value sits at
    the cell centre. `features` is (D, Gh, Gw) float32.
    """

    features: torch.Tensor
    image_size: tuple[int, int]

    @property
    def dim(self) -> int:
        return int(self.features.shape[0])

    def sample(self, uv: torch.Tensor) -> torch.Tensor:
        """Bilinear samples (N, D) at pixel coordinates uv (N, 2) = (column, row), pixel centres at integers.

        Points beyond the outermost cell centres take the edge value (border padding); callers pass only pixels
        inside the image.
        """
        width, height = self.image_size
        grid = torch.empty((1, 1, uv.shape[0], 2), dtype=self.features.dtype, device=self.features.device)
        # normalised coordinates with align_corners=False: -1 and 1 are the outer edges of the image
        grid[0, 0, :, 0] = (uv[:, 0].to(grid.dtype) + 0.5) / width * 2.0 - 1.0
        grid[0, 0, :, 1] = (uv[:, 1].to(grid.dtype) + 0.5) / height * 2.0 - 1.0
        sampled = F.grid_sample(self.features[None], grid, mode="bilinear", padding_mode="border",
                                align_corners=False)
        return sampled[0, :, 0, :].T


class Teacher(ABC):
    """A 2D model giving language-aligned features per pixel, in the same space as a text encoder."""

    name: str
    dim: int

    @abstractmethod
    def features(self, frame: PosedFrame) -> FeatureGrid:
        """The feature map of a frame's colour image (image_size = the colour image's size)."""
