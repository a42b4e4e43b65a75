"""The rule-based query parser: targets, attributes, relations and anchors on the kinds of sentence planners send."""
from __future__ import annotations

import pytest

from ov3d_ros.data.synthetic.categories import CATEGORIES
from ov3d_ros.grounding.query import QueryParser

LABELS = [c.name for c in CATEGORIES]


@pytest.fixture(scope="module")
def parser():
    return QueryParser(LABELS, {c.name: c.synonyms for c in CATEGORIES})


def label(name: str) -> int:
    return LABELS.index(name)


def test_target_and_two_relations(parser):
    q = parser.parse("the mug on the desk next to the monitor")
    assert q.target_label == label("mug") and q.target_phrase == "mug"
    assert [(r.kind, [a.label for a in r.anchors]) for r in q.relations] == [
        ("on", [label("desk")]), ("next_to", [label("monitor")])]
    assert q.keywords["target"] == (1,) and q.keywords["relation"] == (2, 5, 6)


def test_attributes_belong_to_the_target_not_the_anchor(parser):
    q = parser.parse("The small red box on top of the white cabinet.")
    assert q.target_label == label("box") and q.attributes == ("small", "red")
    assert [r.kind for r in q.relations] == ["on"] and q.relations[0].anchors[0].label == label("cabinet")


def test_multiword_names_win_over_their_last_word_and_synonyms_and_plurals_resolve(parser):
    assert parser.parse("the coffee table by the couch").target_label == label("coffee table")
    q = parser.parse("the coffee table by the couch")
    assert q.relations[0].kind == "next_to" and q.relations[0].anchors[0].label == label("sofa")
    q = parser.parse("it is the largest of the chairs.")
    assert q.target_label == label("chair") and [r.kind for r in q.relations] == ["largest"]


def test_between_takes_two_anchors_and_sides_keep_their_direction(parser):
    q = parser.parse("the lamp between the bed and the nightstand.")
    assert q.relations[0].kind == "between"
    assert [a.label for a in q.relations[0].anchors] == [label("bed"), label("nightstand")]
    q = parser.parse("this is the chair to the left of the table as you come in through the door.")
    assert q.target_label == label("chair")
    assert [(r.kind, r.anchors[0].label) for r in q.relations] == [("left", label("table"))]
    assert parser.parse("the chair on the right of the desk").relations[0].kind == "right"


def test_unknown_target_keeps_its_head_noun_and_the_relations(parser):
    q = parser.parse("the gizmo on the table")
    assert q.target is None and q.target_phrase == "gizmo"
    assert q.relations[0].anchors[0].label == label("table")
    assert parser.parse("by the way, hello").relations == ()


def test_parser_matches_every_description_of_the_synthetic_world(parser):
    import numpy as np

    from ov3d_ros.data.synthetic.descriptions import describe_scene
    from ov3d_ros.data.synthetic.layout import generate_scene

    scene = generate_scene(3)
    descriptions = describe_scene(scene, np.random.default_rng(4))
    by_id = {o.instance_id: o for o in scene.objects}
    assert len(descriptions) > 10
    for d in descriptions:
        q = parser.parse(d.description)
        assert q.target_label == by_id[d.object_id].class_index, d.description
        assert sorted(a.label for a in q.anchors) == sorted(by_id[a].class_index for a in d.anchor_ids), \
            d.description
