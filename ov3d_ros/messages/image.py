"""``sensor_msgs/msg/Image`` <-> numpy, without ROS.

Supported encodings: ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8``, ``mono8``, ``mono16``, ``16UC1`` (depth in
millimetres) and ``32FC1`` (depth in metres). Colour images are always exchanged as RGB: :func:`image_to_array`
returns (H, W, 3) uint8 in RGB order whatever the channel order or alpha of the message, and
:func:`array_to_image` takes RGB (or RGBA for the 4-channel encodings) and writes the channel order of the encoding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ov3d_ros.messages.errors import MessageError
from ov3d_ros.messages.types import MessageTypes, ROS_TYPES, data_bytes, make_header


@dataclass(frozen=True)
class _Encoding:
    dtype: np.dtype  # one channel, little-endian
    channels: int
    select: int | slice  # the channel (mono) or RGB channels, in that order, of one pixel


_ENCODINGS = {
    "rgb8": _Encoding(np.dtype("u1"), 3, slice(0, 3)),
    "bgr8": _Encoding(np.dtype("u1"), 3, slice(2, None, -1)),
    "rgba8": _Encoding(np.dtype("u1"), 4, slice(0, 3)),
    "bgra8": _Encoding(np.dtype("u1"), 4, slice(2, None, -1)),
    "mono8": _Encoding(np.dtype("u1"), 1, 0),
    "mono16": _Encoding(np.dtype("<u2"), 1, 0),
    "16UC1": _Encoding(np.dtype("<u2"), 1, 0),
    "32FC1": _Encoding(np.dtype("<f4"), 1, 0),
}
_MILLIMETRE_DEPTH = ("16UC1", "mono16")


def _encoding(name: str) -> _Encoding:
    try:
        return _ENCODINGS[name]
    except KeyError:
        raise MessageError(f"unsupported image encoding {name!r}; supported: {', '.join(_ENCODINGS)}") from None


def image_to_array(msg: Any) -> np.ndarray:
    """The pixels of an Image (rclpy or rosbags message) as a new native-order array.

    Colour encodings give (H, W, 3) uint8 RGB (BGR is reordered, alpha dropped); mono8 gives (H, W) uint8,
    mono16/16UC1 (H, W) uint16 and 32FC1 (H, W) float32. Row padding (``step``) and big-endian data are handled.
    """
    encoding = _encoding(str(msg.encoding))
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise MessageError(f"image has zero size {width}x{height}")
    pixel_bytes = encoding.dtype.itemsize * encoding.channels
    if step < width * pixel_bytes:
        raise MessageError(f"image step {step} < width {width} * {pixel_bytes} bytes per {msg.encoding} pixel")
    data = data_bytes(msg.data)
    if data.size < step * height:
        raise MessageError(f"image data has {data.size} bytes, expected step {step} * height {height}")
    dtype = encoding.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    view = np.ndarray((height, width, encoding.channels), dtype=dtype, buffer=data,
                      strides=(step, pixel_bytes, dtype.itemsize))
    return np.array(view[..., encoding.select], dtype=dtype.newbyteorder("="), order="C")


def array_to_image(array: np.ndarray, encoding: str, frame_id: str, stamp_ns: int,
                   types: MessageTypes = ROS_TYPES) -> Any:
    """An unpadded little-endian Image in ``encoding`` holding ``array``.

    Colour encodings take (H, W, 3) uint8 RGB (the 4-channel ones also (H, W, 4) RGBA; alpha defaults to 255);
    mono8/mono16/16UC1/32FC1 take (H, W) uint8/uint16/uint16/float32.
    """
    spec = _encoding(encoding)
    array = np.asarray(array)
    colour = spec.channels > 1
    expected_dtype = spec.dtype.newbyteorder("=")
    shape_ok = array.ndim == 3 and array.shape[2] in (3, spec.channels) if colour else array.ndim == 2
    if not shape_ok or array.dtype != expected_dtype:
        shape = "(H, W, 3)" if spec.channels == 3 else "(H, W, 3|4)" if colour else "(H, W)"
        raise MessageError(f"{encoding} needs a {shape} {expected_dtype} array, got {array.dtype} {array.shape}")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise MessageError(f"image has zero size {width}x{height}")
    pixels = np.empty((height, width, spec.channels), dtype=spec.dtype)
    if colour:
        pixels[..., spec.select] = array[..., :3]
        if spec.channels == 4:
            pixels[..., 3] = array[..., 3] if array.shape[2] == 4 else 255
    else:
        pixels[..., 0] = array
    return types.get("sensor_msgs/msg/Image")(
        header=make_header(types, frame_id, stamp_ns),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * spec.channels * spec.dtype.itemsize,
        data=types.sequence(pixels.reshape(-1).view(np.uint8)),
    )


def depth_to_metres(depth: Any, encoding: str | None = None) -> np.ndarray:
    """A depth Image, or an (H, W) depth array in ``encoding``, as (H, W) float32 metres; invalid depth -> NaN.

    16UC1/mono16 are millimetres, 32FC1 metres. Zero, negative, NaN and infinite depths are invalid.
    For a message ``encoding`` defaults to, and must agree with, ``msg.encoding``.
    """
    if isinstance(depth, np.ndarray):
        if encoding is None:
            raise MessageError("depth_to_metres needs the encoding of a depth array")
        values = depth
    else:
        if encoding is not None and encoding != depth.encoding:
            raise MessageError(f"depth image is {depth.encoding!r}, not {encoding!r}")
        encoding = str(depth.encoding)
        values = image_to_array(depth)
    if encoding not in (*_MILLIMETRE_DEPTH, "32FC1"):
        raise MessageError(f"depth encoding must be 16UC1, mono16 or 32FC1, got {encoding!r}")
    if values.ndim != 2:
        raise MessageError(f"depth must be (H, W), got shape {values.shape}")
    metres = values.astype(np.float32)
    if encoding in _MILLIMETRE_DEPTH:
        metres /= 1000.0
    metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
    return metres
