"""Explicit spatial relations: each relation family on hand-made maps, the door-based left / right of the synthetic
descriptions, the engine's reordering within the target class, and the generated probes through the engine."""
from __future__ import annotations

import numpy as np
import pytest

from text_fakes import hash_vectors

from ov3d_ros.grounding.engine import EngineSettings, GroundingEngine
from ov3d_ros.grounding.objects import SceneObjects
from ov3d_ros.grounding.query import QueryParser
from ov3d_ros.grounding.relations import (apply_relations, door_view, pair_kernel, relation_geometry,
                                          relation_scores)
from ov3d_ros.language.vocabulary import Vocabulary

LABELS = ["door", "chair", "table", "sofa", "lamp", "mug", "box", "picture", "window", "bookshelf"]
PARSER = QueryParser(LABELS)
DOOR = ("door", [0.0, 0.0, 1.0], [0.9, 0.05, 2.0], 0.0)   # in the wall y = 0: coming in looks along +y, right is +x


def scene(placed: list[tuple[str, list[float], list[float], float]], own: float = 0.9) -> SceneObjects:
    """Objects of the named classes (centre, size, yaw); `own` of each class distribution on the true class."""
    labels = np.array([LABELS.index(name) for name, _, _, _ in placed])
    count, classes = len(placed), len(LABELS)
    distributions = np.full((count, classes), (1 - own) / (classes - 1))
    distributions[np.arange(count), labels] = own
    counts = np.where(labels == 0, 5000, 500)
    return SceneObjects(np.array([c for _, c, _, _ in placed], float), np.array([s for _, _, s, _ in placed], float),
                        np.array([y for _, _, _, y in placed], float), distributions, hash_vectors(
                            [f"{name}{i}" for i, (name, _, _, _) in enumerate(placed)]), np.full((count, 3), 0.5),
                        counts, labels)


def scores(objects: SceneObjects, text: str) -> np.ndarray:
    query = PARSER.parse(text)
    geometry = relation_geometry(objects, door_view(objects, 0))
    return relation_scores(query, objects, geometry, objects.distributions[:, query.target_label])


def best_of(objects: SceneObjects, text: str, label: str) -> int:
    """The index of the best-scored object of class `label`."""
    values = scores(objects, text)
    same = np.flatnonzero(objects.labels == LABELS.index(label))
    return int(same[np.argmax(values[same])])


CHAIRS_AROUND_TABLE = [DOOR, ("table", [0.0, 3.0, 0.37], [1.2, 0.8, 0.74], 0.0),
                       ("chair", [-1.1, 3.0, 0.45], [0.5, 0.5, 0.9], 0.3),     # 1: left of the table
                       ("chair", [1.1, 3.0, 0.45], [0.5, 0.5, 0.9], 0.0),      # 2: right
                       ("chair", [0.0, 2.1, 0.45], [0.5, 0.5, 0.9], 0.0),      # 3: in front (nearer the door)
                       ("chair", [0.0, 3.9, 0.45], [0.5, 0.5, 0.9], 0.0)]      # 4: behind


def test_left_right_front_behind_are_seen_from_the_door():
    objects = scene(CHAIRS_AROUND_TABLE)
    assert best_of(objects, "the chair to the left of the table as you come in through the door", "chair") == 2
    assert best_of(objects, "the chair on the right of the table", "chair") == 3
    assert best_of(objects, "the chair in front of the table", "chair") == 4
    assert best_of(objects, "the chair behind the table", "chair") == 5
    turned = [(name, [-c[1], c[0], c[2]], s, y + np.pi / 2) for name, c, s, y in CHAIRS_AROUND_TABLE]
    assert best_of(scene(turned), "the chair left of the table", "chair") == 2      # the room turned: the same


