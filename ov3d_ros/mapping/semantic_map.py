"""The semantic layer of the online map: student features per voxel, computed incrementally, and labels for the
current vocabulary.

The student's input is the set of occupied voxels (plus their colour, and whether it is known, for a colour
student), so features can only change where that set changed. Work is split in two:
- `update` takes the fused map as it is now and is fast: kept voxels keep their features, new voxels borrow the
  features of their nearest featured voxel, and every `block_m` block whose voxels changed is queued (stale
  once `stale_share` of its voxels changed since its last pass).
- `compute` runs the network over one tile: the stale blocks within a `tile_m` cube that holds the most changed
  block (relative to its size), seen with the map within `margin_m` of their bounding box. The student normalises
  over what it sees (`SparseInstanceNorm`), so the context should hold a whole room, as in training and offline,
  and every block is queued again each time the map has grown by `recompute_growth`; tile and margin bound the
  memory of one pass, whatever the size of the map. Calling it until nothing is stale gives the features of one
  pass over the map.
The network sees the map's points, thinned to one per `1 / input_subdivision` of a student voxel, moved onto
their local surfaces (`ov3d_ros.mapping.surface`): depth noise makes a fused map's surfaces thick, and the student
learnt from thin ones. Fed one point per voxel instead, the surfaces smooth over neighbours four times as far and
the student's shifted grid (`grid_offset`) sees holes: on the benchmark's val rooms that costs 6 to 16 mIoU. A
voxel's feature is the mean of its points'. Projected positions are kept per point and computed again only near
voxels that changed (`reproject_m`), so a pass projects what is new rather than its whole context. Features are
stored in fp16.

Labels are the nearest class text embedding (cosine, in the student's text space); `set_vocabulary` re-labels
every voxel from the stored features without running the network. `objects` turns the labelled map into the
objects the grounding engine answers from, with instance ids kept across refreshes where an object persists, and
(with `superpoint_voting`) votes every voxel's label inside the superpoints it computes for them
(`superpoint_labels`): depth noise flips single voxels of a surface, and the vote gives them the patch's label.
Superpoints are kept across refreshes and recomputed only where the map changed since (`SuperpointTracker`), so
the refresh after the sensors stop costs what the last seconds changed, not the whole room.
"""
from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from ov3d_ros.evaluation.latency import StageTimes
from ov3d_ros.geometry.boxes import iou_matrix
from ov3d_ros.geometry.voxels import grid_offset, neighbourhood_keys, pack_coords, unpack_keys, voxel_coords
from ov3d_ros.grounding.objects import SceneObjects, map_objects
from ov3d_ros.models.inputs import floor_height
from ov3d_ros.language.vocabulary import Vocabulary
from ov3d_ros.mapping.superpoints import SuperpointParams, SuperpointTracker, superpoint_labels
from ov3d_ros.mapping.surface import project_to_surfaces
from ov3d_ros.models.student import Student

warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)   # used as documented
LABEL_CHUNK = 65536          # voxels labelled per matrix product (bounds the (chunk, C) logits)
SUPERPOINT_MOVE_SHARE = 0.25  # an objects cell whose mean moved this share of the cell has its superpoint redone


