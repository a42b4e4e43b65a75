"""A ROS-free, thread-safe transform tree with time-interpolated lookups (the parts of tf2's BufferCore we need).

Every frame has at most one parent. A link ``parent -> child`` holds ``T_parent_child`` (maps child-frame points
into the parent frame) and is either static (time-independent) or dynamic (a time-ordered history, trimmed to
``cache_time_s`` before its newest stamp). Stamps are integer nanoseconds. Messages are duck-typed
``geometry_msgs/TransformStamped`` / ``tf2_msgs/TFMessage`` objects from rclpy or rosbags.
"""
from __future__ import annotations

import math
import threading
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from ov3d_ros.geometry.transforms import RigidTransform, TransformError, slerp
from ov3d_ros.messages.errors import MessageError
from ov3d_ros.messages.types import stamp_to_ns

_NS_PER_S = 1_000_000_000
_MAX_LISTED_FRAMES = 20


class TransformLookupError(LookupError):
    """A lookup could not be answered; the subclasses say why."""


class UnknownFrameError(TransformLookupError):
    """A requested frame was never published."""


class ConnectivityError(TransformLookupError):
    """The two frames exist but belong to different trees."""


class ExtrapolationError(TransformLookupError):
    """The requested time lies outside the stored history of a link on the path."""


@dataclass(frozen=True)
class StampedTransform:
    """``T_parent_child`` at ``stamp_ns``: the plain-values form accepted by :meth:`TransformBuffer.set_transform`."""

    parent_frame: str
    child_frame: str
    stamp_ns: int
    transform: RigidTransform

    @classmethod
    def from_msg(cls, msg: Any) -> StampedTransform:
        """From a ``geometry_msgs/TransformStamped``; raises :class:`TransformError` if malformed."""
        try:
            header = msg.header
            return cls(header.frame_id, msg.child_frame_id, _stamp_ns(header.stamp), RigidTransform.from_msg(msg))
        except AttributeError as exc:
            raise TransformError(f"not a geometry_msgs/TransformStamped: {exc}") from exc


