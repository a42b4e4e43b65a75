"""Coarse grounding: named classes pick their proposals, unknown words fall back to text similarity."""
from __future__ import annotations

import numpy as np

from ov3d_ros.grounding.coarse import coarse_scores, target_class_weights, top_k
from ov3d_ros.grounding.query import QueryParser

LABELS = ["chair", "table", "lamp"]
EMBED = np.eye(3)


def test_named_target_ranks_its_class_first_and_features_break_ties():
    query = QueryParser(LABELS).parse("the chair next to the table")
    weights = target_class_weights(query, EMBED)
    assert weights.tolist() == [1.0, 0.0, 0.0]
    distributions = np.array([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    features = np.array([[0, 1, 0], [1, 0, 0], [0.6, 0.8, 0], [0, 0, 1.0]])
    scores = coarse_scores(weights, np.array([1.0, 0, 0]), distributions, features)
    assert top_k(scores, 2).tolist() == [1, 2]
    assert ((0 <= scores) & (scores <= 1)).all()


def test_unknown_target_uses_the_phrase_embedding_and_top_k_is_stable():
    query = QueryParser(LABELS).parse("the luminaire on the table")
    assert query.target is None and query.target_phrase == "luminaire"
    weights = target_class_weights(query, EMBED, np.array([0.1, 0.0, 0.9]))
    assert weights.argmax() == 2 and np.isclose(weights.sum(), 1.0)
    assert np.allclose(target_class_weights(query, EMBED), 1 / 3)
    assert top_k(np.array([0.5, 0.9, 0.5, 0.9]), 3).tolist() == [1, 3, 0]
