"""The grounding engine the /ground_object service calls: validates a query, ranks the map's objects with the
distilled two-stage grounder (or the coarse stage when no grounder is loaded), reorders the target class's objects
by the query's spatial relations (relations.py) and answers with boxes, scores and, when nothing matches, a reason.
Query embeddings are cached; the map's objects and their pairwise geometry are prepared once per update.
"""
from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ov3d_ros.grounding.grounders import (DistilledGrounder, PreparedScene, QueryContext, QueryEncoder,
                                          coarse_matrix, coarse_ranking, load_grounding_model, prepare_scene)
from ov3d_ros.grounding.objects import SceneObjects
from ov3d_ros.grounding.query import QueryParser
from ov3d_ros.grounding.relations import (RelationGeometry, apply_relations, door_view, relation_geometry,
                                          relation_scores)
from ov3d_ros.grounding.words import WordVectors
from ov3d_ros.language.vocabulary import Vocabulary


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
# how the messages of /ground_object start, by kind (the evaluation classifies answers by them)
EMPTY_MAP = "map is empty"
NOTHING_RESEMBLES = "nothing in the map looks like"
NOT_LABELLED = "no object is labelled as "       # answered, but no object is labelled as the target
UNREACHABLE_FRAME = "cannot answer in frame"
INTERNAL_ERROR = "internal error"


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


@dataclass(frozen=True)
class EngineSettings:
    """How the engine prepares objects and decides that nothing matches."""

    class_weight: float = 0.7          # coarse stage: class vs feature similarity
    neighbours: int = 16               # context objects per object (as the grounder was trained)
    door_label: str = "door"           # viewpoint of left / right ("" = the map's x axis)
    min_class_similarity: float = 0.2  # below this for every object, no object is labelled as the query's target
    min_resemblance: float = 0.01      # ... and below this for every object too, nothing in the map resembles it
    max_query_chars: int = 1000
    query_cache: int = 1024            # queries whose embeddings are kept
    relations: bool = True             # rescore the target class by the query's spatial relations (relations.py)


@dataclass(frozen=True, eq=False)
class _MapState:
    scene: PreparedScene
    labels: tuple[str, ...]
    synonyms: dict[str, tuple[str, ...]]
    offset: np.ndarray | None
    instance_ids: np.ndarray
    queries: QueryEncoder
    geometry: RelationGeometry