def _stamp_ns(stamp: Any) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time``, as a TransformError when the stamp is invalid."""
    try:
        return stamp_to_ns(stamp)
    except MessageError as exc:
        raise TransformError(str(exc)) from None


def _fmt_time(ns: int) -> str:
    return f"{ns / _NS_PER_S:.9f} s"


def _clean_frame(frame: Any, what: str) -> str:
    if not isinstance(frame, str):
        raise TransformError(f"{what} frame id must be a string, got {type(frame).__name__}")
    cleaned = frame.lstrip("/")
    if not cleaned:
        raise TransformError(f"{what} frame id is empty")
    return cleaned


@dataclass
class _Link:
    """The link from ``parent`` to one child frame: one static matrix, or a time-ordered dynamic history."""

    parent: str
    static: bool
    authority: str
    static_matrix: np.ndarray | None = None
    stamps: list[int] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)  # per stamp: (tx, ty, tz, qx, qy, qz, qw)


class TransformBuffer:
    """Thread-safe store of the transform tree with interpolated lookups.

    ``extrapolation_tolerance_s`` lets a lookup fall up to that far outside a dynamic link's history, using the
    nearest stored sample (no actual extrapolation). ``max_entries_per_frame`` hard-caps each history regardless
    of ``cache_time_s``; ``max_frames`` caps the number of distinct frame ids.
    """

    def __init__(
        self,
        cache_time_s: float = 10.0,
        max_frames: int = 1000,
        extrapolation_tolerance_s: float = 0.0,
        max_entries_per_frame: int = 10_000,
    ) -> None:
        if not (math.isfinite(cache_time_s) and cache_time_s > 0.0):
            raise ValueError(f"cache_time_s must be positive, got {cache_time_s}")
        if not (math.isfinite(extrapolation_tolerance_s) and extrapolation_tolerance_s >= 0.0):
            raise ValueError(f"extrapolation_tolerance_s must be >= 0, got {extrapolation_tolerance_s}")
        if max_frames < 2 or max_entries_per_frame < 1:
            raise ValueError("max_frames must be >= 2 and max_entries_per_frame >= 1")
        self._cache_ns = int(round(cache_time_s * _NS_PER_S))
        self._tolerance_ns = int(round(extrapolation_tolerance_s * _NS_PER_S))
        self._max_frames = max_frames
        self._max_entries = max_entries_per_frame
        self._lock = threading.Lock()
        self._links: dict[str, _Link] = {}
        self._child_count: dict[str, int] = {}  # parent frame -> number of links naming it as parent

    # ------------------------------------------------------------------ insertion

    def set_transform(self, transform: Any, authority: str = "", static: bool = False) -> None:
        """Stores a ``TransformStamped`` message or a :class:`StampedTransform`.

        Raises :class:`TransformError` for non-finite values, bad quaternions, empty or equal frame ids, a link that
        would close a cycle, data older than the cache window, or too many frames. A new parent for an existing child,
        or a switch between static and dynamic, replaces that child's link (and drops its history).
        """
        st = transform if isinstance(transform, StampedTransform) else StampedTransform.from_msg(transform)
        parent = _clean_frame(st.parent_frame, "parent")
        child = _clean_frame(st.child_frame, "child")
        if parent == child:
            raise TransformError(f"transform from frame {child!r} to itself")
        if st.stamp_ns < 0:
            raise TransformError(f"negative stamp {st.stamp_ns} ns for {parent!r}->{child!r}")
        values = np.concatenate((st.transform.translation, st.transform.quaternion))
        with self._lock:
            link = self._links.get(child)
            if link is None or link.parent != parent or link.static != static:
                link = self._replace_link(parent, child, authority, static)
            link.authority = authority
            if static:
                link.static_matrix = st.transform.matrix
            else:
                self._insert_sample(link, parent, child, st.stamp_ns, values)

    def _replace_link(self, parent: str, child: str, authority: str, static: bool) -> _Link:
        """Creates the link ``parent -> child`` (replacing any previous link of ``child``); lock held."""
        ancestor: str | None = parent
        while ancestor is not None:
            if ancestor == child:
                raise TransformError(f"link {parent!r}->{child!r} would create a cycle in the transform tree")
            parent_link = self._links.get(ancestor)
            ancestor = parent_link.parent if parent_link else None
        new_frames = sum(1 for f in (parent, child) if not self._known(f))
        if new_frames and len(self._all_frames()) + new_frames > self._max_frames:
            raise TransformError(
                f"link {parent!r}->{child!r} would exceed the limit of {self._max_frames} frames"
            )
        old = self._links.get(child)
        if old is not None:
            self._release_parent(old.parent)
        link = _Link(parent=parent, static=static, authority=authority)
        self._links[child] = link
        self._child_count[parent] = self._child_count.get(parent, 0) + 1
        return link

    def _release_parent(self, parent: str) -> None:
        remaining = self._child_count[parent] - 1
        if remaining:
            self._child_count[parent] = remaining
        else:
            del self._child_count[parent]

    def _insert_sample(self, link: _Link, parent: str, child: str, stamp_ns: int, values: np.ndarray) -> None:
        """Adds one dynamic sample in time order, replacing a sample with the same stamp; lock held."""
        stamps = link.stamps
        if stamps and stamp_ns < stamps[-1] - self._cache_ns:
            raise TransformError(
                f"transform {parent!r}->{child!r} at t={_fmt_time(stamp_ns)} is older than the cache window "
                f"(newest is t={_fmt_time(stamps[-1])}, cache {self._cache_ns / _NS_PER_S:g} s)"
            )
        index = bisect_left(stamps, stamp_ns)
        if index < len(stamps) and stamps[index] == stamp_ns:
            link.values[index] = values
            return
        stamps.insert(index, stamp_ns)
        link.values.insert(index, values)
        drop = max(bisect_left(stamps, stamps[-1] - self._cache_ns), len(stamps) - self._max_entries)
        if drop > 0:
            del stamps[:drop]
            del link.values[:drop]

    def ingest_tf_message(self, msg: Any, static: bool = False, authority: str = "") -> tuple[int, list[str]]:
        """Stores every transform of a ``tf2_msgs/TFMessage``; never raises for bad entries.

        Returns ``(accepted, rejected)`` where ``rejected`` holds one human-readable reason per dropped transform.
        """
        accepted = 0
        rejected: list[str] = []
        try:
            transforms = list(msg.transforms)
        except (AttributeError, TypeError) as exc:
            return 0, [f"not a tf2_msgs/TFMessage: {exc}"]
        for transform in transforms:
            try:
                self.set_transform(transform, authority=authority, static=static)
                accepted += 1
            except (TransformError, AttributeError, TypeError, ValueError) as exc:
                rejected.append(str(exc))
        return accepted, rejected

    def clear(self) -> None:
        """Forgets every frame and transform (e.g. after the clock jumped backwards)."""
        with self._lock:
            self._links.clear()
            self._child_count.clear()

    # ------------------------------------------------------------------ queries

    def frames(self) -> list[str]:
        """Every known frame id, sorted."""
        with self._lock:
            return sorted(self._all_frames())

    def can_transform(self, target_frame: str, source_frame: str, time_ns: int | None = None) -> bool:
        """Whether :meth:`lookup_transform` would succeed with these arguments."""
        try:
            self.lookup_transform(target_frame, source_frame, time_ns)
        except TransformLookupError:
            return False
        return True

    def latest_common_time(self, target_frame: str, source_frame: str) -> int | None:
        """Newest stamp (ns) at which every dynamic link between the frames has data; None if all links are static."""
        with self._lock:
            source_path, target_path = self._paths(_lookup_frame(target_frame), _lookup_frame(source_frame))
            return self._latest_time(source_path + target_path)

    def lookup_transform(self, target_frame: str, source_frame: str, time_ns: int | None = None) -> RigidTransform:
        """``T_target_source`` at ``time_ns``: maps points expressed in ``source_frame`` into ``target_frame``.

        ``time_ns`` None or 0 means the latest common time of the links involved. Dynamic links are interpolated
        (slerp + lerp) between the samples around ``time_ns``. Raises :class:`UnknownFrameError`,
        :class:`ConnectivityError` or :class:`ExtrapolationError`.
        """
        target, source = _lookup_frame(target_frame), _lookup_frame(source_frame)
        with self._lock:
            source_path, target_path = self._paths(target, source)
            if not time_ns:
                time_ns = self._latest_time(source_path + target_path)
            source_samples = [self._sample(child, time_ns) for child in source_path]
            target_samples = [self._sample(child, time_ns) for child in target_path]
        matrices = _link_matrices(source_samples + target_samples)
        ancestor_from_source = _chain(matrices[: len(source_samples)])
        ancestor_from_target = _chain(matrices[len(source_samples):])
        m = _rigid_inverse(ancestor_from_target) @ ancestor_from_source
        return RigidTransform(Rotation.from_matrix(m[:3, :3]), m[:3, 3])

    def _known(self, frame: str) -> bool:
        return frame in self._links or frame in self._child_count

    def _all_frames(self) -> set[str]:
        return self._links.keys() | self._child_count.keys()

    def _check_known(self, frame: str) -> None:
        if not self._known(frame):
            known = sorted(self._all_frames())
            listed = ", ".join(known[:_MAX_LISTED_FRAMES]) or "(none)"
            if len(known) > _MAX_LISTED_FRAMES:
                listed += f", ... ({len(known) - _MAX_LISTED_FRAMES} more)"
            raise UnknownFrameError(f"frame {frame!r} does not exist; known frames: {listed}")

    def _paths(self, target: str, source: str) -> tuple[list[str], list[str]]:
        """Child frames of the links from ``source`` and from ``target`` up to their common ancestor; lock held."""
        self._check_known(target)
        self._check_known(source)
        source_chain = self._ancestors(source)
        depth = {frame: i for i, frame in enumerate(source_chain)}
        target_path: list[str] = []
        frame: str | None = target
        while frame is not None and frame not in depth:
            target_path.append(frame)
            link = self._links.get(frame)
            frame = link.parent if link else None
        if frame is None:
            raise ConnectivityError(
                f"frames {target!r} and {source!r} are not connected: {target!r} belongs to the tree rooted at "
                f"{target_path[-1]!r}, {source!r} to the tree rooted at {source_chain[-1]!r}"
            )
        return source_chain[: depth[frame]], target_path

    def _ancestors(self, frame: str) -> list[str]:
        """``frame`` followed by its parent, grandparent ... up to the root; lock held."""
        chain = [frame]
        link = self._links.get(frame)
        while link is not None:
            chain.append(link.parent)
            link = self._links.get(link.parent)
        return chain

    def _latest_time(self, children: list[str]) -> int | None:
        latest = [self._links[child].stamps[-1] for child in children if not self._links[child].static]
        return min(latest) if latest else None

    def _sample(self, child: str, time_ns: int | None) -> np.ndarray | tuple[np.ndarray, np.ndarray, float]:
        """The link of ``child`` at ``time_ns``: a 4x4 matrix (static) or (values_a, values_b, fraction); lock held."""
        link = self._links[child]
        if link.static:
            return link.static_matrix
        stamps = link.stamps
        assert time_ns is not None  # a path containing a dynamic link always has a latest time
        if time_ns <= stamps[0] or time_ns >= stamps[-1]:
            edge = 0 if time_ns <= stamps[0] else -1
            gap = abs(time_ns - stamps[edge])
            if gap > self._tolerance_ns:
                self._raise_extrapolation(link, child, time_ns, edge)
            return link.values[edge], link.values[edge], 0.0
        index = bisect_right(stamps, time_ns)
        t0, t1 = stamps[index - 1], stamps[index]
        return link.values[index - 1], link.values[index], (time_ns - t0) / (t1 - t0)

    def _raise_extrapolation(self, link: _Link, child: str, time_ns: int, edge: int) -> None:
        stamp = link.stamps[edge]
        direction, bound = ("future", "latest") if edge == -1 else ("past", "earliest")
        by = f" (published by {link.authority!r})" if link.authority else ""
        raise ExtrapolationError(
            f"lookup at t={_fmt_time(time_ns)} is {abs(time_ns - stamp) / _NS_PER_S:.9f} s into the {direction}: "
            f"{bound} data for {link.parent!r}->{child!r}{by} is at t={_fmt_time(stamp)}, "
            f"tolerance {self._tolerance_ns / _NS_PER_S:g} s"
        )


def _lookup_frame(frame: Any) -> str:
    try:
        return _clean_frame(frame, "requested")
    except TransformError as exc:
        raise UnknownFrameError(str(exc)) from None


def _link_matrices(samples: list[np.ndarray | tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """(N, 4, 4) matrices of the link samples; all dynamic ones are interpolated in one vectorised scipy call."""
    out = np.zeros((len(samples), 4, 4))
    out[:, 3, 3] = 1.0
    dynamic = []
    for i, sample in enumerate(samples):
        if isinstance(sample, np.ndarray):
            out[i] = sample
        else:
            dynamic.append(i)
    if dynamic:
        start = np.array([samples[i][0] for i in dynamic])
        end = np.array([samples[i][1] for i in dynamic])
        fractions = np.array([samples[i][2] for i in dynamic])
        rotations = slerp(Rotation.from_quat(start[:, 3:]), Rotation.from_quat(end[:, 3:]), fractions)
        out[dynamic, :3, :3] = rotations.as_matrix()
        out[dynamic, :3, 3] = start[:, :3] + fractions[:, None] * (end[:, :3] - start[:, :3])
    return out


def _chain(matrices: np.ndarray) -> np.ndarray:
    """Product ``M_n ... M_1`` of child-to-parent matrices listed from the leaf upwards."""
    result = np.eye(4)
    for m in matrices:
        result = m @ result
    return result


def _rigid_inverse(m: np.ndarray) -> np.ndarray:
    inv = np.eye(4)
    inv[:3, :3] = m[:3, :3].T
    inv[:3, 3] = -m[:3, :3].T @ m[:3, 3]
    return inv
