"""The grounding engine the /ground_object service calls: validates queries and ranks the map's objects."""
from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field

import numpy as np


class QueryError(ValueError):
    """A query that cannot be answered as written; the message says why, for the caller."""


@dataclass(frozen=True)
class MapObject:
    """An object instance of the semantic map, in the map frame."""

    instance_id: int
    label: str
    score: float
    center: np.ndarray                      # (3,) metres
    size: np.ndarray                        # (3,) extent along the box axes, metres
    orientation_xyzw: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 0.0, 1.0]))


@dataclass(frozen=True)
class GroundingAnswer:
    """What the engine answers: success, a reason when it failed, and candidates best first."""

    success: bool
    message: str
    candidates: tuple[MapObject, ...] = ()


_CONTROL = {"Cc", "Cf", "Cs", "Co", "Cn"}


def validate_query(query: object, max_chars: int) -> str:
    """Return the normalised query text or raise QueryError with a reason a planner's operator can act on."""
    if not isinstance(query, str):
        raise QueryError(f"query must be text, got {type(query).__name__}")
    if any(unicodedata.category(ch) in _CONTROL and ch not in "\t\n\r" for ch in query):
        raise QueryError("query contains non-text (control or unassigned) characters")
    if len(query) > max_chars:
        raise QueryError(f"query is {len(query)} characters long; the limit is {max_chars}")
    text = " ".join(query.split())
    if not text:
        raise QueryError("query is empty")
    if not re.search(r"\w", text):
        raise QueryError("query contains no words")
    return text


class GroundingEngine:
    """Holds the current objects of the map and answers queries against them. Thread-safe."""

    def __init__(self, max_query_chars: int = 1000) -> None:
        self.max_query_chars = max_query_chars
        self._objects: tuple[MapObject, ...] = ()
        self._lock = threading.Lock()

    def set_objects(self, objects: list[MapObject]) -> None:
        """Replace the map's objects (called whenever the semantic map is re-segmented)."""
        with self._lock:
            self._objects = tuple(objects)

    @property
    def object_count(self) -> int:
        return len(self._objects)

    def ground(self, query: object, max_results: int) -> GroundingAnswer:
        """Answer one query; never raises for bad input, the answer carries the reason instead."""
        try:
            text = validate_query(query, self.max_query_chars)
        except QueryError as exc:
            return GroundingAnswer(False, str(exc))
        with self._lock:
            objects = self._objects
        if not objects:
            return GroundingAnswer(False, "map is empty: no objects have been mapped yet")
        words = set(re.findall(r"\w+", text.lower()))
        matches = [o for o in objects if set(o.label.lower().split()) <= words]
        if not matches:
            known = sorted({o.label for o in objects})
            return GroundingAnswer(False, f"no object in the map matches '{text}'; mapped labels: {', '.join(known)}")
        matches.sort(key=lambda o: o.score, reverse=True)
        return GroundingAnswer(True, f"{len(matches)} candidate(s)", tuple(matches[:max_results]))
