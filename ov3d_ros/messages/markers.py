"""RViz markers of boxes with a caption: the segmentation node's instances and the grounding node's answers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from visualization_msgs.msg import Marker, MarkerArray

CAPTION_HEIGHT_M = 0.12     # text size
CAPTION_LIFT_M = 0.1        # caption above the box's top


@dataclass(frozen=True)
class CaptionedBox:
    """One box to draw: its marker id, centre, extent, orientation (x, y, z, w), colour in [0, 1], the box's
    opacity and its caption."""

    marker_id: int
    centre: np.ndarray
    size: np.ndarray
    orientation_xyzw: np.ndarray
    rgb: np.ndarray
    alpha: float
    caption: str


def box_markers(boxes: Sequence[CaptionedBox], frame: str, stamp: Time) -> MarkerArray:
    """A DELETEALL (the previous set goes), then a CUBE (namespace `boxes`) and a facing caption (`labels`) per
    box, in `frame`."""
    markers = [Marker(action=Marker.DELETEALL)]
    for box in boxes:
        for kind, namespace in ((Marker.CUBE, "boxes"), (Marker.TEXT_VIEW_FACING, "labels")):
            marker = Marker(type=kind, ns=namespace, id=int(box.marker_id), action=Marker.ADD)
            marker.header.frame_id, marker.header.stamp = frame, stamp
            p = marker.pose.position
            p.x, p.y, p.z = (float(v) for v in box.centre)
            q = marker.pose.orientation
            q.x, q.y, q.z, q.w = (float(v) for v in box.orientation_xyzw)
            marker.color.r, marker.color.g, marker.color.b = (float(v) for v in box.rgb)
            if kind == Marker.CUBE:
                marker.scale.x, marker.scale.y, marker.scale.z = (float(v) for v in box.size)
                marker.color.a = float(box.alpha)
            else:
                p.z += float(box.size[2]) / 2 + CAPTION_LIFT_M
                marker.scale.z = CAPTION_HEIGHT_M
                marker.color.a = 1.0
                marker.text = box.caption
            markers.append(marker)
    return MarkerArray(markers=markers)
