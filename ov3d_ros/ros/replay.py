"""Publish a rosbag2 into the ROS graph at its recorded pace, with /clock and each topic's recorded QoS."""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import rclpy
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from tqdm import tqdm

from ov3d_ros.data.rosbag import BagReader, TopicInfo
from ov3d_ros.messages.types import ROS_TYPES
from ov3d_ros.ros.dds import configure_transport

ACK_TIMEOUT_S = 2.0
DISCOVERY_GRACE_S = 0.5
CLOCK_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


@dataclass
class ReplayStats:
    """What a replay published and how fast."""

    published: Counter = field(default_factory=Counter)
    bag_duration_s: float = 0.0
    wall_time_s: float = 0.0

    @property
    def real_time_factor(self) -> float:
        return self.bag_duration_s / self.wall_time_s if self.wall_time_s > 0 else float("inf")


def topic_qos(info: TopicInfo) -> QoSProfile:
    """The QoS a topic was recorded with, so latched topics (/tf_static) stay latched on replay."""
    return QoSProfile(
        depth=max(1, info.depth),
        reliability=ReliabilityPolicy.BEST_EFFORT if info.reliability == "best_effort" else ReliabilityPolicy.RELIABLE,
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if info.durability == "transient_local"
                    else DurabilityPolicy.VOLATILE))


def replay_bag(path: Path, rate: float = 1.0, topics: Sequence[str] | None = None, progress: bool = True,
               wait_for_subscribers_s: float = 0.0, stop: threading.Event | None = None,
               on_publish: Callable[[int, float], None] | None = None, loops: int = 1) -> ReplayStats:
    """Publish every message of the bag (or of `topics`) as raw CDR, paced by its log time divided by `rate`.

    /clock carries the bag time of each message just before it is published. With `wait_for_subscribers_s`,
    playback starts once every topic has a subscriber, or when that many seconds have passed. `on_publish` gets
    (log time ns, time.monotonic()) of every message published. With `loops` > 1 the bag plays again and again,
    each pass shifted in time by the bag's duration (plus a second): messages are re-stamped, latched topics
    (/tf_static) are sent once, so a short bag makes a long, consistent recording (soak tests).
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    stop = stop or threading.Event()
    stats = ReplayStats()
    with BagReader(path) as bag:
        chosen = list(topics) if topics is not None else list(bag.topics)
        configure_transport()
        context = Context()
        rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("ov3d_replay", context=context)
        try:
            publishers = {name: node.create_publisher(ROS_TYPES.get(bag.topics[name].msgtype), name,
                                                      topic_qos(bag.topics[name]))
                          for name in chosen if name in bag.topics}
            clock = node.create_publisher(Clock, "/clock", CLOCK_QOS)
            _wait_for_subscribers(list(publishers.values()), wait_for_subscribers_s, stop)
            total = sum(bag.topics[name].count for name in publishers) * loops
            period_ns = int((bag.duration_s + 1.0) * 1e9)
            started = time.monotonic()
            first_ns: int | None = None
            progress_bar = tqdm(total=total, disable=not progress, unit="msg", desc="replay")
            for loop in range(loops):
                for message in bag.messages(topics=chosen):
                    if loop and publishers[message.topic].qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL:
                        continue
                    stamp_ns = message.timestamp_ns + loop * period_ns
                    first_ns = stamp_ns if first_ns is None else first_ns
                    due = started + (stamp_ns - first_ns) / 1e9 / rate
                    if stop.wait(max(0.0, due - time.monotonic())):
                        break
                    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
                    tick = Clock()
                    tick.clock.sec, tick.clock.nanosec = sec, nanosec
                    clock.publish(tick)
                    msgtype = ROS_TYPES.get(bag.topics[message.topic].msgtype)
                    publishers[message.topic].publish(
                        message.raw if not loop else _restamped(message.raw, msgtype, loop * period_ns))
                    stats.published[message.topic] += 1
                    progress_bar.update()
                    if on_publish is not None:
                        on_publish(stamp_ns, time.monotonic())
                if stop.is_set():
                    break
            progress_bar.close()
            stats.wall_time_s = time.monotonic() - started
            stats.bag_duration_s = bag.duration_s * loops + (loops - 1)
            for publisher in publishers.values():   # let reliable subscribers receive the tail of the bag
                if publisher.qos_profile.reliability == ReliabilityPolicy.RELIABLE:
                    publisher.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))
        finally:
            node.destroy_node()
            rclpy.shutdown(context=context)
    return stats


def _restamped(raw: bytes, msgtype: type, offset_ns: int) -> object:
    """The message of `raw` with every header stamp (a TFMessage's transforms' too) moved by `offset_ns`."""
    msg = deserialize_message(raw, msgtype)
    headers = [t.header for t in msg.transforms] if hasattr(msg, "transforms") else [msg.header]
    for header in headers:
        stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec + offset_ns
        header.stamp.sec, header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    return msg


def _wait_for_subscribers(publishers: list, timeout_s: float, stop: threading.Event) -> None:
    """Until every publisher has a subscriber, then DISCOVERY_GRACE_S more: discovery is not symmetric, a
    subscriber may not yet know the writer the publisher already sees, and would miss the first messages."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop.is_set():
        if all(p.get_subscription_count() > 0 for p in publishers):
            stop.wait(DISCOVERY_GRACE_S)
            return
        time.sleep(0.05)
