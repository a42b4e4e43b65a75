"""Label vocabularies: labels with synonyms, their prompt-template embeddings (cached on disk) and classification.

A label entry is ``"sofa: couch, settee"`` (label, then synonyms) or just ``"chair"``. Every label and synonym is
embedded as the normalised mean over the prompt templates; a feature's score for a label is its best cosine
similarity over the label's texts.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import logging
import os
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from ov3d_ros.config import LanguageConfig
from ov3d_ros.files import atomic_path
from ov3d_ros.language.encoders import TextEncoder, normalise_rows

MAX_ENTRY_CHARS = 200
CLASSIFY_CHUNK_ELEMENTS = 1 << 22  # features x max(dim, texts) per chunk: ~16 MB per float32 temporary

log = logging.getLogger(__name__)

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


def parse_label_entries(entries: Iterable[str], max_chars: int = MAX_ENTRY_CHARS,
                        ) -> tuple[list[str], dict[str, list[str]]]:
    """Labels and their synonyms (every label a key) from entries ``"label"`` or ``"label: synonym, synonym"``.

    Raises ValueError naming the entry for an empty label, an over-long entry, a second ':' or a label or synonym
    already used (case-insensitive); repeated synonyms within one entry are dropped.
    """
    labels: list[str] = []
    synonyms: dict[str, list[str]] = {}
    owner: dict[str, str] = {}  # lower-cased label or synonym -> the label it names
    for entry in entries:
        if not isinstance(entry, str):
            raise ValueError(f"label entry {entry!r} is not a string")
        if len(entry) > max_chars:
            raise ValueError(f"label entry {entry[:40]!r}... is {len(entry)} characters long (limit {max_chars})")
        if entry.count(":") > 1:
            raise ValueError(f"label entry {entry!r}: use one ':' between the label and its comma-separated synonyms")
        label, _, rest = (part.strip() for part in entry.partition(":"))
        if not label:
            raise ValueError(f"label entry {entry!r} has an empty label")
        if label.lower() in owner:
            raise ValueError(f"label entry {entry!r}: {label!r} is already used by label {owner[label.lower()]!r}")
        owner[label.lower()] = label
        labels.append(label)
        synonyms[label] = []
        for synonym in (item.strip() for item in rest.split(",")):
            if not synonym or owner.get(synonym.lower()) == label:
                continue
            if synonym.lower() in owner:
                raise ValueError(f"label entry {entry!r}: synonym {synonym!r} is already used by label "
                                 f"{owner[synonym.lower()]!r}")
            owner[synonym.lower()] = label
            synonyms[label].append(synonym)
    return labels, synonyms


def default_cache_dir(cfg: LanguageConfig) -> Path:
    """`cfg.cache_dir`, or `$XDG_CACHE_HOME/ov3d_ros/text_embeddings` (`~/.cache/...`) when it is empty."""
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ov3d_ros" / "text_embeddings"


def embed_with_templates(encoder: TextEncoder, templates: list[str], texts: list[str]) -> np.ndarray:
    """(N, dim): each text as the normalised mean over templates of ``template.format(text)``, one encoder call."""
    templates = _check_templates(templates)
    prompts = [template.format(text) for text in texts for template in templates]
    vectors = encoder.encode(prompts).reshape(len(texts), len(templates), encoder.dim)
    return normalise_rows(vectors.mean(axis=1))


class EmbeddingCache:
    """Text embeddings on disk: one .npz per (encoder fingerprint, templates), mapping text -> vector.

    Files are replaced atomically; a lookup that has to encode merges what other processes wrote meanwhile before
    rewriting. An unreadable file is ignored with a warning and rebuilt. `hits` counts texts served from the cache,
    `misses` texts that had to be encoded.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory).expanduser()
        self.hits = 0
        self.misses = 0
        self._tables: dict[Path, dict[str, np.ndarray]] = {}
        self._lock = threading.Lock()

    def path_for(self, encoder: TextEncoder, templates: list[str]) -> Path:
        """The cache file of an encoder and template list."""
        text = "\n".join([encoder.fingerprint, *_check_templates(templates)])
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return self.directory / f"{key}.npz"

    def lookup(self, encoder: TextEncoder, templates: list[str], texts: list[str]) -> np.ndarray:
        """(N, dim) float32 embeddings of `texts`, encoding (and storing) only those not cached yet."""
        templates = _check_templates(templates)
        texts = list(texts)
        path = self.path_for(encoder, templates)
        with self._lock:
            table = self._tables.get(path)
            if table is None:
                table = self._tables[path] = self._read(path, encoder, templates)
            missing = list(dict.fromkeys(text for text in texts if text not in table))
            if missing:  # another process may have added them since we read the file
                table.update(self._read(path, encoder, templates))
                missing = [text for text in missing if text not in table]
            if missing:
                table.update(zip(missing, embed_with_templates(encoder, templates, missing)))
                self._write(path, encoder, templates, table)
            fresh = set(missing)
            self.misses += len(fresh)
            self.hits += sum(text not in fresh for text in texts)
            if not texts:
                return np.zeros((0, encoder.dim), dtype=np.float32)
            return np.stack([table[text] for text in texts])

    @staticmethod
    def _read(path: Path, encoder: TextEncoder, templates: list[str]) -> dict[str, np.ndarray]:
        if not path.exists():
            return {}
        try:
            with np.load(path, allow_pickle=False) as data:
                texts, vectors = data["texts"], data["vectors"]
                if str(data["fingerprint"]) != encoder.fingerprint or data["templates"].tolist() != templates:
                    raise ValueError("it belongs to another encoder or template list")
            if vectors.shape != (len(texts), encoder.dim) or vectors.dtype != np.float32:
                raise ValueError(f"vectors of shape {vectors.shape} ({vectors.dtype}) for {len(texts)} texts")
            if not np.isfinite(vectors).all():
                raise ValueError("non-finite vectors")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("ignoring unreadable text-embedding cache %s (%s); it will be rebuilt", path, exc)
            return {}
        return dict(zip(texts.tolist(), vectors))

    def _write(self, path: Path, encoder: TextEncoder, templates: list[str], table: dict[str, np.ndarray]) -> None:
        """Atomically replace the cache file; failing to write only costs re-encoding later."""
        try:
            with atomic_path(path) as temporary, open(temporary, "wb") as stream:
                np.savez(stream, texts=np.array(list(table), dtype=str), vectors=np.stack(list(table.values())),
                         fingerprint=np.array(encoder.fingerprint), templates=np.array(templates, dtype=str))
        except OSError as exc:
            log.warning("cannot write text-embedding cache %s: %s", path, exc)


