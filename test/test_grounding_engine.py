"""The ROS-free grounding engine: query validation, the empty map, ranking, no-match answers."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from text_fakes import hash_vectors

from ov3d_ros.grounding.engine import NOT_LABELLED, GroundingEngine, QueryError, validate_query
from ov3d_ros.grounding.grounders import coarse_ranking
from ov3d_ros.grounding.objects import SceneObjects
from ov3d_ros.language.vocabulary import Vocabulary


@pytest.mark.parametrize("query,reason", [
    ("", "empty"), (" \t\n ", "empty"), ("x" * 1001, "1001 characters long; the limit is 1000"),
    ("mug\x00", "non-text"), ("mug\x1b[2J", "non-text"), ("?! ...", "no words"), (b"mug", "must be text"),
    (None, "must be text"),
])
def test_bad_queries_are_refused_with_a_reason(query, reason):
    with pytest.raises(QueryError, match=reason.replace("[", r"\[")):
        validate_query(query, 1000)


def test_valid_query_is_normalised():
    assert validate_query("  the  red\tmug\n", 1000) == "the red mug"
    assert validate_query("x" * 1000, 1000) == "x" * 1000
    assert validate_query("la tasse café", 1000) == "la tasse café"


def vocabulary(labels: list[str]) -> Vocabulary:
    embeddings = hash_vectors(labels)
    return Vocabulary(tuple(labels), {}, embeddings, embeddings, np.arange(len(labels)), "hash-16d")


def objects(labels: list[int], classes: int, xs: list[float]) -> SceneObjects:
    count = len(labels)
    return SceneObjects(np.array([[x, 0.0, 0.4] for x in xs]), np.full((count, 3), 0.5), np.full(count, np.pi / 2),
                        np.eye(classes)[labels], np.zeros((count, 16)), np.full((count, 3), 0.5),
                        np.full(count, 100), np.array(labels))


def test_empty_map_answer():
    answer = GroundingEngine(hash_vectors).ground("the mug on the desk", 5)
    assert not answer.success and answer.message.startswith("map is empty")


def test_coarse_ranking_bounds_results_and_answers_in_the_map_frame():
    labels = ["chair", "table", "bathtub"]
    engine = GroundingEngine(hash_vectors)
    engine.set_map(objects([0, 1, 0, 0], 3, [0.0, 1.0, 2.0, 3.0]), vocabulary(labels), instance_ids=[7, 8, 9, 10])
    answer = engine.ground("the chair near the window", 2)
    assert answer.success and len(answer.candidates) == 2
    assert {c.instance_id for c in answer.candidates} <= {7, 9, 10} and all(c.label == "chair"
                                                                          for c in answer.candidates)
    first = answer.candidates[0]
    assert np.allclose(first.orientation_xyzw, [0, 0, np.sin(np.pi / 4), np.cos(np.pi / 4)])
    assert first.size.tolist() == [0.5, 0.5, 0.5]


def test_a_class_absent_from_the_map_is_a_clear_no_match():
    engine = GroundingEngine(hash_vectors)
    engine.set_map(objects([0, 1], 3, [0.0, 1.0]), vocabulary(["chair", "table", "bathtub"]))
    answer = engine.ground("the bathtub in the corner", 3)
    assert not answer.success
    assert "nothing in the map looks like 'bathtub'" in answer.message and "chair, table" in answer.message


def test_a_target_no_object_is_labelled_as_but_one_resembles_is_answered_with_low_scores():
    engine = GroundingEngine(hash_vectors)
    room = objects([0, 1, 0], 3, [0.0, 1.0, 2.0])
    room = dataclasses.replace(room, distributions=np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.9, 0.05, 0.05]]))
    engine.set_map(room, vocabulary(["chair", "table", "bathtub"]), instance_ids=[4, 5, 6])
    answer = engine.ground("the bathtub in the corner", 3)    # the third object is a little like a bathtub
    assert answer.success and answer.message.startswith(NOT_LABELLED + "'bathtub'")
    assert answer.candidates[0].instance_id == 6 and all(c.score <= 0.05 for c in answer.candidates)


def test_scores_are_the_ranking_share_times_the_class_evidence():
    engine = GroundingEngine(hash_vectors)
    room = objects([0, 1, 0], 3, [0.0, 1.0, 2.0])
    room = dataclasses.replace(room, distributions=np.array([[0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]]))
    engine.set_map(room, vocabulary(["chair", "table", "bathtub"]))
    answer = engine.ground("the chair", 3)
    shares = coarse_ranking(np.array([[0.9, 0.5], [0.0, 0.5], [0.5, 0.5]]), engine.settings.class_weight)
    shares /= shares.sum()
    expected = shares * np.array([0.9, 0.0, 0.5])
    assert [c.instance_id for c in answer.candidates] == [0, 2, 1]
    assert np.allclose([c.score for c in answer.candidates], expected[[0, 2, 1]])


def test_set_map_checks_the_vocabulary_and_ids():
    engine = GroundingEngine(hash_vectors)
    with pytest.raises(ValueError, match="over 3 classes"):
        engine.set_map(objects([0, 1], 3, [0.0, 1.0]), vocabulary(["chair", "table"]))
    with pytest.raises(ValueError, match="1 instance ids for 2 objects"):
        engine.set_map(objects([0, 1], 2, [0.0, 1.0]), vocabulary(["chair", "table"]), instance_ids=[3])


@pytest.fixture(scope="module")
def shipped_engine():
    """The shipped distilled grounder with the MiniLM text encoder, and a small room's vocabulary."""
    from ov3d_ros.grounding.engine import load_engine
    from ov3d_ros.language.encoders import MiniLMEncoder
    encoder = MiniLMEncoder()
    vocabulary = Vocabulary.build(["chair: seat", "table: desk", "door", "lamp", "sofa: couch"], encoder,
                                  ["a {} in a scene"])
    return load_engine(encoder.encode, "default"), vocabulary


def room(vocabulary: Vocabulary, placed: list[tuple[str, list[float], list[float]]]) -> SceneObjects:
    """Objects of the named classes at their centres with their sizes; features at their class's embedding."""
    labels = np.array([vocabulary.labels.index(name) for name, _, _ in placed])
    features = vocabulary.label_embeddings[labels]
    logits = features @ vocabulary.label_embeddings.T / 0.05
    distributions = np.exp(logits - logits.max(axis=1, keepdims=True))
    return SceneObjects(np.array([c for _, c, _ in placed]), np.array([s for _, _, s in placed]),
                        np.zeros(len(placed)), distributions / distributions.sum(axis=1, keepdims=True), features,
                        np.full((len(placed), 3), 0.5), np.full(len(placed), 800), labels)


def test_shipped_grounder_answers_a_synonym_and_refuses_an_absent_class(shipped_engine):
    engine, vocabulary = shipped_engine
    engine.set_map(room(vocabulary, [("sofa", [1.0, 1.0, 0.4], [2.0, 0.9, 0.8]),
                                     ("table", [3.0, 1.0, 0.38], [1.2, 0.8, 0.75])]), vocabulary)
    answer = engine.ground("the couch", 1)
    assert answer.success and answer.candidates[0].label == "sofa"
    missing = engine.ground("the lamp next to the couch", 1)
    assert not missing.success and "lamp" in missing.message
    assert engine.ground("the table next to the couch", 2).candidates[0].label == "table"
