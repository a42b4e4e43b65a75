"""Grounders at inference: a query's text-side inputs (parsed, embedded, cached), a map's prepared objects, and
the three ways of ranking them: the coarse stage, the coarse-to-fine teacher and the distilled two-stage grounder.

Batching lives here too, so training and inference build the networks' inputs the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from scipy.special import log_softmax

from ov3d_ros.files import load_torch_checkpoint, save_torch
from ov3d_ros.grounding.cache import LruCache
from ov3d_ros.grounding.coarse import coarse_terms, target_class_weights
from ov3d_ros.grounding.objects import Neighbourhoods, SceneObjects, neighbourhoods, object_inputs, view_frame
from ov3d_ros.grounding.query import ParsedQuery, QueryParser
from ov3d_ros.grounding.runtime import onnx_runner
from ov3d_ros.grounding.words import WordVectors, word_ids
from ov3d_ros.language.vocabulary import shift_rows
from ov3d_ros.models.grounding import (GroundingModelConfig, KeywordReconstructor, MapEncoding, TwoStageGrounder,
                                       reconstruction_nll)

FORMAT = "ov3d-grounding-1"
KINDS = ("reconstructor", "grounder")


@dataclass(frozen=True, eq=False)
class QueryContext:
    """Everything a grounder needs from one query's text."""

    parsed: ParsedQuery
    sentence: np.ndarray         # (D,) unit sentence embedding in the objects' feature space
    class_weights: np.ndarray    # (C,) which classes the target may be
    words: np.ndarray            # (L, D) the tokens' word vectors

    @property
    def keyword_groups(self) -> list[tuple[int, ...]]:
        """Token positions the teacher masks together: the target, the attributes, the relation cues, each
        anchor (non-empty groups, in that order)."""
        keywords = self.parsed.keywords
        groups = [keywords.get("target", ()), keywords.get("attribute", ()), keywords.get("relation", ())]
        groups += [tuple(range(a.start, a.end)) for a in self.parsed.anchors]
        return [tuple(g) for g in groups if g]


class QueryEncoder:
    """Text -> QueryContext with an LRU cache of `capacity` queries. `encode` is the text encoder (texts -> unit
    rows); `offset`, for objects whose features are centred on a mean text embedding, is that embedding. A new
    query costs one encoder call: its sentence, its target phrase when that names no known class, and the words
    `words` has not seen yet, in one batch."""

    def __init__(self, parser: QueryParser, class_embeddings: np.ndarray, encode: Callable[[list[str]], np.ndarray],
                 words: WordVectors, offset: np.ndarray | None = None, capacity: int = 1024) -> None:
        self.parser, self.class_embeddings, self.encode, self.words = parser, class_embeddings, encode, words
        self.offset = offset
        self._cache: LruCache[str, QueryContext] = LruCache(capacity)

    def _space(self, rows: np.ndarray) -> np.ndarray:
        return rows if self.offset is None else shift_rows(rows, self.offset)

    def __call__(self, text: str) -> QueryContext:
        return self._cache.get_or_compute(text, lambda: self._context(text))

    def _context(self, text: str) -> QueryContext:
        parsed = self.parser.parse(text)
        tokens = list(parsed.tokens) or ["?"]
        texts = [parsed.text] + ([parsed.target_phrase] if parsed.target is None and parsed.target_phrase else [])
        new_words = self.words.missing(tokens)
        rows = self.encode(texts + new_words)
        self.words.store(new_words, rows[len(texts):])
        phrase = self._space(rows[1]) if len(texts) > 1 else None
        return QueryContext(parsed, self._space(rows[0]), target_class_weights(parsed, self.class_embeddings, phrase),
                            self.words(tokens))


@dataclass(frozen=True, eq=False)
class PreparedScene:
    """A map's objects with the networks' per-object inputs and neighbourhoods, computed once per map."""

    objects: SceneObjects
    inputs: np.ndarray                 # (P, Din)
    context: Neighbourhoods