def test_left_right_agree_with_the_descriptions_side_on_generated_rooms():
    """descriptions._Room.side on the same geometry: every pair it calls left / right (within its proximity)
    scores higher for that side than the other, with the viewpoint taken from the mapped door alone."""
    from ov3d_ros.data.synthetic.categories import CLASS_NAMES
    from ov3d_ros.data.synthetic.descriptions import _Room
    from ov3d_ros.data.synthetic.layout import generate_scene

    checked = 0
    for seed in (0, 5):                      # door-to-centroid is 61 and 42 degrees off the door's normal here
        generated = generate_scene(seed)
        room = _Room(generated, None)
        door = next(o for o in generated.objects if o.name == "door")
        found = room.objects + [door]
        labels = np.array([o.class_index for o in found])
        objects = SceneObjects(np.array([o.box.centre for o in found]), np.array([o.box.size for o in found]),
                               np.array([o.box.yaw for o in found]), np.eye(len(CLASS_NAMES))[labels],
                               np.zeros((len(found), 4)), np.zeros((len(found), 3)),
                               np.array([len(o.mesh.vertices) for o in found]), labels)
        geometry = relation_geometry(objects, door_view(objects, CLASS_NAMES.index("door")))
        left, right = pair_kernel("left", geometry), pair_kernel("right", geometry)
        for i, a in enumerate(room.objects):
            for j, b in enumerate(room.objects):
                side = room.side(a, b) if i != j and room.gap(a, b) < 1.0 else None
                if side is not None:
                    assert (left[i, j] > right[i, j]) == (side == "left"), (seed, a.name, b.name, side)
                    checked += 1
    assert checked > 200


def test_next_to_and_closest_farthest():
    objects = scene([DOOR, ("sofa", [0.0, 4.0, 0.4], [2.0, 0.9, 0.8], 0.0),
                     ("lamp", [1.25, 4.0, 0.2], [0.3, 0.3, 0.4], 0.0),          # 2: 0.1 m from the sofa's arm
                     ("lamp", [2.4, 2.0, 0.2], [0.3, 0.3, 0.4], 0.0),           # 3: 1.7 m away
                     ("lamp", [-3.0, 1.5, 0.2], [0.3, 0.3, 0.4], 0.0)])         # 4: farthest
    assert best_of(objects, "the lamp next to the sofa", "lamp") == 2
    assert best_of(objects, "the lamp near the sofa", "lamp") == 2
    assert best_of(objects, "the lamp beside the sofa", "lamp") == 2
    assert best_of(objects, "the lamp closest to the sofa", "lamp") == 2
    assert best_of(objects, "the nearest lamp to the sofa", "lamp") == 2
    assert best_of(objects, "the lamp farthest from the sofa", "lamp") == 4
    assert best_of(objects, "the closest lamp", "lamp") == 3                    # no anchor: from the viewer
    assert best_of(objects, "the furthest lamp", "lamp") == 2
    values = scores(objects, "the lamp next to the sofa")
    assert values[2] > 0.9 and values[3] < 0.01


def test_bare_closest_and_farthest_name_the_target_and_take_an_anchor_after_to_or_from():
    query = PARSER.parse("the nearest lamp to the sofa")
    assert query.target_label == LABELS.index("lamp")
    assert [(r.kind, [a.label for a in r.anchors]) for r in query.relations] == [("closest", [LABELS.index("sofa")])]
    query = PARSER.parse("the farthest chair")
    assert query.target_label == LABELS.index("chair") and [(r.kind, r.anchors) for r in query.relations] == \
        [("farthest", ())]


def test_between_takes_the_segment_between_two_anchors():
    objects = scene([DOOR, ("table", [-2.0, 3.0, 0.37], [1.0, 0.8, 0.74], 0.0),
                     ("sofa", [2.0, 3.0, 0.4], [2.0, 0.9, 0.8], np.pi / 2),
                     ("box", [0.1, 3.1, 0.2], [0.4, 0.4, 0.4], 0.0),            # 3: between
                     ("box", [-3.2, 3.0, 0.2], [0.4, 0.4, 0.4], 0.0),           # 4: beyond the table
                     ("box", [0.0, 1.5, 0.2], [0.4, 0.4, 0.4], 0.0)])           # 5: off to the side
    assert best_of(objects, "the box between the table and the sofa", "box") == 3
    values = scores(objects, "the box between the table and the sofa")
    assert values[3] > 0.9 and max(values[4], values[5]) < 0.05


