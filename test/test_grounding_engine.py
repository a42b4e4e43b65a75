"""The ROS-free grounding engine: query validation and answers, including the empty map."""
from __future__ import annotations

import numpy as np
import pytest

from ov3d_ros.grounding.engine import GroundingEngine, MapObject, QueryError, validate_query


def obj(i: int, label: str, score: float) -> MapObject:
    return MapObject(i, label, score, np.array([i, 0.0, 0.5]), np.array([0.4, 0.4, 0.8]))


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


def test_empty_map_answer():
    answer = GroundingEngine().ground("the mug on the desk", 5)
    assert not answer.success and answer.message.startswith("map is empty")


def test_label_match_ranks_by_score_and_bounds_results():
    engine = GroundingEngine()
    engine.set_objects([obj(1, "chair", 0.6), obj(2, "chair", 0.9), obj(3, "office chair", 0.7), obj(4, "desk", 1)])
    answer = engine.ground("the chair near the window", 2)
    assert answer.success
    assert [c.instance_id for c in answer.candidates] == [2, 1]
    missing = engine.ground("a bathtub", 5)
    assert not missing.success and "chair, desk, office chair" in missing.message
