"""Message-class providers, so the converters work with rclpy messages and with `rosbags` dataclasses alike.

Readers are duck-typed and need no provider. Builders take a :class:`MessageTypes`, which supplies the message
classes by their full name (``"sensor_msgs/msg/PointCloud2"``) and converts numpy arrays into the value an
unbounded primitive-sequence field expects (``array.array`` for rclpy, ``np.ndarray`` for rosbags).
"""
from __future__ import annotations

import array
import importlib
from typing import Any, Protocol

import numpy as np

from ov3d_ros.messages.errors import MessageError

_ARRAY_TYPECODES = {
    np.dtype(np.int8): "b", np.dtype(np.uint8): "B", np.dtype(np.int16): "h", np.dtype(np.uint16): "H",
    np.dtype(np.int32): "i", np.dtype(np.uint32): "I", np.dtype(np.int64): "q", np.dtype(np.uint64): "Q",
    np.dtype(np.float32): "f", np.dtype(np.float64): "d",
}


class MessageTypes(Protocol):
    """Supplies message classes and sequence-field values for one message implementation."""

    def get(self, name: str) -> type:
        """The message class called ``name``, e.g. ``"sensor_msgs/msg/Image"``."""

    def sequence(self, values: np.ndarray) -> Any:
        """``values`` (1-D, any byte order) as the value of an unbounded primitive-sequence field."""


class RosMessageTypes:
    """The ROS 2 Python message classes (``sensor_msgs.msg`` ...), imported on first use; they do not import rclpy."""

    def __init__(self) -> None:
        self._cache: dict[str, type] = {}

    def get(self, name: str) -> type:
        """The generated class for ``name`` (``"<package>/msg/<Type>"``)."""
        cls = self._cache.get(name)
        if cls is None:
            package, kind, type_name = _split_name(name)
            try:
                cls = getattr(importlib.import_module(f"{package}.{kind}"), type_name)
            except (ImportError, AttributeError) as exc:
                raise MessageError(f"ROS message type {name!r} is not importable: {exc}") from exc
            self._cache[name] = cls
        return cls

    def sequence(self, values: np.ndarray) -> array.array:
        """An ``array.array`` copy of ``values``: the fast path of the generated field setters."""
        native = values.dtype.newbyteorder("=")
        try:
            typecode = _ARRAY_TYPECODES[native]
        except KeyError:
            raise MessageError(f"no ROS sequence type for numpy dtype {values.dtype}") from None
        return array.array(typecode, np.ascontiguousarray(values, dtype=native).tobytes())


class RosbagsMessageTypes:
    """The dataclasses of a ``rosbags.typesys`` typestore (``get_typestore(Stores.ROS2_KILTED)``)."""

    def __init__(self, typestore: Any) -> None:
        self.typestore = typestore

    def get(self, name: str) -> type:
        """``typestore.types[name]``."""
        _split_name(name)
        try:
            return self.typestore.types[name]
        except KeyError:
            raise MessageError(f"message type {name!r} is not in the rosbags typestore") from None

    def sequence(self, values: np.ndarray) -> np.ndarray:
        """A contiguous native-order copy of ``values``: rosbags stores primitive sequences as numpy arrays."""
        return np.array(values, dtype=values.dtype.newbyteorder("="), order="C", copy=True).reshape(-1)


ROS_TYPES = RosMessageTypes()
"""The default provider of the message builders."""


def _split_name(name: str) -> tuple[str, str, str]:
    parts = name.split("/")
    if len(parts) != 3 or not all(parts):
        raise MessageError(f"message type name {name!r} is not of the form '<package>/msg/<Type>'")
    return parts[0], parts[1], parts[2]


def make_header(types: MessageTypes, frame_id: str, stamp_ns: int) -> Any:
    """A ``std_msgs/msg/Header`` for ``frame_id`` stamped ``stamp_ns`` nanoseconds since the epoch."""
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    stamp = types.get("builtin_interfaces/msg/Time")(sec=sec, nanosec=nanosec)
    return types.get("std_msgs/msg/Header")(stamp=stamp, frame_id=frame_id)


def stamp_to_ns(stamp: Any) -> int:
    """Nanoseconds since the epoch of a ``builtin_interfaces/msg/Time``; MessageError for a negative or malformed
    stamp (nanoseconds outside [0, 1e9))."""
    sec, nanosec = int(stamp.sec), int(stamp.nanosec)
    if sec < 0 or not 0 <= nanosec < 1_000_000_000:
        raise MessageError(f"invalid stamp sec={sec} nanosec={nanosec}")
    return sec * 1_000_000_000 + nanosec


def data_bytes(data: Any) -> np.ndarray:
    """The raw bytes of a ``uint8[]`` field (numpy array, ``array.array``, bytes) as a 1-D uint8 array, no copy."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)