def _same_offset(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


def yaw_quaternion(yaw: float) -> np.ndarray:
    """(x, y, z, w) of a rotation by `yaw` about z."""
    return np.array([0.0, 0.0, np.sin(yaw / 2), np.cos(yaw / 2)])


class GroundingEngine:
    """Holds the map's objects and answers queries against them. Thread-safe: `set_map` swaps the state that
    `ground` reads.

    `encode` maps texts to unit rows of the text space (the text encoder); `offset`, when the map's features are
    centred on a mean text embedding, is that embedding. `grounder` is the distilled model; None ranks with the
    coarse stage."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], grounder: DistilledGrounder | None = None,
                 settings: EngineSettings = EngineSettings(), offset: np.ndarray | None = None) -> None:
        self.encode, self.grounder, self.settings, self.offset = encode, grounder, settings, offset
        self._words = WordVectors(encode)
        self._state: _MapState | None = None
        self._lock = threading.Lock()

    def set_map(self, objects: SceneObjects, vocabulary: Vocabulary, instance_ids: Sequence[int] | None = None,
                offset: np.ndarray | None = None) -> None:
        """Replace the map's objects. `vocabulary` is the one their class distributions are over (the
        segmentation's current one; its synonyms extend the parser). `instance_ids` default to 0..P-1. `offset`
        replaces the engine's text offset when the map's features are centred on another one."""
        labels = vocabulary.labels
        if objects.distributions.shape[1] != len(labels):
            raise ValueError(f"the objects' class distributions are over {objects.distributions.shape[1]} classes, "
                             f"the vocabulary has {len(labels)}")
        ids = np.arange(len(objects)) if instance_ids is None else np.asarray(instance_ids, np.int64)
        if len(ids) != len(objects):
            raise ValueError(f"{len(ids)} instance ids for {len(objects)} objects")
        door = labels.index(self.settings.door_label) if self.settings.door_label in labels else None
        scene = prepare_scene(objects, door, self.settings.neighbours)
        geometry = relation_geometry(objects, door_view(objects, door))
        if offset is not None:
            self.offset = offset
        current = self._state
        same_space = current is not None and current.labels == labels and current.synonyms == vocabulary.synonyms \
            and _same_offset(current.offset, self.offset)
        queries = current.queries if same_space else \
            QueryEncoder(QueryParser(labels, vocabulary.synonyms), vocabulary.label_embeddings, self.encode,
                         self._words, self.offset, self.settings.query_cache)
        with self._lock:
            if self.grounder is not None:
                self.grounder.prepare(scene)          # the map's encoding, before the first query needs it
            self._state = _MapState(scene, labels, vocabulary.synonyms, self.offset, ids, queries, geometry)

    @property
    def object_count(self) -> int:
        state = self._state
        return 0 if state is None else len(state.scene.objects)

    def ground(self, query: object, max_results: int) -> GroundingAnswer:
        """Answer one query, candidates best first; never raises for bad input, the answer carries the reason."""
        try:
            text = validate_query(query, self.settings.max_query_chars)
        except QueryError as exc:
            return GroundingAnswer(False, str(exc))
        state = self._state
        if state is None or not len(state.scene.objects):
            return GroundingAnswer(False, f"{EMPTY_MAP}: no objects have been mapped yet")
        with self._lock:                       # the query and map caches are shared between callers
            context = state.queries(text)
            scene = state.scene
            coarse = coarse_matrix(context, scene)
            wanted = context.parsed.target_phrase or text
            best = float(coarse[:, 0].max())
            labelled = best >= self.settings.min_class_similarity
            if best < self.settings.min_resemblance:
                return GroundingAnswer(False, f"{NOTHING_RESEMBLES} '{wanted}' (best class evidence "
                                              f"{best:.3f}); mapped labels: {self._mapped_labels(state)}")
            share = self._shares(context, scene, state, coarse)
        # the score, which ranks: the ranking's share of the object times its class evidence (the mass of its class
        # distribution on the target), an estimate of the chance that it is the described object
        scores = share * coarse[:, 0]
        order = np.lexsort((np.arange(len(scores)), -scores))[:max(int(max_results), 1)]
        objects = scene.objects
        candidates = tuple(MapObject(int(state.instance_ids[i]), state.labels[int(objects.labels[i])],
                                     float(scores[i]), objects.centres[i].copy(), objects.sizes[i].copy(),
                                     yaw_quaternion(float(objects.yaws[i]))) for i in order)
        if labelled:
            return GroundingAnswer(True, f"{len(candidates)} candidate(s) for '{wanted}'", candidates)
        return GroundingAnswer(True, f"{NOT_LABELLED}'{wanted}' (mapped labels: {self._mapped_labels(state)}); "
                                     f"{len(candidates)} candidate(s) of weak resemblance (best class evidence "
                                     f"{best:.3f})", candidates)

    def _shares(self, context: QueryContext, scene: PreparedScene, state: _MapState,
                coarse: np.ndarray) -> np.ndarray:
        """(P,) the ranking's distribution over the objects: the grounder's softmax (or the normalised coarse
        scores), reordered within the target class by the query's spatial relations."""
        if self.grounder is not None:
            logits = self.grounder.scores(context, scene, coarse)
            scores = np.exp(logits - logits.max())
        else:
            scores = coarse_ranking(coarse, self.settings.class_weight)
        if self.settings.relations and context.parsed.relations:
            relations = relation_scores(context.parsed, scene.objects, state.geometry, coarse[:, 0])
            scores = apply_relations(scores, relations, coarse[:, 0])
        return scores / max(float(scores.sum()), 1e-12)

    @staticmethod
    def _mapped_labels(state: _MapState) -> str:
        return ", ".join(sorted({state.labels[i] for i in state.scene.objects.labels}))


def default_grounder_path() -> Path:
    """The shipped distilled grounder (MiniLM text space), inside the package."""
    return Path(__file__).resolve().parent.parent / "weights" / "grounder_default.pt"


def resolve_grounder_path(path: str | Path) -> Path:
    """`default` names the shipped grounder; anything else is a path."""
    return default_grounder_path() if str(path) == "default" else Path(path)


def load_engine(encode: Callable[[list[str]], np.ndarray], checkpoint: str | Path | None,
                settings: EngineSettings = EngineSettings(), offset: np.ndarray | None = None) -> GroundingEngine:
    """An engine with the distilled grounder of `checkpoint` ('default' = the shipped one; None or '' = the coarse
    stage only), preparing objects as that grounder was trained (its neighbours, class weight and door label)."""
    if not checkpoint:
        return GroundingEngine(encode, None, settings, offset)
    model, content = load_grounding_model(resolve_grounder_path(checkpoint), "grounder")
    trained = content["settings"]
    settings = replace(settings, class_weight=float(trained["class_weight"]), neighbours=int(trained["neighbours"]),
                       door_label=str(trained["door_label"]))
    return GroundingEngine(encode, DistilledGrounder(model), settings, offset)

