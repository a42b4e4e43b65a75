"""``sensor_msgs/msg/PointCloud2`` <-> numpy structured arrays, without ROS.

A cloud becomes a flat structured array with one field per ``PointField`` (message order, packed, native byte
order; ``count > 1`` fields are subarrays). Typical fields are ``x, y, z`` float32, ``rgb`` float32 (PCL packed
colour, see :func:`unpack_rgb`), ``intensity`` float32, ``label`` uint32/uint16, ``ring`` uint16, ``time`` float32;
every field is kept.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ov3d_ros.messages.errors import MessageError
from ov3d_ros.messages.types import MessageTypes, ROS_TYPES, data_bytes, make_header

# sensor_msgs/msg/PointField datatype constants -> little-endian numpy types
_DATATYPES: dict[int, np.dtype] = {
    1: np.dtype("<i1"), 2: np.dtype("<u1"), 3: np.dtype("<i2"), 4: np.dtype("<u2"),
    5: np.dtype("<i4"), 6: np.dtype("<u4"), 7: np.dtype("<f4"), 8: np.dtype("<f8"),
}
_DATATYPE_OF: dict[np.dtype, int] = {dtype.newbyteorder("="): code for code, dtype in _DATATYPES.items()}


def pointcloud2_to_array(msg: Any) -> np.ndarray:
    """The points of a PointCloud2 (rclpy or rosbags message) as a flat (height*width,) structured array.

    Honours field offsets, ``point_step`` padding and ``row_step`` padding; the result is a packed copy.
    Raises :class:`MessageError` for big-endian clouds and inconsistent layouts.
    """
    if msg.is_bigendian:
        raise MessageError("big-endian PointCloud2 is not supported")
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    names, formats, offsets = _fields_layout(msg.fields, point_step)
    if row_step < width * point_step:
        raise MessageError(f"PointCloud2 row_step {row_step} < width {width} * point_step {point_step}")
    data = data_bytes(msg.data)
    if data.size < row_step * height:
        raise MessageError(f"PointCloud2 data has {data.size} bytes, expected row_step {row_step} * height {height}")
    padded = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    packed = np.dtype({"names": names, "formats": [f.newbyteorder("=") for f in formats]})
    out = np.empty(height * width, dtype=packed)
    if out.size:
        view = np.ndarray((height, width), dtype=padded, buffer=data, strides=(row_step, point_step))
        flat = out.reshape(height, width)
        for name in names:
            flat[name] = view[name]
    return out


def _fields_layout(fields: Any, point_step: int) -> tuple[list[str], list[np.dtype], list[int]]:
    """Names, little-endian formats and offsets of the PointFields, checked against each other and point_step."""
    if not fields:
        raise MessageError("PointCloud2 has no fields")
    names: list[str] = []
    formats: list[np.dtype] = []
    offsets: list[int] = []
    for field in fields:
        name, datatype, count, offset = str(field.name), int(field.datatype), int(field.count), int(field.offset)
        if datatype not in _DATATYPES:
            raise MessageError(f"PointField {name!r} has unknown datatype {datatype}")
        if count < 1:
            raise MessageError(f"PointField {name!r} has count {count}, expected >= 1")
        if name in names:
            raise MessageError(f"PointField {name!r} appears twice")
        names.append(name)
        formats.append(np.dtype((_DATATYPES[datatype], (count,))) if count > 1 else _DATATYPES[datatype])
        offsets.append(offset)
    extent = 0
    for i in np.argsort(offsets, kind="stable"):
        if offsets[i] < extent:
            raise MessageError(f"PointField {names[i]!r} at offset {offsets[i]} overlaps the previous field")
        extent = offsets[i] + formats[i].itemsize
    if point_step < extent:
        raise MessageError(f"PointCloud2 point_step {point_step} is smaller than the fields' extent {extent}")
    return names, formats, offsets


def array_to_pointcloud2(array: np.ndarray, frame_id: str, stamp_ns: int, types: MessageTypes = ROS_TYPES) -> Any:
    """A dense, packed, little-endian PointCloud2 holding a structured array.

    A 1-D array gives an unorganised cloud (height 1); a 2-D array an organised one (height, width).
    Fields must be (subarrays of) int8/16/32, uint8/16/32, float32 or float64. ``is_dense`` is true when
    every x, y, z value present is finite.
    """
    if array.dtype.names is None or array.ndim not in (1, 2):
        raise MessageError(f"expected a 1-D or 2-D structured array, got dtype {array.dtype} shape {array.shape}")
    height, width = (1, array.shape[0]) if array.ndim == 1 else array.shape
    point_field = types.get("sensor_msgs/msg/PointField")
    fields, formats, offset = [], [], 0
    for name in array.dtype.names:
        field_dtype = array.dtype.fields[name][0]
        base, shape = field_dtype.base, field_dtype.shape
        datatype = _DATATYPE_OF.get(base.newbyteorder("="))
        if datatype is None or len(shape) > 1:
            raise MessageError(f"field {name!r} of dtype {field_dtype} has no PointField datatype")
        count = shape[0] if shape else 1
        fields.append(point_field(name=name, offset=offset, datatype=datatype, count=count))
        formats.append(np.dtype((_DATATYPES[datatype], shape)) if shape else _DATATYPES[datatype])
        offset += base.itemsize * count
    packed = np.empty(array.shape, dtype=np.dtype({"names": list(array.dtype.names), "formats": formats}))
    for name in array.dtype.names:
        packed[name] = array[name]
    is_dense = all(bool(np.isfinite(array[axis]).all()) for axis in ("x", "y", "z") if axis in array.dtype.names)
    return types.get("sensor_msgs/msg/PointCloud2")(
        header=make_header(types, frame_id, stamp_ns),
        height=height,
        width=width,
        fields=fields,
        is_bigendian=False,
        point_step=offset,
        row_step=offset * width,
        data=types.sequence(packed.reshape(-1).view(np.uint8)),
        is_dense=is_dense,
    )


def xyz_from_array(array: np.ndarray, drop_nonfinite: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The x, y, z fields as an (M, 3) float32 array and the (N,) bool mask of the points kept.

    The array is flattened first; with ``drop_nonfinite`` points with any non-finite coordinate are dropped.
    """
    names = array.dtype.names or ()
    missing = [axis for axis in ("x", "y", "z") if axis not in names]
    if missing:
        raise MessageError(f"point array has no {', '.join(missing)} field(s); fields are {list(names)}")
    flat = array.reshape(-1)
    xyz = np.empty((flat.size, 3), dtype=np.float32)
    for column, axis in enumerate(("x", "y", "z")):
        xyz[:, column] = flat[axis]
    keep = np.isfinite(xyz).all(axis=1) if drop_nonfinite else np.ones(flat.size, dtype=bool)
    return (xyz[keep] if drop_nonfinite else xyz), keep


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours as PCL packed-rgb float32 values (bits 0x00RRGGBB)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
        raise MessageError(f"expected (..., 3) uint8 colours, got dtype {rgb.dtype} shape {rgb.shape}")
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    return packed.view(np.float32)


def unpack_rgb(field: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours from a PCL packed ``rgb`` float32 field, or a uint32 ``rgb``/``rgba`` field.

    The colour is in the low 24 bits (0x00RRGGBB); the top byte (alpha in ``rgba``) is ignored.
    """
    field = np.asarray(field)
    if field.dtype.kind not in "fui" or field.dtype.itemsize != 4:
        raise MessageError(f"expected a 4-byte packed colour field, got dtype {field.dtype}")
    bits = np.ascontiguousarray(field, dtype=field.dtype.newbyteorder("=")).view(np.uint32)
    rgb = np.empty(bits.shape + (3,), dtype=np.uint8)
    rgb[..., 0] = (bits >> 16) & 0xFF
    rgb[..., 1] = (bits >> 8) & 0xFF
    rgb[..., 2] = bits & 0xFF
    return rgb