def test_on_above_and_under():
    objects = scene([DOOR, ("table", [0.0, 3.0, 0.37], [1.2, 0.8, 0.74], 0.0),
                     ("mug", [0.2, 3.1, 0.79], [0.1, 0.1, 0.1], 0.0),           # 2: on the table
                     ("mug", [1.2, 3.0, 0.05], [0.1, 0.1, 0.1], 0.0),           # 3: on the floor beside it
                     ("box", [0.0, 3.0, 0.2], [0.4, 0.4, 0.4], 0.0),            # 4: under the table
                     ("box", [-1.3, 3.0, 0.2], [0.4, 0.4, 0.4], 0.0),           # 5: beside it
                     ("bookshelf", [0.0, 5.8, 0.8], [1.0, 0.35, 1.6], 0.0),
                     ("picture", [0.1, 5.98, 2.1], [0.6, 0.03, 0.5], 0.0),      # 7: above the bookshelf
                     ("picture", [-2.0, 5.98, 2.1], [0.6, 0.03, 0.5], 0.0)])    # 8: elsewhere on the wall
    assert best_of(objects, "the mug on the table", "mug") == 2
    assert best_of(objects, "the mug sitting on top of the table", "mug") == 2
    assert best_of(objects, "the box under the table", "box") == 4
    assert best_of(objects, "the box beneath the table", "box") == 4
    assert best_of(objects, "the picture above the bookshelf", "picture") == 7
    assert best_of(objects, "the mug above the table", "mug") == 2


def test_superlatives_rank_among_the_target_class():
    objects = scene([DOOR, ("box", [0.0, 2.0, 0.2], [0.4, 0.4, 0.4], 0.0),
                     ("box", [1.0, 2.0, 0.3], [0.6, 0.6, 0.6], 0.0),            # 2: largest
                     ("box", [2.0, 2.0, 0.15], [0.3, 0.3, 0.3], 0.0),           # 3: smallest
                     ("box", [3.0, 2.0, 0.45], [0.3, 0.3, 0.9], 0.0),           # 4: tallest, not largest
                     ("sofa", [0.0, 4.0, 0.4], [2.0, 0.9, 0.8], 0.0)])          # larger, another class
    assert best_of(objects, "the largest box in the room", "box") == 2
    assert best_of(objects, "it is the biggest of the boxes", "box") == 2
    assert best_of(objects, "find the smallest box", "box") == 3
    assert best_of(objects, "the tallest box", "box") == 4
    assert best_of(objects, "the shortest box", "box") == 3


def test_an_absent_anchor_leaves_the_ranking_alone():
    objects = scene([DOOR, ("chair", [0.0, 2.0, 0.45], [0.5, 0.5, 0.9], 0.0),
                     ("chair", [2.0, 2.0, 0.45], [0.5, 0.5, 0.9], 0.0)], own=0.99)
    values = scores(objects, "the chair next to the window")
    assert np.allclose(values[1:], values[1], atol=1e-3) and values[1] > 0.95


def vocabulary() -> Vocabulary:
    embeddings = hash_vectors(LABELS)
    return Vocabulary(tuple(LABELS), {"sofa": ("couch",)}, embeddings, embeddings, np.arange(len(LABELS)), "hash-16d")


