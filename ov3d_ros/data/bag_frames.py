"""Posed RGB-D frames straight from a robot's rosbag2: TF for the poses, approximate sync for the images.

This is how users' own recordings enter the offline pipeline (fusion, training, evaluation) with the same code
as ScanNet-style exports: `bag_frames` yields the PosedFrame objects a frame folder would.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, Iterator

from ov3d_ros.data.frames import PosedFrame
from ov3d_ros.data.rosbag import BagError, BagReader
from ov3d_ros.geometry.tf_buffer import TransformBuffer
from ov3d_ros.messages import camera_info_to_camera
from ov3d_ros.messages.compressed import colour_pixels, depth_metres
from ov3d_ros.messages.time_sync import ApproximateTimeSynchronizer
from ov3d_ros.messages.types import stamp_to_ns


def bag_frames(path: str | Path, map_frame: str = "map", color_topic: str = "/camera/color/image_raw",
               depth_topic: str = "/camera/depth/image_raw", info_topic: str = "/camera/color/camera_info",
               slop_s: float = 0.05, stride: int = 1) -> Iterator[PosedFrame]:
    """Every `stride`-th synchronised colour + depth + camera-info set of the bag as a PosedFrame in `map_frame`;
    images raw or compressed (CompressedImage JPEG / PNG, compressedDepth), whatever the topics carry.

    The depth image must be registered to the camera info (aligned depth); a colour image of another size is
    assumed to show the same view. Two passes: all of /tf and /tf_static first (so every frame's pose is
    interpolated between transforms before and after it), then the images, streamed.
    """
    path = Path(path)
    with BagReader(path) as bag:
        missing = [t for t in (color_topic, depth_topic, info_topic) if t not in bag.topics]
        if missing:
            raise BagError(f"{path}: no topic {', '.join(missing)}; the bag has {', '.join(sorted(bag.topics))}")
        tf = TransformBuffer(cache_time_s=bag.duration_s + 60.0, max_entries_per_frame=10_000_000)
        for message in bag.messages(topics=[t for t in ("/tf", "/tf_static") if t in bag.topics]):
            tf.ingest_tf_message(bag.decode(message), static=message.topic == "/tf_static")
        keys = {color_topic: "color", depth_topic: "depth", info_topic: "info"}
        for count, items in enumerate(_synchronised_sets(bag, keys, slop_s)):
            if count % stride == 0:
                yield _frame(path.name, count, *items, tf, map_frame)


def _synchronised_sets(bag: BagReader, keys: dict[str, str], slop_s: float) -> Iterator[tuple[Any, Any, Any]]:
    """(colour, depth, info) message sets of the bag in time order, the last ones flushed at the end."""
    ready: deque[tuple[Any, Any, Any]] = deque()
    sync = ApproximateTimeSynchronizer(["color", "depth", "info"], 30, slop_s,
                                       callback=lambda *items: ready.append(items))
    for message in bag.messages(topics=list(keys)):
        decoded = bag.decode(message)
        sync.add(keys[message.topic], stamp_to_ns(decoded.header.stamp), decoded)
        yield from _drain(ready)
    sync.flush()
    yield from _drain(ready)


def _drain(queue: deque) -> Iterator[Any]:
    while queue:
        yield queue.popleft()


def _frame(scene: str, index: int, color_msg: Any, depth_msg: Any, info_msg: Any, tf: TransformBuffer,
           map_frame: str) -> PosedFrame:
    camera = camera_info_to_camera(info_msg)
    color = colour_pixels(color_msg)
    if color.ndim == 2:
        color = color[:, :, None].repeat(3, axis=2)
    stamp = stamp_to_ns(depth_msg.header.stamp)
    pose = tf.lookup_transform(map_frame, depth_msg.header.frame_id, stamp).matrix
    color_camera = camera.scaled(color.shape[1] / camera.width, color.shape[0] / camera.height) \
        if color.shape[:2] != (camera.height, camera.width) else camera
    return PosedFrame(scene, index, color, color_camera, depth_metres(depth_msg), camera, pose)
