"""A stand-in text encoder for tests: deterministic pseudo-random unit vectors per text."""
from __future__ import annotations

import hashlib

import numpy as np


def hash_vectors(texts: list[str], dim: int = 16) -> np.ndarray:
    """(len(texts), dim) unit rows, the same for the same text on every run; different texts are unrelated."""
    seeds = [int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") for text in texts]
    rows = np.stack([np.random.default_rng(seed).standard_normal(dim) for seed in seeds])
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)
