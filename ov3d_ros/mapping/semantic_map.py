"""The semantic layer of the online map: student features per voxel, computed incrementally, and labels for the
current vocabulary.

`SemanticMap.update` takes the fused map (points and colours) as it is now. The student's input is the set of
occupied voxels (plus their colour for a colour student), so only where that set changed can features change.
The map is cut into `block_m` blocks; a block is dirty when a voxel in it appeared or vanished (or, for a colour
student, changed colour). Dirty blocks are grouped into tiles of at most `tile_m`; each tile runs through the
student with `margin_m` of context around it, and only the voxels of its dirty blocks take the new features. A
tile bounds the memory of one pass, whatever the size of the map. Features are stored in fp16.

Labels are the nearest class text embedding (cosine, in the student's text space); `set_vocabulary` re-labels
every voxel from the stored features without running the network. `objects` turns the labelled map into the
objects the grounding engine answers from, with instance ids kept across refreshes where an object persists.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from ov3d_ros.geometry.boxes import iou_matrix
from ov3d_ros.geometry.voxels import pack_coords, unpack_keys, voxel_coords
from ov3d_ros.grounding.objects import SceneObjects, map_objects
from ov3d_ros.language.vocabulary import Vocabulary
from ov3d_ros.mapping.superpoints import compute_superpoints
from ov3d_ros.models.student import Student

LABEL_CHUNK = 65536          # voxels labelled per matrix product (bounds the (chunk, C) logits)


@dataclass(frozen=True)
class SemanticMapSettings:
    """Incremental inference and labelling parameters."""

    block_m: float = 1.0           # change-detection cell
    margin_m: float = 1.0          # context around the dirty blocks of a tile
    tile_m: float = 4.0            # largest extent of the dirty blocks of one student pass
    colour_tolerance: int = 12     # colour students: an 8-bit change larger than this dirties a voxel
    temperature: float = 0.05      # softmax temperature of a label's score over the vocabulary
    match_iou: float = 0.25        # an object keeps its instance id when it overlaps its old box this much

    def __post_init__(self) -> None:
        if min(self.block_m, self.tile_m, self.temperature) <= 0 or self.margin_m < 0:
            raise ValueError("block_m, tile_m and temperature must be positive and margin_m >= 0")
        if self.tile_m < self.block_m:
            raise ValueError("tile_m must be at least block_m")


@dataclass(frozen=True)
class UpdateReport:
    """What one `update` did."""

    voxels: int
    dirty_blocks: int
    tiles: int
    recomputed: int           # voxels that received new features
    student_s: float          # seconds in the network
    total_s: float


class SemanticMap:
    """Per-voxel student features of a changing map, and their labels. Thread-safe.

    `vocabulary` holds the label embeddings (uncentred); `offset` is the mean text embedding the student was
    trained relative to (None: not centred), so labels are scored in the student's own space."""

    def __init__(self, student: Student, vocabulary: Vocabulary, offset: np.ndarray | None = None,
                 settings: SemanticMapSettings = SemanticMapSettings()) -> None:
        self.student = student.eval()
        self.offset = offset
        self.settings = settings
        self.voxel_size = float(student.config.voxel_size)
        self.version = 0
        self._lock = threading.RLock()
        self._keys = np.empty(0, np.int64)
        self._xyz = np.empty((0, 3), np.float32)
        self._rgb = np.empty((0, 3), np.uint8)
        self._features = np.empty((0, student.config.out_dim), np.float16)
        self._labels = np.empty(0, np.int64)
        self._scores = np.empty(0, np.float32)
        self._previous_objects: tuple[SceneObjects, np.ndarray] | None = None
        self._next_instance = 0
        self.vocabulary = vocabulary
        self._space = self._space_of(vocabulary)

    def __len__(self) -> int:
        return int(self._keys.size)

    def _space_of(self, vocabulary: Vocabulary) -> Vocabulary:
        if vocabulary.dim != self.student.config.out_dim:
            raise ValueError(f"the vocabulary is {vocabulary.dim}-d but the student gives "
                             f"{self.student.config.out_dim}-d features")
        return vocabulary if self.offset is None else vocabulary.centred(self.offset)

    # -- features -------------------------------------------------------------------------------------------

    def update(self, xyz: np.ndarray, rgb: np.ndarray) -> UpdateReport:
        """Bring the features up to date with the map's points `xyz` (N, 3) and colours `rgb` (N, 3) uint8."""
        started = time.perf_counter()
        xyz = np.asarray(xyz, np.float32).reshape(-1, 3)
        rgb = np.asarray(rgb, np.uint8).reshape(-1, 3)
        if len(rgb) != len(xyz):
            raise ValueError(f"{len(xyz)} points but {len(rgb)} colours")
        keys, first = np.unique(pack_coords(voxel_coords(xyz, self.voxel_size)), return_index=True)
        xyz, rgb = xyz[first], rgb[first]
        with self._lock:
            changed, kept_from, kept_to = self._changed_voxels(keys, rgb)
            features = np.zeros((len(keys), self._features.shape[1]), np.float16)
            labels, scores = np.full(len(keys), -1, np.int64), np.zeros(len(keys), np.float32)
            features[kept_to] = self._features[kept_from]
            labels[kept_to], scores[kept_to] = self._labels[kept_from], self._scores[kept_from]
            block = np.floor(changed * (self.voxel_size / self.settings.block_m)).astype(np.int64)
            dirty = np.unique(block, axis=0) if len(block) else np.empty((0, 3), np.int64)
            recomputed, student_s, tiles = self._recompute(keys, rgb, dirty, features, labels, scores)
            self._keys, self._xyz, self._rgb = keys, xyz, rgb
            self._features, self._labels, self._scores = features, labels, scores
            if len(dirty):
                self.version += 1
        return UpdateReport(len(keys), len(dirty), tiles, recomputed, student_s, time.perf_counter() - started)

    def _changed_voxels(self, keys: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coordinates of the voxels that appeared, vanished or changed colour; and old -> new rows kept."""
        old = self._keys
        in_old = np.isin(keys, old, assume_unique=True)
        in_new = np.isin(old, keys, assume_unique=True)
        kept_to = np.flatnonzero(in_old)
        kept_from = np.searchsorted(old, keys[kept_to])
        recoloured = np.zeros(len(kept_to), bool)
        if self.student.config.in_channels == 4:
            difference = np.abs(rgb[kept_to].astype(np.int16) - self._rgb[kept_from].astype(np.int16)).max(axis=1)
            recoloured = difference > self.settings.colour_tolerance
        changed = np.concatenate([keys[~in_old], old[~in_new], keys[kept_to[recoloured]]])
        # a recoloured voxel keeps its old features until its tile is recomputed
        return unpack_keys(changed), kept_from, kept_to

    @torch.no_grad()
    def _recompute(self, keys: np.ndarray, rgb: np.ndarray, dirty: np.ndarray, features: np.ndarray,
                   labels: np.ndarray, scores: np.ndarray) -> tuple[int, float, int]:
        if not len(dirty) or not len(keys):
            return 0, 0.0, 0
        s = self.settings
        coords = unpack_keys(keys)
        centres = (coords + 0.5) * self.voxel_size
        voxel_block = np.floor(centres / s.block_m).astype(np.int64)
        per_tile = max(int(s.tile_m // s.block_m), 1)
        tile_of = np.floor_divide(dirty, per_tile)
        recomputed, student_s, tiles = 0, 0.0, 0
        for tile in np.unique(tile_of, axis=0):
            blocks = dirty[np.all(tile_of == tile, axis=1)]
            low = blocks.min(axis=0) * s.block_m - s.margin_m
            high = (blocks.max(axis=0) + 1) * s.block_m + s.margin_m
            context = np.flatnonzero(np.all((centres >= low) & (centres < high), axis=1))
            inside = _rows_in(voxel_block[context], blocks)
            targets = context[inside]
            if not len(targets):
                continue
            started = time.perf_counter()
            colour = torch.from_numpy(rgb[context].astype(np.float32) / 255.0) \
                if self.student.config.in_channels == 4 else None
            out = self.student(torch.from_numpy(centres[context].astype(np.float32)), colour)
            student_s += time.perf_counter() - started
            features[targets] = out[inside].numpy().astype(np.float16)
            labels[targets], scores[targets] = self._label_rows(features[targets])
            recomputed += len(targets)
            tiles += 1
        return recomputed, student_s, tiles

    # -- labels ---------------------------------------------------------------------------------------------

    def _label_rows(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest class and its softmax probability for fp16 feature rows."""
        labels, scores = np.empty(len(features), np.int64), np.empty(len(features), np.float32)
        for start in range(0, len(features), LABEL_CHUNK):
            rows = torch.from_numpy(features[start:start + LABEL_CHUNK].astype(np.float32))
            logits = self._space.logits(torch.nn.functional.normalize(rows, dim=1))
            probability = torch.softmax(logits / self.settings.temperature, dim=1)
            best, label = probability.max(dim=1)
            labels[start:start + LABEL_CHUNK], scores[start:start + LABEL_CHUNK] = label.numpy(), best.numpy()
        return labels, scores

    def set_vocabulary(self, vocabulary: Vocabulary) -> None:
        """Label every voxel with `vocabulary` from the stored features (the network is not run)."""
        space = self._space_of(vocabulary)
        with self._lock:
            self.vocabulary, self._space = vocabulary, space
            self._labels, self._scores = self._label_rows(self._features)
            self._previous_objects = None
            self.version += 1

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
        """(xyz, rgb, labels, scores, vocabulary labels) of every voxel, consistent with each other."""
        with self._lock:
            return self._xyz.copy(), self._rgb.copy(), self._labels.copy(), self._scores.copy(), \
                self.vocabulary.labels

    def features(self) -> np.ndarray:
        """(N, D) fp16 features in the order of `snapshot`."""
        with self._lock:
            return self._features.copy()

    # -- objects --------------------------------------------------------------------------------------------

    def objects(self) -> tuple[SceneObjects, np.ndarray]:
        """The map's objects (superpoints, then label-aware clustering) and their instance ids. An object
        keeps the id of the previous refresh's object of the same label it overlaps most (IoU >= match_iou)."""
        with self._lock:
            xyz, rgb, features = self._xyz.astype(np.float64), self._rgb, self._features
            space = self._space
        if not len(xyz):
            return SceneObjects.empty(len(space.labels), features.shape[1]), np.zeros(0, np.int64)
        unit = torch.nn.functional.normalize(torch.from_numpy(features.astype(np.float32)), dim=1)
        class_scores = np.concatenate([space.logits(unit[i:i + LABEL_CHUNK]).numpy()
                                       for i in range(0, len(unit), LABEL_CHUNK)])
        objects = map_objects(xyz, rgb, unit.numpy(), np.ones(len(xyz), bool), class_scores,
                              compute_superpoints(xyz, rgb))
        ids = self._instance_ids(objects)
        self._previous_objects = (objects, ids)
        return objects, ids

    def _instance_ids(self, objects: SceneObjects) -> np.ndarray:
        ids = np.full(len(objects), -1, np.int64)
        if self._previous_objects is not None and len(objects) and len(self._previous_objects[0]):
            previous, previous_ids = self._previous_objects
            overlap = iou_matrix(objects.boxes, previous.boxes)
            overlap[objects.labels[:, None] != previous.labels[None, :]] = 0.0
            for flat in np.argsort(-overlap, axis=None):          # greedy, best overlap first
                i, j = np.unravel_index(flat, overlap.shape)
                if overlap[i, j] < self.settings.match_iou:
                    break
                if ids[i] < 0 and previous_ids[j] not in ids:
                    ids[i] = previous_ids[j]
        for i in np.flatnonzero(ids < 0):
            ids[i] = self._next_instance
            self._next_instance += 1
        return ids


def _rows_in(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Which of the int64 (N, 3) `rows` occur in `table` (M, 3)."""
    return np.isin(pack_coords(rows), pack_coords(table))