def _check_templates(templates: Iterable[str]) -> list[str]:
    """The templates as a list; ValueError unless each holds '{}' exactly once and formats cleanly."""
    templates = list(templates)
    for template in templates:
        try:
            valid = isinstance(template, str) and template.count("{}") == 1 and bool(template.format("x"))
        except (IndexError, KeyError, ValueError):
            valid = False
        if not valid:
            raise ValueError(f"prompt template {template!r} must hold '{{}}' exactly once (and no other fields)")
    if not templates:
        raise ValueError("at least one prompt template is needed")
    return templates


def shift_rows(rows: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Unit rows moved by `-offset` and re-normalised (float32): embeddings in a centred text space."""
    moved = rows - np.asarray(offset, dtype=rows.dtype)
    return (moved / np.maximum(np.linalg.norm(moved, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Vocabulary:
    """Labels (with synonyms) embedded in an encoder's space.

    `text_embeddings` rows are the canonical names first (so rows [:L] are `label_embeddings`), then the synonyms;
    `row_label` maps each row to its label index.
    """

    labels: tuple[str, ...]
    synonyms: dict[str, tuple[str, ...]]
    label_embeddings: np.ndarray  # (L, D) float32
    text_embeddings: np.ndarray   # (R, D) float32
    row_label: np.ndarray         # (R,) int64
    encoder_name: str
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        count, rows = len(self.labels), len(self.row_label)
        if count == 0:
            raise ValueError("a vocabulary needs at least one label")
        if self.label_embeddings.ndim != 2 or self.label_embeddings.shape[0] != count:
            raise ValueError(f"label_embeddings must be ({count}, D), got {self.label_embeddings.shape}")
        if self.text_embeddings.shape != (rows, self.label_embeddings.shape[1]):
            raise ValueError(f"text_embeddings must be ({rows}, D), got {self.text_embeddings.shape}")
        if rows and (self.row_label.min() < 0 or self.row_label.max() >= count):
            raise ValueError("row_label holds indices outside the labels")
        index = {label.lower(): i for i, label in enumerate(self.labels)}
        index.update((synonym.lower(), self.labels.index(label))
                     for label, names in self.synonyms.items() for synonym in names)
        object.__setattr__(self, "_index", index)

    @classmethod
    def build(cls, entries_or_labels: Iterable[str], encoder: TextEncoder, templates: list[str],
              cache: EmbeddingCache | None = None) -> Vocabulary:
        """Parse label entries and embed every label and synonym (through `cache` when given)."""
        labels, synonyms = parse_label_entries(entries_or_labels)
        texts = labels + [synonym for label in labels for synonym in synonyms[label]]
        row_label = list(range(len(labels))) + [i for i, label in enumerate(labels) for _ in synonyms[label]]
        if cache is None:
            embeddings = embed_with_templates(encoder, templates, texts)
        else:
            embeddings = cache.lookup(encoder, templates, texts)
        return cls(labels=tuple(labels), synonyms={label: tuple(names) for label, names in synonyms.items()},
                   label_embeddings=embeddings[:len(labels)].copy(), text_embeddings=embeddings,
                   row_label=np.asarray(row_label, dtype=np.int64), encoder_name=encoder.name)

    def entries(self) -> list[str]:
        """The labels as entries `parse_label_entries` reads back: 'name' or 'name: synonym, synonym'."""
        return [f"{label}: {', '.join(self.synonyms[label])}" if self.synonyms.get(label) else label
                for label in self.labels]

    @property
    def dim(self) -> int:
        return int(self.text_embeddings.shape[1])

    def centred(self, offset: np.ndarray) -> Vocabulary:
        """The same vocabulary in a text space shifted by `-offset` (rows re-normalised): the space of a student
        trained with a centred text space (its checkpoint stores the offset)."""
        return dataclasses.replace(self, label_embeddings=shift_rows(self.label_embeddings, offset),
                                   text_embeddings=shift_rows(self.text_embeddings, offset))

    def index(self, label_or_synonym: str) -> int:
        """Index of a label, case-insensitive; a synonym gives its label. KeyError suggests the nearest name."""
        key = label_or_synonym.strip().lower()
        if key in self._index:
            return self._index[key]
        close = difflib.get_close_matches(key, list(self._index), n=1)
        hint = f"did you mean {self.labels[self._index[close[0]]]!r}?" if close else \
            f"known labels: {', '.join(self.labels[:10])}{' ...' if len(self.labels) > 10 else ''}"
        raise KeyError(f"unknown label {label_or_synonym!r}; {hint}")

    def logits(self, features: ArrayOrTensor) -> ArrayOrTensor:
        """(N, L) cosine similarity of each feature to each label (best over its texts); torch in, torch out.

        Tensors keep their device and dtype and stay differentiable (for losses); zero features score 0.
        """
        if isinstance(features, torch.Tensor):
            return self._label_similarity(F.normalize(self._checked(features), dim=1))
        with torch.no_grad():
            features = torch.as_tensor(self._checked(np.asarray(features)), dtype=torch.float32)
            return self._label_similarity(F.normalize(features, dim=1)).numpy()

    def classify(self, features: ArrayOrTensor) -> tuple[ArrayOrTensor, ArrayOrTensor]:
        """Best label index (N,) int64 and its cosine score (N,) float32 per feature; zero features get (-1, 0).

        Works in chunks, so N can be millions; tensors stay on their device, arrays give arrays.
        """
        is_tensor = isinstance(features, torch.Tensor)
        features = self._checked(features)
        device = features.device if is_tensor else torch.device("cpu")
        count = features.shape[0]
        label_index = torch.empty(count, dtype=torch.int64, device=device)
        score = torch.empty(count, dtype=torch.float32, device=device)
        chunk = max(1, CLASSIFY_CHUNK_ELEMENTS // max(self.dim, len(self.row_label)))
        with torch.no_grad():
            for start in range(0, count, chunk):
                block = torch.as_tensor(features[start:start + chunk], device=device).to(torch.float32)
                norms = block.norm(dim=1, keepdim=True)
                best, best_index = self._label_similarity(block / norms.clamp_min(1e-12)).max(dim=1)
                empty = norms[:, 0] == 0
                label_index[start:start + chunk] = best_index.masked_fill(empty, -1)
                score[start:start + chunk] = best.masked_fill(empty, 0.0)
        if is_tensor:
            return label_index, score
        return label_index.numpy(), score.numpy()

    def _checked(self, features: ArrayOrTensor) -> ArrayOrTensor:
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features of shape (N, {self.dim}), got {tuple(features.shape)}")
        return features

    def _label_similarity(self, unit_features: torch.Tensor) -> torch.Tensor:
        """(N, L): max over each label's rows of the cosine similarity to unit-norm (or zero) features."""
        text = torch.from_numpy(self.text_embeddings).to(unit_features.device, unit_features.dtype)
        similarity = unit_features @ text.T
        count = len(self.labels)
        if len(self.row_label) == count:  # no synonyms: rows are the labels, in order
            return similarity
        row_label = torch.from_numpy(self.row_label).to(unit_features.device).expand(similarity.shape[0], -1)
        per_label = similarity.new_full((similarity.shape[0], count), float("-inf"))
        return per_label.scatter_reduce(1, row_label, similarity, reduce="amax")


def configured_vocabulary(entries: Iterable[str], language: LanguageConfig,
                          encoder: TextEncoder | None = None) -> Vocabulary:
    """`entries` embedded as the language config says: its encoder (or `encoder`, already built from it), its
    templates and its on-disk embedding cache."""
    from ov3d_ros.language.encoders import build_text_encoder
    return Vocabulary.build(entries, encoder or build_text_encoder(language), language.templates,
                            EmbeddingCache(default_cache_dir(language)))
