"""The coarse stage of grounding: rank a scene's proposals by class and feature similarity to the query.

class similarity: the proposal's class distribution weighted by the query's target classes (one-hot on a named
class; for an unknown word, the softmax of its text embedding's similarity to the class names). feature
similarity: cosine of the sentence embedding and the proposal's mean feature, mapped to [0, 1]. The score mixes
them with `class_weight`; the top K go on to the fine stage.
"""
from __future__ import annotations

import numpy as np

from ov3d_ros.grounding.query import ParsedQuery


def target_class_weights(query: ParsedQuery, class_embeddings: np.ndarray, phrase_embedding: np.ndarray | None = None,
                         temperature: float = 0.05) -> np.ndarray:
    """(C,) weights of the classes the query's target may be: one-hot on a named class, else a softmax of the
    target phrase's similarity to the (unit) class embeddings; uniform when neither is known."""
    count = len(class_embeddings)
    if query.target_label is not None:
        return np.eye(count)[query.target_label]
    if phrase_embedding is None or not np.any(phrase_embedding):
        return np.full(count, 1.0 / count)
    phrase = phrase_embedding / np.linalg.norm(phrase_embedding)
    logits = class_embeddings @ phrase / temperature
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def coarse_terms(class_weights: np.ndarray, sentence_embedding: np.ndarray, distributions: np.ndarray,
                 features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P,) class similarities and (P,) feature similarities in [0, 1] of P proposals with class `distributions`
    (P, C) and unit `features` (P, D)."""
    sentence = sentence_embedding / max(float(np.linalg.norm(sentence_embedding)), 1e-12)
    feature_similarity = 0.5 * (1.0 + features @ sentence) if features.size else np.zeros(len(distributions))
    return distributions @ class_weights, feature_similarity


def coarse_scores(class_weights: np.ndarray, sentence_embedding: np.ndarray, distributions: np.ndarray,
                  features: np.ndarray, class_weight: float = 0.7) -> np.ndarray:
    """(P,) scores in [0, 1]: `class_weight` of the class similarity plus the rest of the feature similarity."""
    if not 0.0 <= class_weight <= 1.0:
        raise ValueError(f"class_weight must be in [0, 1], got {class_weight}")
    class_similarity, feature_similarity = coarse_terms(class_weights, sentence_embedding, distributions, features)
    return class_weight * class_similarity + (1.0 - class_weight) * feature_similarity


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, best first (ties: the lower index first)."""
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores)))
    return order[:max(k, 0)]

