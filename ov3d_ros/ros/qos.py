"""The QoS profiles of the graph's topics, in one place so publishers and subscribers agree."""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
# the map, the semantic map, the objects and the markers: the newest one, kept for late joiners
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def sensor_qos(depth: int) -> QoSProfile:
    """Sensor topics: best effort, the newest `depth` messages."""
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)