def prepare_scene(objects: SceneObjects, door_label: int | None, neighbours: int) -> PreparedScene:
    return PreparedScene(objects, object_inputs(objects),
                         neighbourhoods(objects, view_frame(objects, door_label), neighbours))


def coarse_matrix(query: QueryContext, scene: PreparedScene) -> np.ndarray:
    """(P, 2) class and feature similarity of every object to the query."""
    objects = scene.objects
    return np.stack(coarse_terms(query.class_weights, query.sentence, objects.distributions, objects.features),
                    axis=1).astype(np.float32)


def coarse_ranking(coarse: np.ndarray, class_weight: float) -> np.ndarray:
    """(P,) coarse scores from a `coarse_matrix`."""
    return class_weight * coarse[:, 0] + (1.0 - class_weight) * coarse[:, 1]


def _pad_words(word_rows: Sequence[np.ndarray], max_words: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = min(max(len(w) for w in word_rows), max_words)
    words = torch.zeros(len(word_rows), length, word_rows[0].shape[1])
    padding = torch.ones(len(word_rows), length, dtype=torch.bool)
    for i, rows in enumerate(word_rows):
        n = min(len(rows), length)
        words[i, :n] = torch.from_numpy(rows[:n])
        padding[i, :n] = False
    return words, padding


def grounder_batch(items: Sequence[tuple[QueryContext, PreparedScene, np.ndarray]],
                   max_words: int) -> dict[str, torch.Tensor]:
    """Inputs of TwoStageGrounder for (query, scene, its coarse_matrix) items, padded to the largest scene:
    `objects` and `pairs` feed `encode_map`, the rest `forward` (see `run_grounder`)."""
    words, word_padding = _pad_words([q.words for q, _, _ in items], max_words)
    count = max(len(s.objects) for _, s, _ in items)
    first = items[0][1]
    width = first.context.index.shape[1]
    objects = torch.zeros(len(items), count, first.inputs.shape[1])
    coarse = torch.zeros(len(items), count, 2)
    object_padding = torch.ones(len(items), count, dtype=torch.bool)
    index = torch.zeros(len(items), count, width, dtype=torch.long)
    pairs = torch.zeros(len(items), count, width, first.context.pairs.shape[2])
    padding = torch.ones(len(items), count, width, dtype=torch.bool)
    padding[:, :, 0] = False                        # padded objects attend to object 0, so softmax stays finite
    for i, (_, scene, similarity) in enumerate(items):
        n = len(scene.objects)
        objects[i, :n] = torch.from_numpy(scene.inputs)
        coarse[i, :n] = torch.from_numpy(similarity)
        object_padding[i, :n] = False
        index[i, :n] = torch.from_numpy(scene.context.index)
        pairs[i, :n] = torch.from_numpy(scene.context.pairs)
        padding[i, :n] = torch.from_numpy(scene.context.padding)
    return {"words": words, "word_padding": word_padding, "objects": objects, "coarse": coarse,
            "object_padding": object_padding, "neighbours": index, "pairs": pairs, "neighbour_padding": padding}


def run_grounder(model: TwoStageGrounder, batch: dict[str, torch.Tensor],
                 encoding: MapEncoding | None = None) -> torch.Tensor:
    """(B, P) scores of a `grounder_batch`, encoding its maps unless their `encoding` is given."""
    if encoding is None:
        encoding = model.encode_map(batch["objects"], batch["pairs"])
    return model(batch["words"], batch["word_padding"], batch["coarse"], batch["object_padding"],
                 batch["neighbours"], batch["neighbour_padding"], encoding)


def reconstruction_batch(items: Sequence[tuple[QueryContext, PreparedScene, int, np.ndarray]],
                         max_words: int) -> dict[str, torch.Tensor]:
    """Inputs of KeywordReconstructor for (query, scene, candidate object, (L,) bool masked positions) items:
    `context` and `context_pairs` feed `memory`, the rest `forward`."""
    words, word_padding = _pad_words([q.words for q, _, _, _ in items], max_words)
    masked = torch.zeros_like(word_padding)
    for i, (_, _, _, mask) in enumerate(items):
        n = min(len(mask), masked.shape[1])
        masked[i, :n] = torch.from_numpy(mask[:n])
    context = torch.from_numpy(np.stack([s.inputs[s.context.index[c]] for _, s, c, _ in items]))
    pairs = torch.from_numpy(np.stack([s.context.pairs[c] for _, s, c, _ in items]))
    padding = torch.from_numpy(np.stack([s.context.padding[c] for _, s, c, _ in items]))
    return {"words": words, "masked": masked, "word_padding": word_padding, "context": context,
            "context_pairs": pairs, "memory_padding": padding}


class _SceneCache:
    """The last few scenes' sentence-independent encodings (maps change far less often than queries come)."""

    def __init__(self, compute: Callable[[PreparedScene], Any], capacity: int = 16) -> None:
        self.compute = compute
        self._entries: LruCache[int, tuple[PreparedScene, Any]] = LruCache(capacity)   # keeps the scene alive

    def __call__(self, scene: PreparedScene) -> Any:
        entry = self._entries.get(id(scene))
        if entry is not None and entry[0] is scene:
            return entry[1]
        value = self.compute(scene)
        self._entries.put(id(scene), (scene, value))
        return value


def save_grounding_model(path: str | Path, kind: str, model: torch.nn.Module, text_space: str,
                         settings: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Write a reconstructor or grounder with its config, text space and inference settings (atomic)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    save_torch(path, {"format": FORMAT, "kind": kind, "model_config": model.config.to_dict(),
                      "text_space": text_space, "settings": dict(settings), "model": model.state_dict(),
                      **(extra or {})})


def load_grounding_model(path: str | Path, kind: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The network of a grounding checkpoint of `kind` in eval mode, and the checkpoint's content."""
    content = load_torch_checkpoint(path, FORMAT, "grounding")
    if content.get("kind") != kind:
        raise ValueError(f"{path}: a {content.get('kind')} checkpoint, expected a {kind}")
    config = GroundingModelConfig(**content["model_config"])
    model: torch.nn.Module = KeywordReconstructor(config, content["model"]["vocabulary"]) \
        if kind == "reconstructor" else TwoStageGrounder(config)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in content["model"].items()})
    return model.eval(), content


def export_grounding_model(source: str | Path, target: str | Path, provenance: dict[str, Any]) -> Path:
    """A float16 copy of a grounder checkpoint with its provenance (what ships in the package)."""
    content = load_torch_checkpoint(source, FORMAT, "grounding")
    content["model"] = {k: v.half() if v.is_floating_point() else v for k, v in content["model"].items()}
    save_torch(target, {**content, "provenance": provenance})
    return Path(target)


class DistilledGrounder:
    """Ranks a scene's objects with the two-stage grounder: one pass per query over the map's cached encoding,
    in ONNX Runtime when `runtime` is 'onnx' and onnxruntime is installed, else in PyTorch."""

    def __init__(self, model: TwoStageGrounder, runtime: str = "onnx") -> None:
        if runtime not in ("onnx", "torch"):
            raise ValueError(f"runtime must be 'onnx' or 'torch', got {runtime!r}")
        self.model = model.eval()
        self._onnx = onnx_runner(self.model) if runtime == "onnx" else None
        self._encodings = _SceneCache(self._encode)

    @property
    def runtime(self) -> str:
        return "torch" if self._onnx is None else "onnx"

    @torch.inference_mode()
    def _encode(self, scene: PreparedScene) -> dict[str, np.ndarray]:
        """The sentence-independent inputs of a query's pass (runtime.INPUTS names), as numpy arrays."""
        encoding = self.model.encode_map(torch.from_numpy(scene.inputs)[None],
                                         torch.from_numpy(scene.context.pairs)[None])
        return {"object_padding": np.zeros((1, len(scene.objects)), bool), "neighbours": scene.context.index[None],
                "neighbour_padding": scene.context.padding[None], "tokens": encoding.tokens.numpy(),
                "pair_key_values": encoding.pair_key_values.numpy()}

    def prepare(self, scene: PreparedScene) -> None:
        """Encode a map now (the first query on it would otherwise)."""
        if len(scene.objects):
            self._encodings(scene)

    @torch.inference_mode()
    def scores(self, query: QueryContext, scene: PreparedScene, coarse: np.ndarray | None = None) -> np.ndarray:
        """(P,) scores (higher is better); `coarse` is the query's `coarse_matrix` when the caller has it."""
        if not len(scene.objects):
            return np.zeros(0)
        words = query.words[None, :self.model.config.max_words]
        feed = {**self._encodings(scene), "words": words, "word_padding": np.zeros(words.shape[:2], bool),
                "coarse": (coarse_matrix(query, scene) if coarse is None else coarse)[None]}
        if self._onnx is not None:
            return self._onnx(feed)[0]
        tensors = {name: torch.from_numpy(value) for name, value in feed.items()}
        return self.model(tensors["words"], tensors["word_padding"], tensors["coarse"], tensors["object_padding"],
                          tensors["neighbours"], tensors["neighbour_padding"],
                          MapEncoding(tensors["tokens"], tensors["pair_key_values"]))[0].numpy()


class CoarseToFineTeacher:
    """The teacher: the coarse stage keeps the top K objects; each keyword group is masked in turn and
    reconstructed from each candidate; the posterior over the candidates is the coarse prior times the
    reconstruction likelihood. Each object's neighbourhood memory is computed once per map."""

    def __init__(self, model: KeywordReconstructor, word_index: dict[str, int], top_k: int, class_weight: float,
                 prior_temperature: float) -> None:
        self.model, self.word_index = model.eval(), word_index
        self.top_k, self.class_weight, self.prior_temperature = top_k, class_weight, prior_temperature
        self._memories = _SceneCache(self._memory)

    @torch.inference_mode()
    def _memory(self, scene: PreparedScene) -> tuple[torch.Tensor, torch.Tensor]:
        context = torch.from_numpy(scene.inputs[scene.context.index])
        return (self.model.memory(context, torch.from_numpy(scene.context.pairs)),
                torch.from_numpy(scene.context.padding))

    def candidates(self, query: QueryContext, scene: PreparedScene) -> tuple[np.ndarray, np.ndarray]:
        """(K,) the coarse stage's best objects and (K,) their log prior (log-softmax of the coarse scores)."""
        scores = coarse_ranking(coarse_matrix(query, scene), self.class_weight)
        order = np.lexsort((np.arange(len(scores)), -scores))[:self.top_k]
        return order, log_softmax(scores[order] / self.prior_temperature)

    @torch.inference_mode()
    def posterior(self, query: QueryContext, scene: PreparedScene) -> tuple[np.ndarray, np.ndarray]:
        """(K,) candidates and (K,) their posterior log-probabilities (normalised)."""
        candidates, log_prior = self.candidates(query, scene)
        groups = query.keyword_groups
        if not len(candidates) or not groups:
            return candidates, log_prior
        memory, padding = self._memories(scene)
        words, word_padding = _pad_words([query.words], self.model.config.max_words)
        length = words.shape[1]
        masks = torch.zeros(len(groups), length, dtype=torch.bool)
        for g, group in enumerate(groups):
            masks[g, [p for p in group if p < length]] = True
        rows = torch.from_numpy(candidates).repeat_interleave(len(groups))
        count = len(rows)
        masked = masks.repeat(len(candidates), 1)
        logits = self.model(words.expand(count, -1, -1), masked, word_padding.expand(count, -1), memory[rows],
                            padding[rows])
        targets = torch.from_numpy(word_ids(query.parsed.tokens[:length], self.word_index)).expand(count, -1)
        nll = reconstruction_nll(logits, targets, masked.float())
        return candidates, log_softmax(log_prior - nll.view(len(candidates), len(groups)).sum(dim=1).numpy())