@dataclass(frozen=True)
class SemanticMapSettings:
    """Incremental inference and labelling parameters."""

    block_m: float = 1.0           # change-detection cell
    margin_m: float = 6.0          # context around the dirty blocks' box (rounded up to whole blocks)
    surface_neighbours: int = 16   # the network sees the points projected onto the plane of this many neighbours
    surface_iterations: int = 2    # ... this many times (0 = the raw map)
    input_subdivision: int = 2     # the network sees one map point per cell of (student voxel / this)
    reproject_m: float = 0.1       # a point's projection is kept until a voxel this close changes (the reach of
                                   # `surface_iterations` planes of `surface_neighbours` points at 2.5 cm)
    tile_m: float = 12.0           # largest extent of the dirty blocks of one student pass (a cube)
    stale_share: float = 0.05      # a block is stale (waits for the network) once this share of its voxels changed
                                   # since its last pass; smaller changes wait, their new voxels labelled by their
                                   # neighbours (a LiDAR keeps adding a few voxels everywhere)
    recompute_growth: float = 0.25  # every block is queued again when the map has grown this much since the last
                                    # time: the student normalises over what it sees, so growth moves every feature
    colour_tolerance: int = 12     # colour students: an 8-bit change larger than this dirties a voxel
    temperature: float = 0.05      # softmax temperature of a label's score over the vocabulary
    match_iou: float = 0.25        # an object keeps its instance id when it overlaps its old box this much
    objects_voxel_m: float = 0.03  # objects are found on the network's input points (on their surfaces)
                                   # downsampled to this cell, weighted by their point counts; on clean val
                                   # clouds recall@0.25 84.5 / 84.0 / 80.7 % at 2 / 3 / 5 cm
    superpoint_voting: bool = True  # objects() also votes the voxels' labels inside the superpoints it computes
    superpoint_processes: int = 1  # processes computing a large map's superpoints, cut into slabs (SlabSuperpoints)
    superpoint_min_points: int = 4  # smaller superpoints of the objects' map merge into a neighbour: the default
                                    # 20 is for clouds sampled every 1-2 cm; at 3-5 cm it is a bowl or a bottle

    def __post_init__(self) -> None:
        if min(self.block_m, self.tile_m, self.temperature, self.reproject_m) <= 0 or \
                min(self.margin_m, self.recompute_growth) < 0 or not 0 <= self.stale_share <= 1:
            raise ValueError("block_m, tile_m, temperature and reproject_m must be positive, margin_m and "
                             "recompute_growth >= 0, stale_share in [0, 1]")
        if self.tile_m < self.block_m:
            raise ValueError("tile_m must be at least block_m")
        if self.input_subdivision < 1 or self.superpoint_processes < 1:
            raise ValueError("input_subdivision and superpoint_processes must be at least 1")


@dataclass(frozen=True)
class MapChange:
    """What one `update` found."""

    voxels: int
    changed: int              # voxels that appeared, vanished or were recoloured
    stale_blocks: int         # blocks waiting for `compute`
    seconds: float


@dataclass(frozen=True)
class ComputeReport:
    """What one `compute` did."""

    blocks: int
    recomputed: int           # voxels that received network features
    student_s: float          # seconds in the network
    seconds: float


class FeaturePool:
    """fp16 feature rows that voxels point into: a changing map allocates and frees rows, so an update never
    rebuilds one (N, D) array (hundreds of MB for a large map)."""

    def __init__(self, dim: int) -> None:
        self.rows = np.empty((0, dim), np.float16)
        self._used = 0
        self._free = np.empty(0, np.int64)

    def allocate(self, count: int) -> np.ndarray:
        """`count` row indices: freed ones first, then new ones (the pool grows by half when full)."""
        reused = min(count, len(self._free))
        rows = self._free[len(self._free) - reused:]
        self._free = self._free[:len(self._free) - reused]
        fresh = count - reused
        if self._used + fresh > len(self.rows):
            grown = np.empty((max(self._used + fresh, int(len(self.rows) * 1.5)), self.rows.shape[1]), np.float16)
            grown[:self._used] = self.rows[:self._used]
            self.rows = grown
        rows = np.concatenate([rows, np.arange(self._used, self._used + fresh)])
        self._used += fresh
        return rows

    def release(self, rows: np.ndarray) -> None:
        self._free = np.concatenate([self._free, np.asarray(rows, np.int64)])


