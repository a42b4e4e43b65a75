"""Latency bookkeeping: percentiles of samples, and a bounded per-stage window that nodes report from."""
from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict, deque
from typing import Iterator, Sequence

import numpy as np


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean of latency samples (milliseconds)."""
    values = np.asarray(samples_ms, dtype=np.float64)
    if not values.size:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    return {"p50": float(np.percentile(values, 50)), "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99)), "max": float(values.max()), "mean": float(values.mean())}


class StageTimes:
    """The last `window` durations of each named stage, and how many ran in total. Thread-safe."""

    def __init__(self, window: int = 500) -> None:
        self._samples: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self._counts: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def add(self, stage: str, milliseconds: float) -> None:
        with self._lock:
            self._samples[stage].append(float(milliseconds))
            self._counts[stage] += 1

    @contextlib.contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        """Time the body of a `with` block as one sample of `stage` (also when it raises)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, (time.perf_counter() - started) * 1000.0)

    def summary(self) -> dict[str, dict[str, float]]:
        """stage -> percentiles of its window plus `count` (all samples ever)."""
        with self._lock:
            return {stage: {**percentiles(list(samples)), "count": float(self._counts[stage])}
                    for stage, samples in self._samples.items()}
