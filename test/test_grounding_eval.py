"""Grounding evaluation: instance boxes, proposal recall, Acc@IoU per eval type, and the coarse stage."""
from __future__ import annotations

import numpy as np
import pytest

from ov3d_ros.data.openscene import SceneCloud
from ov3d_ros.evaluation.grounding import grounding_accuracy, instance_boxes, proposal_recall, score_case
from ov3d_ros.geometry.boxes import OrientedBox
from ov3d_ros.grounding.grounders import QueryEncoder, coarse_matrix, coarse_ranking, prepare_scene
from ov3d_ros.grounding.objects import SceneObjects
from ov3d_ros.grounding.query import QueryParser
from ov3d_ros.grounding.words import WordVectors


def _box(x: float, size: float = 1.0) -> OrientedBox:
    return OrientedBox(np.array([x, 0.0, 0.5]), np.full(3, size))


def test_accuracy_counts_each_eval_type_and_missing_predictions_as_misses():
    truth = _box(0.0)
    cases = [score_case("unique", _box(0.0), truth), score_case("unique", _box(0.6), truth),
             score_case("multiple", None, truth), score_case("multiple", _box(0.2), truth)]
    table = grounding_accuracy(cases)
    assert table["overall"] == {"count": 4, "acc@0.25": 75.0, "acc@0.5": 50.0}
    assert table["unique"]["acc@0.25"] == 100.0 and table["unique"]["acc@0.5"] == 50.0
    assert table["multiple"]["acc@0.25"] == 50.0


def test_recall_and_instance_boxes():
    assert proposal_recall([_box(0.0), _box(5.0)], [_box(0.1)]) == {"recall@0.25": 0.5, "recall@0.5": 0.5}
    assert proposal_recall([_box(0.0)], []) == {"recall@0.25": 0.0, "recall@0.5": 0.0}
    rng = np.random.default_rng(0)
    xyz = np.vstack([rng.uniform(0, 1, (100, 3)), rng.uniform(3, 4, (100, 3)), rng.uniform(0, 1, (5, 3))])
    cloud = SceneCloud("s", xyz, np.zeros((205, 3), np.uint8), np.zeros(205, np.int64),
                       np.repeat([1, 2, 3], [100, 100, 5]))
    boxes = instance_boxes(cloud)
    assert sorted(boxes) == [1, 2]                              # instance 3 has too few points
    assert np.allclose(boxes[2].centre, 3.5, atol=0.05)
    with pytest.raises(ValueError, match="no instance labels"):
        instance_boxes(SceneCloud("s", xyz, np.zeros((205, 3), np.uint8)))


def test_coarse_stage_prefers_the_named_class_and_the_sentence_feature():
    labels = ["chair", "table", "lamp"]
    vectors = {"the chair near the table": [1.0, 0, 0], "chair": [1.0, 0, 0]}

    def encode(texts):
        return np.array([vectors.get(t, [0, 0, 1.0]) for t in texts])
    queries = QueryEncoder(QueryParser(labels), np.eye(3), encode, WordVectors(encode))
    objects = SceneObjects(np.zeros((3, 3)), np.ones((3, 3)), np.zeros(3),
                           np.array([[0.0, 1.0, 0.0], [0.9, 0.1, 0.0], [0.9, 0.1, 0.0]]),
                           np.array([[0, 1.0, 0], [0, 0, 1.0], [1.0, 0, 0]]), np.zeros((3, 3)), np.ones(3, np.int64),
                           np.array([1, 0, 0]))
    scores = coarse_ranking(coarse_matrix(queries("the chair near the table"), prepare_scene(objects, None, 2)), 0.7)
    assert np.argsort(-scores).tolist() == [2, 1, 0]
