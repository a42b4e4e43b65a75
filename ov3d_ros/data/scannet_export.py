"""ScanNet's exported frame folders (as written by ScanNet's SensReader and used by OpenScene).

```
<scene>/color/<i>.jpg|.png        RGB
<scene>/depth/<i>.png             uint16 millimetres, 0 = no reading
<scene>/pose/<i>.txt              4x4 camera-to-world; ScanNet writes -inf everywhere for frames it lost track of
<scene>/intrinsic/intrinsic_color.txt, intrinsic_depth.txt   4x4 (ScanNet) or 3x3
```
Colour and depth share the pose; each has its own intrinsics and resolution.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.data.openscene import DataError
from ov3d_ros.files import atomic_path
from ov3d_ros.geometry.camera import PinholeCamera
from ov3d_ros.messages.image import depth_to_metres

COLOR_SUFFIXES = (".jpg", ".jpeg", ".png")
_PIL_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
_MAX_DEPTH_MM = np.iinfo(np.uint16).max

log = logging.getLogger(__name__)


def _read_matrix(path: Path, shapes: tuple[tuple[int, int], ...]) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        matrix = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"{path}: not a numeric matrix ({exc})") from None
    if matrix.shape not in shapes:
        raise DataError(f"{path}: expected a {' or '.join(f'{r}x{c}' for r, c in shapes)} matrix, "
                        f"got {matrix.shape[0]}x{matrix.shape[1]}")
    return matrix


def read_intrinsics(path: Path, width: int, height: int) -> PinholeCamera:
    """The camera of a 4x4 (ScanNet) or 3x3 intrinsic matrix file for a `width` x `height` image."""
    K = _read_matrix(path, ((4, 4), (3, 3)))  # noqa: N806 - the conventional name
    camera = PinholeCamera(width, height, fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2])
    if not (camera.fx > 0 and camera.fy > 0 and 0 <= camera.cx < width and 0 <= camera.cy < height):
        raise DataError(f"{path}: intrinsics fx={camera.fx:g} fy={camera.fy:g} cx={camera.cx:g} "
                        f"cy={camera.cy:g} do not fit the {width}x{height} images")
    return camera


def _write_text(path: Path, matrix: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        np.savetxt(temporary, matrix, fmt="%.17g")


@contextlib.contextmanager
def _opened_image(path: Path) -> Iterator[Image.Image]:
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with Image.open(path) as image:
            yield image
    except OSError as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def _image_size(path: Path) -> tuple[int, int]:
    with _opened_image(path) as image:
        return image.size


def _read_image(path: Path, mode: str | None) -> np.ndarray:
    """An image as an array, converted to PIL `mode` when given."""
    with _opened_image(path) as image:
        return np.asarray(image.convert(mode) if mode else image)


def read_depth_png(path: Path) -> np.ndarray:
    """A 16-bit millimetre depth PNG as float32 metres, 0 (no reading) -> NaN."""
    depth = _read_image(path, None)
    if depth.ndim != 2 or depth.dtype.kind not in "iu" or depth.min(initial=0) < 0 \
            or depth.max(initial=0) > _MAX_DEPTH_MM:
        raise DataError(f"{path}: expected a 16-bit single-channel depth image, got {depth.dtype} "
                        f"{depth.shape}")
    return depth_to_metres(depth.astype(np.uint16), "16UC1")


class ScanNetExportScene:
    """One exported scene folder; frames are streamed one at a time in numeric order of their index."""

    def __init__(self, folder: str | os.PathLike[str], scene: str | None = None) -> None:
        self.folder = Path(folder)
        self.scene = scene or self.folder.name
        color_dir = self.folder / "color"
        if not color_dir.is_dir():
            raise FileNotFoundError(f"no such folder: {color_dir}")
        color_files: dict[int, Path] = {}
        for path in color_dir.iterdir():
            if path.suffix.lower() not in COLOR_SUFFIXES:
                continue
            if not path.stem.isdigit():
                raise DataError(f"{path}: frame images must be named <index>{path.suffix}")
            index = int(path.stem)
            if index in color_files:
                raise DataError(f"{color_dir}: two colour images for frame {index}: "
                                f"{color_files[index].name} and {path.name}")
            color_files[index] = path
        self.indices: list[int] = sorted(color_files)
        self._color_files = color_files
        if not self.indices:
            raise DataError(f"{color_dir}: no colour images (<index>.jpg or .png)")
        first = self.indices[0]
        intrinsic_dir = self.folder / "intrinsic"
        self.color_camera = read_intrinsics(intrinsic_dir / "intrinsic_color.txt",
                                            *_image_size(color_files[first]))
        self.depth_camera = read_intrinsics(intrinsic_dir / "intrinsic_depth.txt",
                                            *_image_size(self._depth_path(first)))
        self.skipped_poses = 0  # frames with a non-finite pose skipped by the latest frames() iteration

    def __len__(self) -> int:
        return len(self.indices)

    def _depth_path(self, index: int) -> Path:
        return self.folder / "depth" / f"{index}.png"

    def pose(self, index: int) -> np.ndarray:
        """The 4x4 camera-to-world matrix of a frame (may hold inf/NaN: ScanNet's mark of a lost frame)."""
        return _read_matrix(self.folder / "pose" / f"{index}.txt", ((4, 4),))

    def _optional_image(self, kind: str, index: int) -> np.ndarray | None:
        """`<kind>/<index>.png` (ground-truth label or instance image) as int64, or None when absent."""
        path = self.folder / kind / f"{index}.png"
        return _read_image(path, None).astype(np.int64) if path.exists() else None

    def frames(self, stride: int = 1) -> Iterator[PosedFrame]:
        """Every `stride`-th frame, read lazily; frames whose pose is not finite are skipped and counted."""
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        self.skipped_poses = 0
        for index in self.indices[::stride]:
            camera_to_world = self.pose(index)
            if not np.isfinite(camera_to_world).all():
                self.skipped_poses += 1
                continue
            color = _read_image(self._color_files[index], "RGB")
            depth = read_depth_png(self._depth_path(index))
            labels, instances = (self._optional_image(kind, index) for kind in ("label", "instance"))
            try:
                yield PosedFrame(self.scene, index, color, self.color_camera, depth, self.depth_camera,
                                 camera_to_world, labels, instances)
            except ValueError as exc:  # an image whose size differs from the scene's first one
                raise DataError(f"{self.folder}: {exc}") from None
        if self.skipped_poses:
            log.warning("%s: skipped %d frame(s) with an invalid (non-finite) pose", self.folder,
                        self.skipped_poses)


def _intrinsic_matrix(camera: PinholeCamera) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = camera.K
    return matrix


def write_frame(folder: str | os.PathLike[str], frame: PosedFrame, color_format: str = "png",
                jpeg_quality: int = 95) -> None:
    """Add `frame` to an export folder: colour (lossless PNG by default, or "jpg"), 16-bit mm depth, pose, and
    and the ground-truth label (8-bit) and instance (16-bit) PNGs (`label/`, `instance/`, registered to the depth
    image) when the frame has them.

    The intrinsic files are written with the first frame; later frames must have the same cameras. Depth is
    rounded to whole millimetres; NaN and depths beyond 65.535 m are written as 0 (no reading).
    """
    folder = Path(folder)
    suffix = f".{color_format.lower()}"
    if suffix not in _PIL_FORMATS:
        raise ValueError(f"color_format must be png or jpg, got {color_format!r}")
    for camera, name in ((frame.color_camera, "intrinsic_color.txt"), (frame.depth_camera, "intrinsic_depth.txt")):
        path = folder / "intrinsic" / name
        if not path.exists():
            _write_text(path, _intrinsic_matrix(camera))
        elif not np.allclose(_read_matrix(path, ((4, 4), (3, 3)))[:3, :3], camera.K, rtol=0, atol=1e-9):
            raise DataError(f"{path}: frame {frame.index} has other intrinsics than the scene's")
    with atomic_path(folder / "color" / f"{frame.index}{suffix}") as temporary:
        options = {"quality": jpeg_quality} if _PIL_FORMATS[suffix] == "JPEG" else {}
        Image.fromarray(np.ascontiguousarray(frame.color, dtype=np.uint8)).save(
            temporary, format=_PIL_FORMATS[suffix], **options)
    millimetres = np.rint(np.nan_to_num(frame.depth_m, nan=0.0, posinf=0.0, neginf=0.0) * 1000.0)
    millimetres[(millimetres < 0) | (millimetres > _MAX_DEPTH_MM)] = 0
    with atomic_path(folder / "depth" / f"{frame.index}.png") as temporary:
        Image.fromarray(millimetres.astype(np.uint16)).save(temporary, format="PNG")
    _write_text(folder / "pose" / f"{frame.index}.txt", frame.camera_to_world)
    for kind, image, dtype in (("label", frame.labels, np.uint8), ("instance", frame.instances, np.uint16)):
        if image is None:
            continue
        if image.min() < 0 or image.max() > np.iinfo(dtype).max:
            raise DataError(f"frame {frame.index}: {kind} image values must fit in 0..{np.iinfo(dtype).max}")
        with atomic_path(folder / kind / f"{frame.index}.png") as temporary:
            Image.fromarray(image.astype(dtype)).save(temporary, format="PNG")
