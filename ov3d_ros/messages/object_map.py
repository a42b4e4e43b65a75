"""The map's objects <-> `ov3d_interfaces/msg/ObjectMap` (how the segmentation node hands them to grounding)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ov3d_ros.grounding.objects import SceneObjects
from ov3d_ros.messages.errors import MessageError
from ov3d_ros.messages.types import ROS_TYPES, MessageTypes, make_header, stamp_to_ns

OBJECT_MAP_TYPE = "ov3d_interfaces/msg/ObjectMap"


@dataclass(frozen=True, eq=False)
class ObjectMapContent:
    """What an ObjectMap carries, as arrays."""

    objects: SceneObjects
    instance_ids: np.ndarray          # (P,) int64
    vocabulary: tuple[str, ...]       # entries "name" or "name: synonym, synonym"
    text_space: str                   # the text encoder's name
    text_offset: np.ndarray | None    # (D,) or None
    frame_id: str
    stamp_ns: int


def object_map_to_msg(content: ObjectMapContent, types: MessageTypes = ROS_TYPES) -> Any:
    """An ObjectMap message of `content`."""
    o = content.objects
    seq = types.sequence
    offset = np.zeros(0, np.float32) if content.text_offset is None else content.text_offset
    return types.get(OBJECT_MAP_TYPE)(
        header=make_header(types, content.frame_id, content.stamp_ns),
        vocabulary=list(content.vocabulary),
        text_space=content.text_space,
        text_offset=seq(np.asarray(offset, np.float32).reshape(-1)),
        feature_dim=int(o.features.shape[1]),
        instance_ids=seq(np.asarray(content.instance_ids, np.uint32)),
        labels=seq(np.asarray(o.labels, np.uint32)),
        centres=seq(np.asarray(o.centres, np.float32).reshape(-1)),
        sizes=seq(np.asarray(o.sizes, np.float32).reshape(-1)),
        yaws=seq(np.asarray(o.yaws, np.float32)),
        colours=seq(np.asarray(o.colours, np.float32).reshape(-1)),
        point_counts=seq(np.asarray(o.counts, np.uint32)),
        distributions=seq(np.asarray(o.distributions, np.float32).reshape(-1)),
        features=seq(np.asarray(o.features, np.float32).reshape(-1)),
    )


def _rows(values: Any, count: int, width: int, name: str) -> np.ndarray:
    array = np.asarray(values, np.float64).reshape(-1)
    if array.size != count * width:
        raise MessageError(f"ObjectMap.{name} has {array.size} values, expected {count} x {width}")
    if not np.all(np.isfinite(array)):
        raise MessageError(f"ObjectMap.{name} holds non-finite values")
    return array.reshape(count, width) if width != 1 else array


def msg_to_object_map(msg: Any) -> ObjectMapContent:
    """The content of an ObjectMap message; MessageError when its arrays do not agree."""
    count = len(msg.instance_ids)
    classes, dim = len(msg.vocabulary), int(msg.feature_dim)
    if not classes:
        raise MessageError("ObjectMap has an empty vocabulary")
    labels = np.asarray(msg.labels, np.int64)
    if labels.shape != (count,) or (count and labels.max() >= classes):
        raise MessageError(f"ObjectMap.labels: {labels.size} labels for {count} objects over {classes} classes")
    counts = np.asarray(msg.point_counts, np.int64)
    if counts.shape != (count,):
        raise MessageError(f"ObjectMap.point_counts: {counts.size} values for {count} objects")
    offset = np.asarray(msg.text_offset, np.float32)
    if offset.size not in (0, dim):
        raise MessageError(f"ObjectMap.text_offset has {offset.size} values, the features are {dim}-d")
    objects = SceneObjects(_rows(msg.centres, count, 3, "centres"), _rows(msg.sizes, count, 3, "sizes"),
                           _rows(msg.yaws, count, 1, "yaws"), _rows(msg.distributions, count, classes, "distributions"),
                           _rows(msg.features, count, dim, "features"), _rows(msg.colours, count, 3, "colours"),
                           counts, labels)
    frame = msg.header.frame_id.strip("/")
    if not frame:
        raise MessageError("ObjectMap has an empty header.frame_id")
    return ObjectMapContent(objects, np.asarray(msg.instance_ids, np.int64), tuple(msg.vocabulary),
                            str(msg.text_space), offset if offset.size else None, frame, stamp_to_ns(msg.header.stamp))
