"""Counting and throttled logging of dropped messages, and a guard that keeps exceptions out of callbacks."""
from __future__ import annotations

import functools
import threading
import time
import traceback
from collections import Counter
from typing import Any, Callable


class DropCounter:
    """Counts dropped inputs by reason and logs each reason at most once per `throttle_s` (with the total)."""

    def __init__(self, logger: Any, throttle_s: float = 5.0) -> None:
        self._logger = logger
        self._throttle_s = throttle_s
        self._counts: Counter[str] = Counter()
        self._last_log: dict[str, float] = {}
        self._lock = threading.Lock()

    def drop(self, reason: str, detail: str) -> None:
        """Count one dropped input under `reason` and log `detail` unless this reason logged recently."""
        now = time.monotonic()
        with self._lock:
            self._counts[reason] += 1
            total = self._counts[reason]
            due = now - self._last_log.get(reason, -float("inf")) >= self._throttle_s
            if due:
                self._last_log[reason] = now
        if due:
            self._logger.warning(f"dropped input ({reason}, {total} so far): {detail}")

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


def run_guarded(owner: Any, reason: str, callback: Callable[[], None]) -> None:
    """Run `callback`, counting what it raises in `owner.drops` instead of letting it out.

    ValueError (MessageError, TransformError ...) is bad input, counted as `reason` (or the MessageError's own
    reason when it names one); LookupError (a TF lookup
    that cannot be answered) is counted as `tf_lookup_failed`; anything else is counted as `internal_error` and
    logged with its traceback, so a bug is visible but never kills the executor.
    """
    try:
        callback()
    except LookupError as exc:
        owner.drops.drop("tf_lookup_failed", str(exc))
    except ValueError as exc:
        owner.drops.drop(getattr(exc, "reason", None) or reason, str(exc))
    except Exception:  # noqa: BLE001 - a callback must never take the node down
        owner.drops.drop("internal_error", traceback.format_exc(limit=4))


def guarded(reason: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate a node callback so nothing raises out of it (see `run_guarded`)."""
    def wrap(callback: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(callback)
        def run(self: Any, *args: Any) -> None:
            run_guarded(self, reason, lambda: callback(self, *args))
        return run
    return wrap