class SemanticMap:
    """Per-voxel student features of a changing map, and their labels. Thread-safe.

    `vocabulary` holds the label embeddings (uncentred); `offset` is the mean text embedding the student was
    trained relative to (None: not centred), so labels are scored in the student's own space. `times` receives
    the durations of the stages of `compute` (`compute.project`, `.network`, `.store`) and `objects`
    (`objects.downsample`, `.superpoints`, `.features`, `.instances`, `.vote`)."""

    def __init__(self, student: Student, vocabulary: Vocabulary, offset: np.ndarray | None = None,
                 settings: SemanticMapSettings = SemanticMapSettings(), times: StageTimes | None = None) -> None:
        self.student = student.eval()
        self.times = times or StageTimes()                # the stages of compute and objects, in milliseconds
        self.offset = offset
        self.settings = settings
        self.voxel_size = float(student.config.voxel_size)
        self.version = 0                                 # bumped by every change of features or labels
        self.objects_version = -1                        # the version the last objects() result describes
        self._superpoints = SuperpointTracker(SuperpointParams(min_points=settings.superpoint_min_points),
                                              move_m=settings.objects_voxel_m * SUPERPOINT_MOVE_SHARE,
                                              colour_levels=settings.colour_tolerance,
                                              processes=settings.superpoint_processes)
        self._lock = threading.RLock()
        self._inputs = _NetworkInputs.empty()           # the points the network sees, grouped by voxel
        self._updates = 0                               # counts update calls (projections know which they saw)
        self._floor_z = 0.0
        self._grid_offset = np.zeros(3, np.float32)       # the student's grid, fixed by the whole map
        self._pool = FeaturePool(student.config.out_dim)
        self._row = np.empty(0, np.int64)               # each voxel's row in the pool
        self._labels = np.empty(0, np.int64)
        self._scores = np.empty(0, np.float32)
        self._pending: dict[int, int] = {}             # packed block -> voxels changed since it was computed
        self._computing = 0                             # blocks a `compute` call has taken and not stored yet
        self._stale_at = max(settings.stale_share, np.finfo(np.float64).tiny)   # a pending block's share to be stale
        self._queued_all_at = 0                         # map size when every block was last queued
        self._block_sizes: tuple[np.ndarray, np.ndarray] | None = None
        self._previous_objects: tuple[SceneObjects, np.ndarray] | None = None
        self._next_instance = 0
        self.vocabulary = vocabulary
        self._space = self._space_of(vocabulary)
        self._vocabulary_number = 0                     # counts set_vocabulary calls (a vote is for one of them)

    def __len__(self) -> int:
        return int(self._keys.size)

    @property
    def _keys(self) -> np.ndarray:
        """The packed keys of the map's voxels, sorted."""
        return self._inputs.keys

    def _space_of(self, vocabulary: Vocabulary) -> Vocabulary:
        if vocabulary.dim != self.student.config.out_dim:
            raise ValueError(f"the vocabulary is {vocabulary.dim}-d but the student gives "
                             f"{self.student.config.out_dim}-d features")
        return vocabulary if self.offset is None else vocabulary.centred(self.offset)

    # -- features -------------------------------------------------------------------------------------------

    def update(self, xyz: np.ndarray, rgb: np.ndarray, colour_known: np.ndarray | None = None) -> MapChange:
        """Take the map's points `xyz` (N, 3), colours `rgb` (N, 3) uint8 and which colours are real
        `colour_known` (N,) bool (None: all) as they are now. Fast: voxels kept keep their features, new ones
        take their nearest featured voxel's, and the blocks that changed are queued for `compute`."""
        started = time.perf_counter()
        xyz = np.asarray(xyz, np.float32).reshape(-1, 3)
        rgb = np.asarray(rgb, np.uint8).reshape(-1, 3)
        known = np.ones(len(xyz), bool) if colour_known is None else np.asarray(colour_known, bool).reshape(-1)
        if len(rgb) != len(xyz) or len(known) != len(xyz):
            raise ValueError(f"{len(xyz)} points but {len(rgb)} colours and {len(known)} colour_known flags")
        inputs = _NetworkInputs.of(xyz, rgb, known, self.voxel_size, self.settings.input_subdivision)
        keys, first = inputs.keys, inputs.first
        with self._lock:
            changed, kept_from, kept_to, removed = self._changed_voxels(keys, inputs.rgb[first], inputs.known[first])
            row = np.empty(len(keys), np.int64)
            labels, scores = np.zeros(len(keys), np.int64), np.zeros(len(keys), np.float32)
            row[kept_to] = self._row[kept_from]
            labels[kept_to], scores[kept_to] = self._labels[kept_from], self._scores[kept_from]
            self._pool.release(self._row[removed])
            new = np.setdiff1d(np.arange(len(keys)), kept_to, assume_unique=True)
            row[new] = self._pool.allocate(len(new))
            self._fill_from_neighbours(keys, kept_to, new, row, labels, scores)
            if len(keys) > (1.0 + self.settings.recompute_growth) * self._queued_all_at:
                self._queue_changes(unpack_keys(keys))              # every block, the changed ones included
                self._queued_all_at = len(keys)
            else:
                self._queue_changes(changed)
            self._updates += 1
            inputs.keep_projections(self._inputs, self._updates)
            inputs.forget_projections_near((changed + 0.5) * self.voxel_size, self.settings.reproject_m, self._updates)
            self._inputs = inputs
            self._floor_z = floor_height(inputs.xyz[:, 2])
            self._grid_offset = grid_offset(inputs.xyz, self.voxel_size)
            self._row, self._labels, self._scores = row, labels, scores
            self._block_sizes = None
            if len(changed):
                self.version += 1
            return MapChange(len(keys), len(changed), self._stale_pending(), time.perf_counter() - started)

    @property
    def stale_blocks(self) -> int:
        """Blocks whose features do not reflect their voxels' changes yet (at least `stale_share` of them changed;
        those a `compute` is working on included)."""
        with self._lock:
            return self._stale_pending() + self._computing

    def compute(self) -> ComputeReport:
        """Run the network over one tile: the stale blocks within a `tile_m` cube that holds the most changed block
        (relative to its size; blocks never computed first; `_tile_around`). Call repeatedly: the map then matches
        one pass over all of it.

        The network runs outside the lock, so `update` (and readers) never wait for it; voxels that changed
        meanwhile are stale again and come back in a later call."""
        started = time.perf_counter()
        with self._lock:
            stale, sizes, priority = self._pending_blocks()
            due = priority >= self._stale_at
            if not due.any():
                return ComputeReport(0, 0, 0.0, 0.0)
            s = self.settings
            stale, sizes, priority = stale[due], sizes[due], priority[due]
            blocks = unpack_keys(stale)
            chosen = _tile_around(blocks, int(priority.argmax()), max(int(s.tile_m / s.block_m), 1))
            for block in stale[chosen].tolist():
                del self._pending[block]
            occupied = chosen & (sizes > 0)
            work = self._tile_inputs(blocks[occupied]) if occupied.any() else None
            floor_z, offset, inputs, seen = self._floor_z, self._grid_offset, self._inputs, self._updates
            taken = int(chosen.sum())
            if work is None:
                return ComputeReport(taken, 0, 0.0, time.perf_counter() - started)
            self._computing += taken
        try:
            return self._compute_tile(work, floor_z, offset, inputs, seen, taken, started)
        finally:
            with self._lock:
                self._computing -= taken

    def _compute_tile(self, work: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray],
                      floor_z: float, offset: np.ndarray, inputs: _NetworkInputs, seen: int, blocks: int,
                      started: float) -> ComputeReport:
        """The network over one tile's `work` (`_tile_inputs`) of the map `inputs` as of update `seen`; stores
        the features of the voxels the map still holds."""
        target_keys, context, colour, colour_known, target_of = work
        network_started = time.perf_counter()
        with self.times.measure("compute.project"):
            stale = ~inputs.projected[context]
            points = project_to_surfaces(inputs.xyz[context], self.settings.surface_neighbours,
                                         self.settings.surface_iterations, workers=torch.get_num_threads(),
                                         moving=stale)
            points[~stale] = inputs.surface[context[~stale]]
            with self._lock:
                self._inputs.store_projections(inputs, context[stale], points[stale], seen)
        with self.times.measure("compute.network"), torch.no_grad():
            out, point_voxel = self.student.run_on_map(points, colour, floor_z, colour_known=colour_known,
                                                       offset=offset, per_voxel=True)
        student_s = time.perf_counter() - network_started
        with self.times.measure("compute.store"):
            features = _mean_features(out, point_voxel.numpy(), target_of, len(target_keys))
            with self._lock:
                space, vocabulary = self._space, self._vocabulary_number
            labels, scores = self._label_rows(features, space)       # outside the lock: updates need not wait
            with self._lock:
                rows, found = self._rows_of(target_keys)
                rows, features, labels, scores = rows[found], features[found], labels[found], scores[found]
                if self._vocabulary_number != vocabulary:              # relabelled meanwhile: label with the new one
                    labels, scores = self._label_rows(features, self._space)
                self._pool.rows[self._row[rows]] = features
                self._labels[rows], self._scores[rows] = labels, scores
                self.version += 1
        return ComputeReport(blocks, len(rows), student_s, time.perf_counter() - started)

    def _pending_blocks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pending blocks (packed), their voxel counts now and the share of each one's voxels changed since
        its last pass (at most 1; a block that lost all its voxels counts as wholly changed). Call under the lock."""
        pending = np.fromiter(self._pending, np.int64, len(self._pending))
        changes = np.fromiter(self._pending.values(), np.float64, len(self._pending))
        sizes = self._sizes_of(pending)
        return pending, sizes, np.minimum(changes / np.maximum(sizes, 1), 1.0)

    def _stale_pending(self) -> int:
        """Pending blocks changed by at least `stale_share` (call under the lock)."""
        return int((self._pending_blocks()[2] >= self._stale_at).sum())

    def _rows_of(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The row of each of the packed voxel `keys` in the map now, and whether the map still holds it (call
        under the lock)."""
        rows = np.minimum(np.searchsorted(self._keys, keys), max(len(self._keys) - 1, 0))
        return rows, self._keys[rows] == keys if len(self._keys) else np.zeros(len(keys), bool)

    def _sizes_of(self, blocks: np.ndarray) -> np.ndarray:
        """Voxel count of each packed block now."""
        if self._block_sizes is None:
            scale = self.voxel_size / self.settings.block_m
            self._block_sizes = np.unique(pack_coords(np.floor(unpack_keys(self._keys) * scale).astype(np.int64)),
                                          return_counts=True)
        occupied, counts = self._block_sizes
        position = np.minimum(np.searchsorted(occupied, blocks), max(len(occupied) - 1, 0))
        found = (occupied[position] == blocks) if len(occupied) else np.zeros(len(blocks), bool)
        return np.where(found, counts[position] if len(occupied) else 0, 0)

    def _changed_voxels(self, keys: np.ndarray, rgb: np.ndarray, known: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Coordinates of the voxels that appeared, vanished or (colour students) changed colour or whether it is
        known; the old -> new indices of the voxels kept (a recoloured voxel keeps its features until its block is
        recomputed); the old indices of the voxels gone."""
        old, previous = self._keys, self._inputs
        in_old = np.isin(keys, old, assume_unique=True)
        in_new = np.isin(old, keys, assume_unique=True)
        kept_to = np.flatnonzero(in_old)
        kept_from = np.searchsorted(old, keys[kept_to])
        recoloured = np.zeros(len(kept_to), bool)
        if "colour" in self.student.config.inputs:
            was = previous.first[kept_from]
            difference = np.abs(rgb[kept_to].astype(np.int16) - previous.rgb[was].astype(np.int16)).max(axis=1)
            recoloured = (difference > self.settings.colour_tolerance) | (known[kept_to] != previous.known[was])
        changed = np.concatenate([keys[~in_old], old[~in_new], keys[kept_to[recoloured]]])
        return unpack_keys(changed), kept_from, kept_to, np.flatnonzero(~in_new)

    def _queue_changes(self, changed: np.ndarray) -> None:
        if not len(changed):
            return
        scale = self.voxel_size / self.settings.block_m
        blocks, counts = np.unique(pack_coords(np.floor(changed * scale).astype(np.int64)), return_counts=True)
        for block, count in zip(blocks.tolist(), counts.tolist()):
            self._pending[block] = self._pending.get(block, 0) + count

    def _fill_from_neighbours(self, keys: np.ndarray, kept: np.ndarray, new: np.ndarray, row: np.ndarray,
                              labels: np.ndarray, scores: np.ndarray) -> None:
        """The `new` voxels take the features and label of their nearest `kept` voxel until their block is
        computed."""
        if not len(new) or not len(kept):
            return
        coords = unpack_keys(keys)
        _, nearest = cKDTree(coords[kept]).query(coords[new])
        source = kept[nearest]
        self._pool.rows[row[new]] = self._pool.rows[row[source]]
        labels[new], scores[new] = labels[source], scores[source]

    def _tile_inputs(self, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None,
                                                        np.ndarray] | None:
        """What the network needs for the voxels of `blocks` (B, 3): their keys; the indices of the network's input
        points in the bounding box of these blocks grown by `margin_m`, and for a colour student their colours and
        which are known; for each of those points the index of its voxel among the keys (-1: context only). None
        when the blocks hold no voxel."""
        s = self.settings
        centres = (unpack_keys(self._keys) + 0.5) * self.voxel_size
        block_of = np.floor(centres / s.block_m).astype(np.int64)
        reach = int(np.ceil(s.margin_m / s.block_m))
        low, high = blocks.min(axis=0) - reach, blocks.max(axis=0) + reach
        in_context = np.all((block_of >= low) & (block_of <= high), axis=1)
        targets = np.flatnonzero(in_context & np.isin(pack_coords(block_of), pack_coords(blocks)))
        if not len(targets):
            return None
        target_index = np.full(len(self._keys), -1, np.int64)
        target_index[targets] = np.arange(len(targets))
        inputs = self._inputs
        context = np.flatnonzero(in_context[inputs.voxel])
        colour, known = (inputs.rgb[context], inputs.known[context]) if "colour" in self.student.config.inputs \
            else (None, None)
        return self._keys[targets], context, colour, known, target_index[inputs.voxel[context]]

    # -- labels ---------------------------------------------------------------------------------------------

    def _label_rows(self, features: np.ndarray, space: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
        """Nearest class of `space` and its softmax probability for fp16 feature rows."""
        labels, scores = np.empty(len(features), np.int64), np.empty(len(features), np.float32)
        for start in range(0, len(features), LABEL_CHUNK):
            rows = torch.from_numpy(features[start:start + LABEL_CHUNK]).float()   # torch converts fp16 2-4x faster
            logits = space.logits(torch.nn.functional.normalize(rows, dim=1))
            probability = torch.softmax(logits / self.settings.temperature, dim=1)
            best, label = probability.max(dim=1)
            labels[start:start + LABEL_CHUNK], scores[start:start + LABEL_CHUNK] = label.numpy(), best.numpy()
        return labels, scores

    def set_vocabulary(self, vocabulary: Vocabulary) -> None:
        """Label every voxel with `vocabulary` from the stored features (the network is not run)."""
        space = self._space_of(vocabulary)
        with self._lock:
            self.vocabulary, self._space = vocabulary, space
            self._vocabulary_number += 1
            for start in range(0, len(self._row), LABEL_CHUNK):
                chunk = slice(start, start + LABEL_CHUNK)
                self._labels[chunk], self._scores[chunk] = self._label_rows(self._pool.rows[self._row[chunk]], space)
            self._previous_objects = None
            self.version += 1

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...]]:
        """(xyz, rgb, labels, scores, vocabulary labels) of every voxel, consistent with each other."""
        with self._lock:
            inputs = self._inputs
            return inputs.xyz[inputs.first], inputs.rgb[inputs.first], self._labels.copy(), self._scores.copy(), \
                self.vocabulary.labels

    def close(self) -> None:
        """Stop the superpoint worker processes, if any."""
        self._superpoints.close()

    def features(self) -> np.ndarray:
        """(N, D) fp16 features in the order of `snapshot`."""
        with self._lock:
            return self._pool.rows[self._row]

    # -- objects --------------------------------------------------------------------------------------------

    def objects(self, cancelled: Callable[[], bool] | None = None) -> tuple[SceneObjects, np.ndarray] | None:
        """The map's objects (superpoints, then label-aware clustering) and their instance ids. An object
        keeps the id of the previous refresh's object of the same label it overlaps most (IoU >= match_iou).
        With `superpoint_voting` the voxels' labels become those voted inside the same superpoints.
        `cancelled` is asked after each stage from the superpoints on: once it says True the pass stops and
        returns None (the map it was computing for has been overtaken; nothing of it is published or voted, but
        the superpoints it computed are kept for the next pass)."""
        stop = cancelled or (lambda: False)
        with self._lock:
            keys, inputs, features = self._keys, self._inputs, self._pool.rows[self._row]
            positions = np.where(inputs.projected[:, None], inputs.surface, inputs.xyz)
            space, vocabulary, version = self._space, self._vocabulary_number, self.version
        if not len(keys):
            self.objects_version = version
            return SceneObjects.empty(len(space.labels), features.shape[1]), np.zeros(0, np.int64)
        with self.times.measure("objects.downsample"):
            cell_keys, xyz, rgb, weights, cell, voxel_of_cell = _objects_cells(positions, inputs,
                                                                               self.settings.objects_voxel_m)
        # superpoints first: a pass overtaken while it computes them has still brought the tracker up to date
        with self.times.measure("objects.superpoints"):
            superpoints = self._superpoints.update(cell_keys, xyz, rgb, torch.get_num_threads())
        if stop():
            return None
        with self.times.measure("objects.features"):       # a cell has the feature of its first point's voxel
            voxel_scores = np.concatenate([space.logits(torch.from_numpy(features[i:i + LABEL_CHUNK]).float()
                                                        ).numpy() for i in range(0, len(features), LABEL_CHUNK)])
            class_scores = voxel_scores[voxel_of_cell]
        if stop():
            return None
        with self.times.measure("objects.instances"):
            objects = map_objects(xyz, rgb, features, np.ones(len(xyz), bool), class_scores, superpoints, weights,
                                  voxel_of_cell)
        if stop():
            return None
        if self.settings.superpoint_voting:
            with self.times.measure("objects.vote"):
                labels, scores = superpoint_labels(class_scores, superpoints, self.settings.temperature, weights)
                version = self._set_voted_labels(keys, labels[cell], scores[cell], vocabulary, version)
        self.objects_version = version
        ids = self._instance_ids(objects)
        self._previous_objects = (objects, ids)
        return objects, ids

    def _set_voted_labels(self, keys: np.ndarray, labels: np.ndarray, scores: np.ndarray, vocabulary: int,
                          version: int) -> int:
        """Give the voxels `keys` (sorted) the labels voted for them, unless the vocabulary changed since (its
        number `vocabulary`); voxels added since keep theirs until the next vote. Returns the map version the
        objects computed at `version` describe: the voted one when nothing else changed in between."""
        with self._lock:
            if self._vocabulary_number != vocabulary or not len(self._keys):
                return version
            rows, found = self._rows_of(keys)
            rows, labels, scores = rows[found], labels[found], scores[found]
            if np.array_equal(self._labels[rows], labels) and np.allclose(self._scores[rows], scores):
                return version
            unchanged = self.version == version
            self._labels[rows], self._scores[rows] = labels, scores
            self.version += 1
            return self.version if unchanged else version

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


@dataclass(frozen=True)
class _NetworkInputs:
    """The map's points the network sees, one per fine cell, sorted by their student voxel: positions, colours,
    whether each colour is real, their cells' packed keys, the voxel of each (index into `keys`), the voxels'
    packed keys and the first point of each voxel (its representative in the labelled map). Beside them, each
    point's position projected onto its surface, whether that is up to date, and the update that last made it
    stale (a projection computed from an earlier update may not be stored)."""

    xyz: np.ndarray
    rgb: np.ndarray
    known: np.ndarray
    cells: np.ndarray
    by_cell: np.ndarray          # the points in the order of their cells' keys
    voxel: np.ndarray
    keys: np.ndarray
    first: np.ndarray
    surface: np.ndarray
    projected: np.ndarray
    stale_since: np.ndarray

    @classmethod
    def empty(cls) -> _NetworkInputs:
        return cls.of(np.empty((0, 3), np.float32), np.empty((0, 3), np.uint8), np.empty(0, bool), 1.0, 1)

    @classmethod
    def of(cls, xyz: np.ndarray, rgb: np.ndarray, known: np.ndarray, voxel_size: float,
           subdivision: int) -> _NetworkInputs:
        """The first of `xyz`'s points in each cell of `voxel_size / subdivision`, grouped by voxel; none
        projected yet."""
        cells, kept = np.unique(pack_coords(voxel_coords(xyz, voxel_size / subdivision)), return_index=True)
        keys, voxel = np.unique(pack_coords(voxel_coords(xyz[kept], voxel_size)), return_inverse=True)
        order = np.argsort(voxel.reshape(-1), kind="stable")
        cells, kept, voxel = cells[order], kept[order], voxel.reshape(-1)[order]
        first = np.flatnonzero(np.r_[True, voxel[1:] != voxel[:-1]]) if len(voxel) else np.empty(0, np.int64)
        by_cell = np.empty_like(order)
        by_cell[order] = np.arange(len(order))
        points = xyz[kept]
        return cls(points, rgb[kept], known[kept], cells, by_cell, voxel, keys, first, points.copy(),
                   np.zeros(len(kept), bool), np.zeros(len(kept), np.int64))

    def _find(self, cells: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where (mine) the points `cells`, `xyz` are, and which of them I hold at the same position."""
        order = self.by_cell
        position = np.minimum(np.searchsorted(self.cells, cells, sorter=order), max(len(order) - 1, 0))
        mine = order[position] if len(order) else np.zeros(len(cells), np.int64)
        found = (self.cells[mine] == cells) & np.all(self.xyz[mine] == xyz, axis=1) if len(order) else \
            np.zeros(len(cells), bool)
        return mine, found

    def keep_projections(self, old: _NetworkInputs, update: int) -> None:
        """Take the projections of the points `old` held at the same place; new points are stale since `update`."""
        self.stale_since[:] = update
        if not len(old.cells) or not len(self.cells):
            return
        theirs, found = old._find(self.cells, self.xyz)
        self.surface[found] = old.surface[theirs[found]]
        self.projected[found] = old.projected[theirs[found]]
        self.stale_since[found] = old.stale_since[theirs[found]]

    def forget_projections_near(self, changed_xyz: np.ndarray, reach_m: float, update: int) -> None:
        """Mark stale (since `update`) the projections of the points within `reach_m` of any of `changed_xyz`
        (cells of `reach_m` around them and their 26 neighbours)."""
        if not len(changed_xyz) or not len(self.xyz):
            return
        around = neighbourhood_keys(np.unique(voxel_coords(changed_xyz, reach_m), axis=0))
        stale = np.isin(pack_coords(voxel_coords(self.xyz, reach_m)), around)
        self.projected[stale] = False
        self.stale_since[stale] = update

    def store_projections(self, source: _NetworkInputs, rows: np.ndarray, surface: np.ndarray, update: int) -> None:
        """Store `surface` for `source`'s points `rows`, projected from the map of `update`, where I hold those
        points and nothing near them changed since."""
        mine, found = self._find(source.cells[rows], source.xyz[rows])
        found &= self.stale_since[mine] <= update
        self.surface[mine[found]] = surface[found]
        self.projected[mine[found]] = True


def _mean_features(voxel_features: torch.Tensor, point_voxel: np.ndarray, target_of: np.ndarray,
                   targets: int) -> np.ndarray:
    """(targets, D) fp16 unit means of the network's voxel features over each target's points (`target_of`, -1:
    context only; `point_voxel`: each point's network voxel)."""
    inside = target_of >= 0
    return _unit_sums(target_of[inside], point_voxel[inside], targets, voxel_features.float()).half().numpy()


def _unit_sums(rows: np.ndarray, columns: np.ndarray, count: int, features: torch.Tensor) -> torch.Tensor:
    """(count, D) unit vectors: row r the sum of `features[c]` over the entries (r, c) of `rows`, `columns`, as one
    sparse (count, len(features)) matrix of entry counts times the features. A map voxel's points fall in a few
    network voxels (the grids are shifted), so this reads each feature row once per pair where gathering it per
    point moved hundreds of MB (4x slower)."""
    width = max(len(features), 1)
    pairs, weight = np.unique(rows * width + columns, return_counts=True)
    starts = np.searchsorted(pairs // width, np.arange(count + 1))
    matrix = torch.sparse_csr_tensor(torch.from_numpy(starts), torch.from_numpy(pairs % width),
                                     torch.from_numpy(weight.astype(np.float32)), (count, len(features)),
                                     check_invariants=False)
    return torch.nn.functional.normalize(matrix @ features, dim=1)


def _tile_around(blocks: np.ndarray, centre: int, width: int) -> np.ndarray:
    """Which of `blocks` (B, 3) one tile of `width` blocks per axis takes: a window holding block `centre`, as far
    towards the stale blocks' low end as that allows, so all of them fit in one tile whenever their extent does
    (a window centred on the most changed block took a corner block's quarter of a room)."""
    low = np.maximum(blocks.min(axis=0), blocks[centre] - width + 1)
    return np.all((blocks >= low) & (blocks < low + width), axis=1)


def _objects_cells(positions: np.ndarray, inputs: _NetworkInputs, cell_m: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The network's input points at `positions` (their surfaces where projected) in `cell_m` cells: each cell's
    packed key (sorted), mean position and colour, its point count, the cell of each voxel (its first point's) and
    the voxel of each cell (its first point's)."""
    keys, first, inverse, counts = np.unique(pack_coords(voxel_coords(positions, cell_m)), return_index=True,
                                             return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    cells = len(counts)
    mean_xyz = np.stack([np.bincount(inverse, positions[:, i], cells) for i in range(3)], axis=1) / counts[:, None]
    mean_rgb = np.stack([np.bincount(inverse, inputs.rgb[:, i], cells) for i in range(3)], axis=1) / counts[:, None]
    return keys, mean_xyz, np.rint(mean_rgb).astype(np.uint8), counts.astype(np.float64), inverse[inputs.first], \
        inputs.voxel[first]
