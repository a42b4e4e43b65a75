"""A posed RGB-D frame: the unit every 2D teacher and the multi-view fusion work on."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ov3d_ros.geometry.camera import PinholeCamera


@dataclass(frozen=True)
class PosedFrame:
    """One RGB-D view of a scene.

    `depth_m` is registered to `depth_camera`; `color` to `color_camera` (they may differ in resolution, as in
    ScanNet exports). `camera_to_world` maps camera optical-frame points into the scene/world frame (4x4).
    """

    scene: str
    index: int
    color: np.ndarray                 # (H, W, 3) uint8 RGB
    color_camera: PinholeCamera
    depth_m: np.ndarray               # (h, w) float32 metres, NaN = invalid
    depth_camera: PinholeCamera
    camera_to_world: np.ndarray       # (4, 4) float64
    labels: np.ndarray | None = None     # (h, w) ground-truth class per depth pixel (255 = none), when known
    instances: np.ndarray | None = None  # (h, w) ground-truth instance id per depth pixel (0 = none), when known

    def __post_init__(self) -> None:
        if self.color.shape[:2] != (self.color_camera.height, self.color_camera.width):
            raise ValueError(f"frame {self.scene}/{self.index}: colour shape {self.color.shape[:2]} does not match "
                             f"its camera {self.color_camera.width}x{self.color_camera.height}")
        if self.depth_m.shape != (self.depth_camera.height, self.depth_camera.width):
            raise ValueError(f"frame {self.scene}/{self.index}: depth shape {self.depth_m.shape} does not match "
                             f"its camera {self.depth_camera.width}x{self.depth_camera.height}")
        for name, image in (("label", self.labels), ("instance", self.instances)):
            if image is not None and image.shape != self.depth_m.shape:
                raise ValueError(f"frame {self.scene}/{self.index}: {name} image shape {image.shape} differs from "
                                 f"the depth image's {self.depth_m.shape}")
        if self.camera_to_world.shape != (4, 4) or not np.isfinite(self.camera_to_world).all():
            raise ValueError(f"frame {self.scene}/{self.index}: camera_to_world must be a finite 4x4 matrix")
