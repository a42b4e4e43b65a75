"""The demo's questions, its verdict on each answer and its summary line; the picture's palette."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ov3d_ros.commands.demo import answers_summary, choose_queries, judge_answer
from ov3d_ros.data.openscene import SceneCloud
from ov3d_ros.data.scanrefer import ReferringExpression
from ov3d_ros.evaluation.grounding import instance_classes
from ov3d_ros.evaluation.online import LabelledMap
from ov3d_ros.geometry.boxes import OrientedBox
from ov3d_ros.mapping.label_colours import distinct_colours, srgb_to_lab


def _response(centre: tuple[float, float, float], size: tuple[float, float, float]) -> SimpleNamespace:
    vector = lambda x, y, z: SimpleNamespace(x=x, y=y, z=z)                      # noqa: E731
    pose = SimpleNamespace(pose=SimpleNamespace(position=vector(*centre),
                                                orientation=SimpleNamespace(x=0.0, y=0.0, z=0.0, w=1.0)))
    candidate = SimpleNamespace(label="chair", instance_id=4, score=0.8, pose=pose, size=vector(*size))
    return SimpleNamespace(success=True, message="", candidates=[candidate])


def test_an_answer_is_right_when_its_box_overlaps_a_target_and_the_summary_counts_them():
    target = OrientedBox(np.array([1.0, 1.0, 0.5]), np.array([0.5, 0.5, 1.0]))
    elsewhere = OrientedBox(np.array([4.0, 1.0, 0.5]), np.array([0.5, 0.5, 1.0]))
    line, box, right = judge_answer(_response((1.05, 1.0, 0.5), (0.5, 0.5, 1.0)), [elsewhere, target])
    assert right and line.startswith("right (IoU 0.8") and box is not None
    line, _, right = judge_answer(_response((2.5, 1.0, 0.5), (0.5, 0.5, 1.0)), [target])
    assert not right and line.startswith("WRONG (IoU 0.00")
    line, box, right = judge_answer(SimpleNamespace(success=False, message="the map is empty", candidates=[]),
                                    [target])
    assert not right and box is None and "the map is empty" in line
    assert answers_summary(3, 4) == "3 of 4 right (IoU >= 0.25 with the described object)"


def test_queries_cover_mapped_classes_and_a_synonym_answered_by_any_object_of_its_class():
    labels = ("wall", "floor", "chair", "table")
    label = np.repeat([0, 1, 2, 3], [3000, 2000, 1500, 200])          # the table is barely on the map
    labelled = LabelledMap(np.zeros((len(label), 3)), label, np.zeros((len(label), 3), np.uint8), labels)
    expressions = [ReferringExpression("s", 7, "table", 0, "the small table"),
                   ReferringExpression("s", 3, "chair", 1, "the chair by the window"),
                   ReferringExpression("s", 5, "chair", 2, "the other chair")]
    queries = choose_queries(expressions, labelled, {"chair": ("seat",)}, {3: "chair", 5: "chair", 7: "table"})
    assert [(q.text, q.targets) for q in queries] == [("the chair by the window", (3,)), ("the seat", (3, 5))]


def test_instance_classes_take_each_instance_majority_class():
    labels = np.array([2, 2, 5, 255, 255, 1, 1])
    instances = np.array([0, 0, 0, 1, 1, -1, 2])
    cloud = SceneCloud("s", np.zeros((7, 3), np.float32), np.zeros((7, 3), np.uint8), labels, instances)
    assert instance_classes(cloud) == {0: 2, 2: 1}


def test_picture_palette_keeps_every_pair_of_forty_labels_apart_and_shows_on_white():
    colours = distinct_colours(40)
    lab = srgb_to_lab(colours)
    assert colours.shape == (40, 3) and np.all((colours >= 0) & (colours <= 1))
    distance = np.linalg.norm(lab[:, None] - lab[None], axis=2) + np.eye(40) * 1e9
    assert distance.min() > 20.0                     # CIE76: about 2.3 is a just-noticeable difference
    assert distance[:2, :2].min() > 100.0            # wall and floor (the two most frequent) far apart
    assert lab[:, 0].max() <= 88.0
    np.testing.assert_allclose(srgb_to_lab(np.array([[1.0, 0.0, 0.0]])), [[53.24, 80.09, 67.20]], atol=0.05)
