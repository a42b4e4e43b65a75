"""Feeding our TransformBuffer from /tf and /tf_static (what tf2_ros.TransformListener does in a ROS install)."""
from __future__ import annotations

from typing import Any

from tf2_msgs.msg import TFMessage

from ov3d_ros.geometry.tf_buffer import TransformBuffer
from ov3d_ros.ros.drops import DropCounter, guarded
from ov3d_ros.ros.qos import TF_QOS, TF_STATIC_QOS


class TfListenerMixin:
    """For a Node with `self.tf` (TransformBuffer) and `self.drops` (DropCounter): call `listen_to_tf` once;
    every transform goes into the buffer and every bad one is counted as `malformed_tf`."""

    tf: TransformBuffer
    drops: DropCounter

    def listen_to_tf(self, callback_group: Any = None) -> None:
        self.create_subscription(TFMessage, "/tf", self.on_tf, TF_QOS,  # type: ignore[attr-defined]
                                 callback_group=callback_group)
        self.create_subscription(TFMessage, "/tf_static", self.on_tf_static,  # type: ignore[attr-defined]
                                 TF_STATIC_QOS, callback_group=callback_group)

    @guarded("malformed_tf")
    def on_tf(self, msg: TFMessage) -> None:
        self._ingest_tf(msg, static=False)

    @guarded("malformed_tf")
    def on_tf_static(self, msg: TFMessage) -> None:
        self._ingest_tf(msg, static=True)

    def _ingest_tf(self, msg: TFMessage, static: bool) -> None:
        _, rejected = self.tf.ingest_tf_message(msg, static=static)
        for reason in rejected:
            self.drops.drop("malformed_tf", reason)
