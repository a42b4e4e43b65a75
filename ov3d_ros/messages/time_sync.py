"""Approximate-time synchronisation of several message streams (a simplified ROS ``message_filters`` policy).

Pure bookkeeping: no ROS imports, no threads, no sleeping. Each topic keeps a bounded queue ordered by stamp. Once
every topic has a message, the set (one message per topic) with the smallest stamp spread is found:

* spread > slop: the oldest queued message can never be part of a match (stamps arrive in order per topic), so it
  is dropped;
* spread <= slop and every topic already holds a message stamped at or after the set's newest stamp: no later
  message can form a tighter set, so the set is emitted and it and everything older is discarded;
* otherwise the set waits for more messages. Sets of identical stamps are therefore emitted at once; others after
  one more message on the lagging topics. Emitting eagerly instead would, once one topic drops a frame, pair
  frame k with frame k+1 of the other topic indefinitely whenever the slop exceeds half a frame period.
"""
from __future__ import annotations

import math
import threading
from bisect import bisect_right
from typing import Any, Callable, Sequence

_NS_PER_S = 1_000_000_000


class ApproximateTimeSynchronizer:
    """Groups messages from ``topics`` whose stamps lie within ``slop_s`` of each other.

    ``callback(*items)`` receives one item per topic, in ``topics`` order. It runs in the thread that called
    :meth:`add` (or :meth:`flush`), after the internal lock is released, so it may call :meth:`add` itself; with
    several producer threads, sets from different threads may therefore reach the callback out of stamp order.

    ``stats`` counts: ``received``, ``emitted`` (sets), ``overflow`` (evicted from a full queue), ``out_of_order``
    (stamp not newer than the last emitted one of its topic), ``unmatched`` (dropped without ever being emitted).
    """

    def __init__(
        self,
        topics: Sequence[str],
        queue_size: int = 10,
        slop_s: float = 0.05,
        *,
        callback: Callable[..., Any],
    ) -> None:
        self._topics = list(topics)
        if not self._topics:
            raise ValueError("at least one topic is required")
        if len(set(self._topics)) != len(self._topics):
            raise ValueError(f"topics must be unique, got {self._topics}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not (math.isfinite(slop_s) and slop_s >= 0.0):
            raise ValueError(f"slop_s must be a finite number >= 0, got {slop_s}")
        self._index = {topic: i for i, topic in enumerate(self._topics)}
        self._queue_size = queue_size
        self._slop_ns = int(round(slop_s * _NS_PER_S))
        self._callback = callback
        self._lock = threading.Lock()
        self._stamps: list[list[int]] = [[] for _ in self._topics]
        self._items: list[list[Any]] = [[] for _ in self._topics]
        self._last_emitted: list[int | None] = [None for _ in self._topics]
        self._stats = dict.fromkeys(("received", "emitted", "overflow", "out_of_order", "unmatched"), 0)

    @property
    def topics(self) -> list[str]:
        """The synchronised topics, in callback argument order."""
        return list(self._topics)

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of the counters."""
        with self._lock:
            return dict(self._stats)

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting for a match, per topic."""
        with self._lock:
            return {topic: len(stamps) for topic, stamps in zip(self._topics, self._stamps)}

    def add(self, topic: str, stamp_ns: int, item: Any) -> None:
        """Queues ``item`` stamped ``stamp_ns`` on ``topic`` and emits every set that became complete."""
        try:
            k = self._index[topic]
        except KeyError:
            raise ValueError(f"unknown topic {topic!r}; synchronised topics: {', '.join(self._topics)}") from None
        with self._lock:
            self._stats["received"] += 1
            last = self._last_emitted[k]
            if last is not None and stamp_ns <= last:
                self._stats["out_of_order"] += 1
                return
            stamps, items = self._stamps[k], self._items[k]
            position = bisect_right(stamps, stamp_ns)
            stamps.insert(position, stamp_ns)
            items.insert(position, item)
            if len(stamps) > self._queue_size:
                del stamps[0], items[0]
                self._stats["overflow"] += 1
            ready = self._match()
        for items_set in ready:
            self._callback(*items_set)

    def clear(self) -> None:
        """Drops every queued message and forgets the last emitted stamps (e.g. after a clock jump); keeps stats."""
        with self._lock:
            for stamps, items in zip(self._stamps, self._items):
                stamps.clear()
                items.clear()
            self._last_emitted = [None for _ in self._topics]

    def flush(self) -> None:
        """Emits the remaining sets within slop without waiting for later messages (e.g. at the end of a bag)."""
        with self._lock:
            ready = self._match(wait_for_newer=False)
        for items_set in ready:
            self._callback(*items_set)

    def _match(self, wait_for_newer: bool = True) -> list[tuple[Any, ...]]:
        """Emits or prunes until some queue is empty or the best set must wait; returns emitted sets. Lock held."""
        ready: list[tuple[Any, ...]] = []
        while all(self._stamps):
            chosen, spread = self._tightest_set()
            if spread > self._slop_ns:
                oldest = min(range(len(self._topics)), key=lambda k: self._stamps[k][0])
                del self._stamps[oldest][0], self._items[oldest][0]
                self._stats["unmatched"] += 1
                continue
            newest = max(stamps[i] for stamps, i in zip(self._stamps, chosen))
            if wait_for_newer and any(stamps[-1] < newest for stamps in self._stamps):
                break
            ready.append(tuple(items[i] for items, i in zip(self._items, chosen)))
            self._stats["emitted"] += 1
            for k, i in enumerate(chosen):
                self._last_emitted[k] = self._stamps[k][i]
                del self._stamps[k][: i + 1], self._items[k][: i + 1]
                self._stats["unmatched"] += i
        return ready

    def _tightest_set(self) -> tuple[list[int], int]:
        """Indices (one per topic) of the set with the smallest stamp spread, and that spread; the oldest on ties.

        Classic smallest-range sweep over sorted lists: repeatedly advance the topic holding the minimum stamp.
        """
        positions = [0] * len(self._stamps)
        best, best_spread = list(positions), math.inf
        while True:
            heads = [stamps[p] for stamps, p in zip(self._stamps, positions)]
            low = min(heads)
            spread = max(heads) - low
            if spread < best_spread:
                best, best_spread = list(positions), spread
            k = heads.index(low)
            positions[k] += 1
            if positions[k] == len(self._stamps[k]):
                return best, int(best_spread)
