"""Grounding geometry, networks, teacher and trainer on hand-made scenes: the view frame, relative geometry,
padding-independent scores, normalised posteriors, and a "left of X" relation that only geometry can decide."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from text_fakes import hash_vectors

from ov3d_ros.config import GroundingConfig
from ov3d_ros.grounding.grounders import (CoarseToFineTeacher, DistilledGrounder, QueryEncoder, coarse_matrix,
                                          grounder_batch, prepare_scene, run_grounder)
from ov3d_ros.grounding.objects import SceneObjects, neighbourhoods, pair_geometry, view_frame
from ov3d_ros.grounding.query import QueryParser
from ov3d_ros.grounding.words import WordVectors
from ov3d_ros.models.grounding import GroundingModelConfig, KeywordReconstructor, TwoStageGrounder
from ov3d_ros.training.grounding import GroundingData, GroundingExample, GroundingTrainer

LABELS = ["chair", "table", "door", "lamp"]
DIM = 16
CLASS_EMBEDDINGS = np.linalg.qr(np.random.default_rng(0).standard_normal((DIM, DIM)))[0][:len(LABELS)]


def scene(centres: list[list[float]], labels: list[int]) -> SceneObjects:
    labels_array = np.array(labels)
    return SceneObjects(np.array(centres, float), np.full((len(labels), 3), 0.5), np.zeros(len(labels)),
                        np.eye(len(LABELS))[labels_array], CLASS_EMBEDDINGS[labels_array],
                        np.full((len(labels), 3), 0.5), np.full(len(labels), 200), labels_array)


def left_right_scene(rng: np.random.Generator) -> tuple[SceneObjects, int, int]:
    """A door far south (the viewer looks north, so left is -x), a table, a chair on either side of it and a
    lamp elsewhere; returns the objects and the indices of the left and the right chair."""
    table = rng.uniform([1.0, 2.0], [4.0, 5.0])
    offset = rng.uniform(0.6, 1.0)
    chairs = [table + [-offset, rng.uniform(-0.3, 0.3)], table + [offset, rng.uniform(-0.3, 0.3)]]
    lamp = table + rng.uniform([-2.0, 1.5], [2.0, 2.5])
    order = rng.permutation(2)                       # the left chair is not always listed first
    points = [[*table, 0.4], [*chairs[order[0]], 0.4], [*chairs[order[1]], 0.4], [*lamp, 0.8], [2.5, -3.0, 1.0]]
    objects = scene(points, [1, 0, 0, 3, 2])
    left = 1 + int(np.flatnonzero(order == 0)[0])
    return objects, left, 3 - left


def queries() -> QueryEncoder:
    return QueryEncoder(QueryParser(LABELS), CLASS_EMBEDDINGS, hash_vectors, WordVectors(hash_vectors))


def test_view_frame_stands_in_the_door_and_left_is_left():
    objects, left, right = left_right_scene(np.random.default_rng(1))
    view = view_frame(objects, LABELS.index("door"))
    assert np.allclose(view.origin, [2.5, -3.0]) and view.forward[1] > 0.95
    pairs = pair_geometry(objects, view)
    assert pairs[0, left, 1] < 0 < pairs[0, right, 1]       # right-axis offset of each chair from the table
    assert np.allclose(pairs[np.arange(5), np.arange(5), :3], 0)
    assert view_frame(objects, None).forward.tolist() == [1.0, 0.0]


def test_neighbourhoods_put_each_object_first_and_pad_small_scenes():
    objects, _, _ = left_right_scene(np.random.default_rng(2))
    context = neighbourhoods(objects, view_frame(objects, 2), size=8)
    assert context.index.shape == (5, 9) and (context.index[:, 0] == np.arange(5)).all()
    assert (~context.padding[:, :5]).all() and context.padding[:, 5:].all()
    assert sorted(context.index[0, :5].tolist()) == [0, 1, 2, 3, 4]
    assert not context.pairs[context.padding].any()


def test_scores_do_not_depend_on_what_else_is_in_the_batch():
    torch.manual_seed(0)
    model = TwoStageGrounder(GroundingModelConfig(feature_dim=DIM, dim=32, heads=4, layers=2)).eval()
    encoder = queries()
    small, _, _ = left_right_scene(np.random.default_rng(3))
    big = scene([[x, 0.0, 0.5] for x in range(9)], [0, 1, 2, 3, 0, 1, 2, 3, 0])
    short, long = encoder("the lamp"), encoder("the chair to the left of the table near the door")
    alone_scene = prepare_scene(small, 2, 4)
    with torch.no_grad():
        alone = run_grounder(model, grounder_batch([(short, alone_scene, coarse_matrix(short, alone_scene))], 48))
        big_scene = prepare_scene(big, 2, 4)
        both = run_grounder(model, grounder_batch([(short, alone_scene, coarse_matrix(short, alone_scene)),
                                                   (long, big_scene, coarse_matrix(long, big_scene))], 48))
        for runtime in ("torch", "onnx"):
            cached = DistilledGrounder(model, runtime)
            assert cached.runtime == runtime
            for _ in range(2):                                      # the second time from the map cache
                assert np.allclose(cached.scores(short, alone_scene), alone[0].numpy(), atol=1e-5)
            assert np.allclose(cached.scores(long, big_scene), both[1].numpy(), atol=1e-5)
    assert torch.allclose(alone[0], both[0, :5], atol=1e-5)
    assert torch.isinf(both[0, 5:]).all() and torch.isfinite(both[1]).all()


def test_teacher_posterior_covers_the_coarse_top_k_and_is_normalised():
    torch.manual_seed(0)
    words = ["<unk>", "the", "chair", "left", "of", "table", "to"]
    model = KeywordReconstructor(GroundingModelConfig(feature_dim=DIM, dim=32, heads=4, layers=1),
                                 torch.from_numpy(hash_vectors(words)).float())
    teacher = CoarseToFineTeacher(model, {w: i for i, w in enumerate(words)}, top_k=3, class_weight=0.7,
                                  prior_temperature=0.1)
    objects, left, right = left_right_scene(np.random.default_rng(4))
    prepared = prepare_scene(objects, 2, 4)
    query = queries()("the chair to the left of the table")
    candidates, log_posterior = teacher.posterior(query, prepared)
    assert len(candidates) == 3 and set(candidates[:2].tolist()) == {left, right}   # both chairs first
    assert np.isclose(np.exp(log_posterior).sum(), 1.0)
    assert [len(g) for g in query.keyword_groups] == [1, 4, 1]                      # target, relation, anchor


def _examples(count: int, seed: int) -> GroundingData:
    rng, encoder = np.random.default_rng(seed), queries()
    scenes, examples = [], []
    for i in range(count):
        objects, left, right = left_right_scene(rng)
        prepared = prepare_scene(objects, LABELS.index("door"), 4)
        scenes.append(prepared)
        for side, target in (("left", left), ("right", right)):
            query = encoder(f"the chair to the {side} of the table")
            examples.append(GroundingExample(i, query, coarse_matrix(query, prepared), "multiple",
                                             objects.boxes[target], target))
    return GroundingData([f"s{i}" for i in range(count)], scenes, examples, {})


def test_left_of_the_table_is_learned_from_the_anchor_geometry(tmp_path):
    config = GroundingConfig(grounder_dim=32, heads=4, grounder_dropout=0.0, grounder_epochs=25, batch_size=16,
                             grounder_learning_rate=3e-3, neighbours=4, threads=1)
    trainer = GroundingTrainer(_examples(120, seed=5), config, "hash-16d", tmp_path, progress=False)
    grounder = DistilledGrounder(trainer.train_grounder(None, "supervised"))
    held_out = _examples(30, seed=6)
    hits = [int(np.argmax(grounder.scores(e.query, held_out.scenes[e.scene]))) == e.best_object
            for e in held_out.examples]
    # the two chairs look the same and both queries name the same classes: only geometry tells them apart
    assert np.mean(hits) >= 0.9
    assert (tmp_path / "supervised.pt").is_file() and (tmp_path / "supervised_log.csv").is_file()


def test_teacher_training_lowers_its_loss_and_its_labels_train_the_grounder(tmp_path):
    config = GroundingConfig(dim=32, heads=4, layers=1, grounder_dim=32, teacher_epochs=6, grounder_epochs=1,
                             batch_size=16, neighbours=4, top_k=3, threads=1)
    trainer = GroundingTrainer(_examples(20, seed=7), config, "hash-16d", tmp_path, progress=False)
    teacher = trainer.train_teacher(WordVectors(hash_vectors))
    log = np.genfromtxt(tmp_path / "teacher_log.csv", delimiter=",", names=True)
    assert log["loss"][-1] < log["loss"][0]
    targets = trainer.teacher_posteriors(teacher)
    assert sorted(targets) == list(range(40))
    assert all(np.isclose(p.sum(), 1.0) and len(c) == 3 for c, p in targets.values())
    trainer.train_grounder(targets)
    assert (tmp_path / "teacher.pt").is_file() and (tmp_path / "grounder.pt").is_file()


@pytest.mark.parametrize("bad", [{"dim": 30, "heads": 4}, {"grounder_dim": 30, "heads": 4}])
def test_grounding_config_checks_heads_divide_dim(bad):
    from ov3d_ros.config import ConfigError
    with pytest.raises(ConfigError, match="must divide"):
        GroundingConfig(**bad)