def test_engine_reorders_the_target_class_but_never_promotes_another():
    objects = scene(CHAIRS_AROUND_TABLE + [("box", [-1.0, 2.3, 0.2], [0.4, 0.4, 0.4], 0.0)])
    plain, related = (GroundingEngine(hash_vectors, settings=EngineSettings(relations=flag)) for flag in (False, True))
    for engine in (plain, related):
        engine.set_map(objects, vocabulary())
    text = "the chair to the left of the table"
    before, after = plain.ground(text, 8), related.ground(text, 8)
    assert after.candidates[0].instance_id == 2
    assert [c.label for c in after.candidates] == [c.label for c in before.candidates]      # classes keep their rank
    assert {c.instance_id for c in after.candidates[:4]} == {2, 3, 4, 5}
    # a query without relations ranks exactly as before
    assert [(c.instance_id, c.score) for c in plain.ground("the chair", 8).candidates] == \
        [(c.instance_id, c.score) for c in related.ground("the chair", 8).candidates]


def test_apply_relations_cannot_lift_another_class():
    rng = np.random.default_rng(0)
    for _ in range(200):
        base = rng.uniform(0, 1, 6)
        relation = rng.uniform(0, 1, 6)
        target = np.concatenate([[1.0], rng.uniform(0.5, 1.0, 2), rng.uniform(0.0, 0.5, 3)])   # soft classes
        out = apply_relations(base, relation, target)
        for wrong in range(3, 6):
            for right in range(3):
                if base[right] > base[wrong]:
                    assert out[right] > out[wrong]


@pytest.fixture(scope="module")
def probe_vocabulary() -> Vocabulary:
    from ov3d_ros.data.synthetic.categories import CATEGORIES, CLASS_NAMES
    embeddings = hash_vectors(list(CLASS_NAMES))
    return Vocabulary(CLASS_NAMES, {c.name: c.synonyms for c in CATEGORIES}, embeddings, embeddings,
                      np.arange(len(CLASS_NAMES)), "hash-16d")


def test_probes_are_deterministic_and_parse_as_written(probe_vocabulary):
    from ov3d_ros.evaluation.relation_probes import RELATIONS, make_probes, probe_parser
    first, again = make_probes(probe_vocabulary, 3, seed=7), make_probes(probe_vocabulary, 3, seed=7)
    assert [p.query for p in first] == [p.query for p in again]
    assert all(np.array_equal(a.objects.centres, b.objects.centres) for a, b in zip(first, again))
    parser = probe_parser()
    for probe in first:
        parsed = parser.parse(probe.query)
        assert [r.kind for r in parsed.relations] == [probe.relation], probe.query
        assert parsed.target_label == probe.objects.labels[probe.target], probe.query
        same = np.flatnonzero(probe.objects.labels == probe.objects.labels[probe.target])
        assert len(same) >= 2 and np.count_nonzero(probe.objects.labels == 7) == 1     # distractors; one door
    assert {p.relation for p in first} == set(RELATIONS)


def test_probes_through_the_engine_reach_80_percent_per_relation(probe_vocabulary):
    from ov3d_ros.evaluation.relation_probes import RELATIONS, make_probes, probe_accuracy
    probes = make_probes(probe_vocabulary, 5, seed=1)
    accuracy = probe_accuracy(GroundingEngine(hash_vectors), probe_vocabulary, probes)
    assert set(accuracy) == set(RELATIONS)
    assert all(value >= 0.8 for value in accuracy.values()), accuracy


def test_thresholds_are_the_descriptions_and_the_bench_verb_has_help(capsys):
    from ov3d_ros.cli import main
    from ov3d_ros.data.synthetic import descriptions
    from ov3d_ros.grounding import relations

    assert (relations.NEXT_TO_GAP_M, relations.SIDE_MARGIN_M, relations.SIZE_MARGIN) == \
        (descriptions.NEXT_TO_GAP_M, descriptions.SIDE_MARGIN_M, descriptions.SIZE_MARGIN)
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "relations", "--help"])
    assert exit_info.value.code == 0 and "usage: ov3d bench relations" in capsys.readouterr().out
