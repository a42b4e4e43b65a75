"""Latency of the grounding engine on a synthetic map: distinct queries (so every one pays for its text
encoding), one thread, percentiles per stage."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ov3d_ros.data.synthetic.categories import CATEGORIES
from ov3d_ros.data.synthetic.descriptions import COLOUR_NAMES
from ov3d_ros.grounding.engine import GroundingEngine
from ov3d_ros.evaluation.latency import percentiles
from ov3d_ros.grounding.objects import SceneObjects
from ov3d_ros.language.vocabulary import Vocabulary

RELATIONS = ("next to", "on", "to the left of", "to the right of", "between the lamp and", "closest to", "under",
             "near")


def synthetic_objects(vocabulary: Vocabulary, count: int, rng: np.random.Generator) -> SceneObjects:
    """`count` objects of random classes spread over a 20 m x 20 m floor, with features near their class's text
    embedding and peaked class distributions."""
    classes = rng.integers(len(vocabulary.labels), size=count)
    sizes = rng.uniform(0.2, 2.0, size=(count, 3))
    centres = np.column_stack([rng.uniform(0, 20, size=(count, 2)), sizes[:, 2] / 2])
    features = vocabulary.label_embeddings[classes] + 0.05 * rng.standard_normal((count, vocabulary.dim))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    logits = features @ vocabulary.label_embeddings.T / 0.05
    distributions = np.exp(logits - logits.max(axis=1, keepdims=True))
    distributions /= distributions.sum(axis=1, keepdims=True)
    return SceneObjects(centres, sizes, rng.uniform(0, np.pi, count), distributions, features,
                        rng.uniform(0, 1, (count, 3)), rng.integers(50, 5000, count), classes)


def distinct_queries(count: int, rng: np.random.Generator) -> list[str]:
    """`count` different referring expressions over the synthetic categories' names."""
    names = [n for c in CATEGORIES for n in (c.name, *c.synonyms)]
    colours = list(COLOUR_NAMES)
    seen: set[str] = set()
    while len(seen) < count:
        seen.add(f"the {rng.choice(colours)} {rng.choice(names)} {rng.choice(RELATIONS)} the {rng.choice(names)}")
    return sorted(seen)


def run_grounding_benchmark(engine: GroundingEngine, vocabulary: Vocabulary, objects: int, queries: int,
                            seed: int) -> dict[str, Any]:
    """Time `engine.ground` on `queries` distinct queries over a map of `objects` objects: first call (text
    encoding included) and a second call of the same query (embeddings cached: ranking only)."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    engine.set_map(synthetic_objects(vocabulary, objects, rng), vocabulary)
    engine.ground("warm up the text encoder", 5)
    cold, warm, failed = [], [], 0
    for text in distinct_queries(queries, rng):
        start = time.perf_counter()
        answer = engine.ground(text, 5)
        cold.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        engine.ground(text, 5)
        warm.append(1000 * (time.perf_counter() - start))
        failed += not answer.success
    return {"objects": objects, "queries": queries, "threads": 1,
            "ranker": "distilled grounder" if engine.grounder is not None else "coarse stage",
            "with_text_encoding_ms": percentiles(cold), "cached_query_ms": percentiles(warm),
            "unanswered": failed}
