"""Words as vectors of the text space: each word encoded on its own by the text encoder (bounded cache), and the
closed word list the keyword reconstructor predicts over."""
from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable, Sequence

import numpy as np

from ov3d_ros.grounding.cache import LruCache

UNKNOWN = "<unk>"


class WordVectors:
    """`encode` (texts -> unit rows) applied to single words, with an LRU cache of `capacity` words."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], capacity: int = 50_000) -> None:
        self.encode = encode
        self._cache: LruCache[str, np.ndarray] = LruCache(capacity)

    def missing(self, tokens: Sequence[str]) -> list[str]:
        """The distinct tokens not cached, sorted."""
        return sorted({t for t in tokens if t not in self._cache})

    def store(self, words: Sequence[str], rows: np.ndarray) -> None:
        """Cache rows the caller encoded (to share one encoder call with other texts)."""
        for word, row in zip(words, rows):
            self._cache.put(word, np.asarray(row, np.float32))

    def __call__(self, tokens: Sequence[str]) -> np.ndarray:
        """(len(tokens), D) float32 rows."""
        missing = self.missing(tokens)
        if missing:
            self.store(missing, self.encode(missing))
        rows = [self._cache.get(token) for token in tokens]
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


def word_list(sentences: Iterable[Sequence[str]], min_count: int = 2) -> tuple[str, ...]:
    """The reconstruction vocabulary: `UNKNOWN` then the words seen at least `min_count` times, by frequency."""
    counts = Counter(token for tokens in sentences for token in tokens)
    return (UNKNOWN, *sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w)))


def word_ids(tokens: Sequence[str], index: dict[str, int]) -> np.ndarray:
    """(L,) ids of tokens in a word list's index (0 = unknown)."""
    return np.array([index.get(t, 0) for t in tokens], dtype=np.int64)
