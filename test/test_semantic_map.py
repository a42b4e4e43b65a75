"""The online semantic layer without ROS: incremental features match one pass over the map, new voxels are
labelled before the network runs, a colour student is told which colours are known, a new vocabulary relabels
without the network, memory rows are reused, and surfaces are thinned."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY_TEXT_DIM
from ov3d_ros.geometry.voxels import grid_offset, pack_coords, voxel_coords
from ov3d_ros.language.vocabulary import Vocabulary
from ov3d_ros.mapping.semantic_map import FeaturePool, SemanticMap, SemanticMapSettings
from ov3d_ros.mapping.sensor_points import LIDAR_GREY
from ov3d_ros.mapping.surface import plane_normals, project_to_surfaces
from ov3d_ros.models.inputs import floor_height
from ov3d_ros.models.student import Student, student_config

LABELS = ("floor", "wall", "box", "table")


def vocabulary(labels=LABELS, seed: int = 0) -> Vocabulary:
    rows = torch.nn.functional.normalize(torch.randn(len(labels), TINY_TEXT_DIM,
                                                     generator=torch.Generator().manual_seed(seed)), dim=1).numpy()
    return Vocabulary(tuple(labels), {}, rows, rows, np.arange(len(labels)), "random-16d")


def room(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 3 x 2 m floor, a wall and a box, sampled at 2 cm, with a little noise."""
    rng = np.random.default_rng(seed)
    g = np.arange(0, 3, 0.02) + 0.01                       # voxel centres: one point per 2 cm voxel
    floor = np.stack(np.meshgrid(g, g[:100], [0.01], indexing="ij"), -1).reshape(-1, 3)
    wall = np.stack(np.meshgrid(g, [2.01], np.arange(0, 1.2, 0.02) + 0.01, indexing="ij"), -1).reshape(-1, 3)
    h = np.arange(0, 0.4, 0.02) + 0.01
    box = np.concatenate([np.stack(np.meshgrid(h + 1.0, h + 0.8, [0.41], indexing="ij"), -1).reshape(-1, 3),
                          np.stack(np.meshgrid(h + 1.0, [0.81], h, indexing="ij"), -1).reshape(-1, 3)])
    xyz = np.concatenate([floor, wall, box]) + rng.normal(0, 0.003, (len(floor) + len(wall) + len(box), 3))
    _, first = np.unique(pack_coords(voxel_coords(xyz, 0.02)), return_index=True)   # one point per voxel,
    xyz = xyz[first]                                                                # in the map's key order
    return xyz.astype(np.float32), rng.integers(0, 255, (len(xyz), 3), dtype=np.uint8)


@pytest.fixture
def student() -> Student:
    torch.manual_seed(0)
    return Student(student_config("tiny")).eval()


def one_pass(student: Student, xyz: np.ndarray, settings: SemanticMapSettings) -> np.ndarray:
    points = project_to_surfaces(xyz, settings.surface_neighbours, settings.surface_iterations)
    with torch.no_grad():
        return student(torch.from_numpy(points)).numpy()


def settle(semantic: SemanticMap) -> int:
    calls = 0
    while semantic.stale_blocks:
        semantic.compute()
        calls += 1
    return calls


def test_incremental_features_equal_one_pass_over_the_map(student):
    settings = SemanticMapSettings(tile_m=8.0, margin_m=4.0)   # one tile, the whole room as context: exact
    xyz, rgb = room()
    semantic = SemanticMap(student, vocabulary(), settings=settings)
    first = xyz[:, 0] < 1.5
    semantic.update(xyz[first], rgb[first])
    settle(semantic)
    change = semantic.update(xyz, rgb)
    assert change.changed > 0 and semantic.stale_blocks > 0
    settle(semantic)
    assert np.allclose(semantic.snapshot()[0], xyz)
    expected = one_pass(student, xyz, settings)
    cosine = (semantic.features().astype(np.float32) * expected).sum(axis=1)
    assert cosine.min() > 0.995


def test_a_pass_projects_only_the_points_near_what_changed(student, monkeypatch):
    import ov3d_ros.mapping.semantic_map as semantic_map_module
    real, moved = semantic_map_module.project_to_surfaces, []
    monkeypatch.setattr(semantic_map_module, "project_to_surfaces", lambda xyz, *a, moving, **k:
                        moved.append((int(moving.sum()), len(xyz))) or real(xyz, *a, moving=moving, **k))
    settings = SemanticMapSettings(tile_m=8.0, margin_m=4.0, recompute_growth=0.0)   # every pass: every block
    xyz, rgb = room(8)
    semantic = SemanticMap(student, vocabulary(), settings=settings)
    semantic.update(xyz[:-50], rgb[:-50])
    settle(semantic)
    assert moved == [(len(xyz) - 50, len(xyz) - 50)]
    semantic.update(xyz, rgb)                                  # 50 points more, all within a few cm of each other
    settle(semantic)
    assert len(moved) == 2 and 50 <= moved[1][0] < len(xyz) / 10 and moved[1][1] == len(xyz)
    expected = one_pass(student, xyz, settings)
    assert (semantic.features().astype(np.float32) * expected).sum(axis=1).min() > 0.995


def test_tiles_cover_the_map_and_agree_with_one_pass(student):
    xyz, rgb = room(1)
    semantic = SemanticMap(student, vocabulary(), settings=SemanticMapSettings(block_m=0.5, tile_m=1.0,
                                                                                 margin_m=3.0))
    semantic.update(xyz, rgb)
    assert settle(semantic) > 1                              # several tiles
    labels = semantic.snapshot()[2]
    expected = vocabulary().classify(torch.from_numpy(one_pass(student, xyz, semantic.settings)))[0]
    assert (labels == expected.numpy()).mean() > 0.9


def test_a_map_no_wider_than_a_tile_is_one_pass(student):
    xyz, rgb = room(2)                                       # 3 m along x: six 0.5 m blocks, a 3 m tile
    semantic = SemanticMap(student, vocabulary(), settings=SemanticMapSettings(block_m=0.5, tile_m=3.0,
                                                                                 margin_m=3.0))
    semantic.update(xyz, rgb)
    assert settle(semantic) == 1


def test_new_voxels_are_labelled_by_their_neighbours_before_the_network_runs(student, monkeypatch):
    xyz, rgb = room(2)
    semantic = SemanticMap(student, vocabulary())
    old = xyz[:, 0] < 2.0
    semantic.update(xyz[old], rgb[old])
    settle(semantic)
    before = dict(zip(map(tuple, np.floor(semantic.snapshot()[0] / 0.02).astype(int)), semantic.snapshot()[2]))
    monkeypatch.setattr(student, "forward", lambda *a, **k: pytest.fail("update must not run the network"))
    semantic.update(xyz, rgb)
    mapped, _, labels, _, _ = semantic.snapshot()
    assert len(mapped) == len(xyz) and semantic.stale_blocks > 0
    new = mapped[:, 0] >= 2.0
    nearest_old = [before.get(tuple(v)) for v in np.floor(mapped[~new] / 0.02).astype(int)]
    assert list(labels[~new]) == nearest_old                  # kept voxels keep their labels
    assert set(labels[new]) <= set(before.values())


def test_the_network_sees_every_fine_point_and_a_voxel_gets_their_mean_feature(student, monkeypatch):
    """A map sampled every 1 cm for a 2 cm student: the network sees all its points, not one per voxel."""
    settings = SemanticMapSettings(tile_m=8.0, margin_m=4.0)   # one tile, the whole room as context: exact
    g = np.arange(0, 2, 0.01) + 0.005                         # one point per 1 cm cell
    floor = np.stack(np.meshgrid(g, g[:120], [0.005], indexing="ij"), -1).reshape(-1, 3)
    h = np.arange(0, 0.3, 0.01) + 0.005
    box = np.stack(np.meshgrid(h + 0.6, h + 0.5, [0.305], indexing="ij"), -1).reshape(-1, 3)
    xyz = np.concatenate([floor, box]).astype(np.float32)
    run_on_map, seen = student.run_on_map, []
    monkeypatch.setattr(student, "run_on_map", lambda points, *a, **k: seen.append(len(points)) or
                        run_on_map(points, *a, **k))
    semantic = SemanticMap(student, vocabulary(), settings=settings)
    semantic.update(xyz, np.zeros_like(xyz, dtype=np.uint8))
    settle(semantic)
    voxels = np.unique(pack_coords(voxel_coords(xyz, 0.02)), return_inverse=True)[1].reshape(-1)
    assert seen == [len(xyz)] and len(semantic) == voxels.max() + 1
    with torch.no_grad():
        points = project_to_surfaces(xyz, settings.surface_neighbours, settings.surface_iterations)
        per_point = run_on_map(points, None, offset=grid_offset(xyz, 0.02))
    expected = torch.nn.functional.normalize(torch.zeros((len(semantic), per_point.shape[1])).index_add_(
        0, torch.from_numpy(voxels), per_point), dim=1).numpy()
    assert (semantic.features().astype(np.float32) * expected).sum(axis=1).min() > 0.995
    coarse = SemanticMap(student, vocabulary(), settings=SemanticMapSettings(tile_m=8.0, margin_m=4.0,
                                                                             input_subdivision=1))
    coarse.update(xyz, np.zeros_like(xyz, dtype=np.uint8))
    settle(coarse)
    assert seen[-1] == len(semantic)                          # one point per voxel


def test_a_colour_student_is_fed_uncoloured_voxels_as_unknown(monkeypatch):
    torch.manual_seed(0)
    student = Student(student_config("tiny", inputs=("colour", "height"))).eval()
    settings = SemanticMapSettings(tile_m=8.0, margin_m=4.0)   # one tile, the whole room as context: exact
    xyz, rgb = room(5)
    known = xyz[:, 1] < 1.0                                   # the camera saw the floor; LiDAR alone the rest
    rgb[~known] = LIDAR_GREY
    run_on_map, flags = student.run_on_map, []

    def recording(*args, colour_known=None, **kwargs):
        flags.append(colour_known)
        return run_on_map(*args, colour_known=colour_known, **kwargs)

    monkeypatch.setattr(student, "run_on_map", recording)
    semantic = SemanticMap(student, vocabulary(), settings=settings)
    semantic.update(xyz, rgb, known)
    settle(semantic)
    assert flags and all(np.array_equal(f, known) for f in flags)   # each tile sees the whole room
    points = project_to_surfaces(xyz, settings.surface_neighbours, settings.surface_iterations)
    with torch.no_grad():
        expected = run_on_map(points, rgb, floor_height(xyz[:, 2]), colour_known=known,
                              offset=grid_offset(xyz, student.config.voxel_size)).numpy()
    assert (semantic.features().astype(np.float32) * expected).sum(axis=1).min() > 0.995


def test_a_voxel_whose_colour_becomes_known_changes_for_colour_students_only(student):
    torch.manual_seed(0)
    colour_student = Student(student_config("tiny", inputs=("colour",))).eval()
    xyz, rgb = room(6)
    known = xyz[:, 1] < 1.0
    for model, changed in ((colour_student, int((~known).sum())), (student, 0)):
        semantic = SemanticMap(model, vocabulary())
        semantic.update(xyz, rgb, known)
        settle(semantic)
        change = semantic.update(xyz, rgb)                    # the camera now sees every voxel, in the same colour
        assert change.changed == changed and (semantic.stale_blocks > 0) == (changed > 0)


def test_set_vocabulary_relabels_without_the_network(student, monkeypatch):
    xyz, rgb = room(3)
    semantic = SemanticMap(student, vocabulary())
    semantic.update(xyz, rgb)
    settle(semantic)
    features = semantic.features().astype(np.float32)
    monkeypatch.setattr(student, "forward", lambda *a, **k: pytest.fail("relabelling must not run the network"))
    other = vocabulary(("chair", "lamp", "rug"), seed=5)
    semantic.set_vocabulary(other)
    _, _, labels, scores, names = semantic.snapshot()
    assert names == ("chair", "lamp", "rug")
    assert np.array_equal(labels, other.classify(torch.from_numpy(features))[0].numpy())
    assert np.all((scores > 0) & (scores <= 1))
    with pytest.raises(ValueError, match="16-d"):
        semantic.set_vocabulary(Vocabulary(("a",), {}, np.ones((1, 8)), np.ones((1, 8)), np.zeros(1, np.int64), "x"))


def test_removed_voxels_give_their_rows_back():
    pool = FeaturePool(4)
    first = pool.allocate(10)
    assert list(first) == list(range(10)) and len(pool.rows) >= 10
    pool.release(first[:4])
    again = pool.allocate(6)
    assert set(first[:4]) <= set(again) and len(set(again)) == 6
    assert max(again) < 12


def test_objects_keep_their_instance_ids(student):
    xyz, rgb = room(4)
    semantic = SemanticMap(student, vocabulary())
    semantic.update(xyz, rgb)
    settle(semantic)
    objects, ids = semantic.objects()
    assert len(objects) >= 1 and len(set(ids)) == len(ids)
    again, ids_again = semantic.objects()
    assert np.array_equal(ids, ids_again)
    assert objects.counts.sum() <= len(xyz) and objects.features.shape[1] == TINY_TEXT_DIM


def test_blocks_being_computed_still_count_as_stale(student, monkeypatch):
    xyz, rgb = room(5)
    semantic = SemanticMap(student, vocabulary())
    semantic.update(xyz, rgb)
    queued, seen = semantic.stale_blocks, []
    real = student.run_on_map
    monkeypatch.setattr(student, "run_on_map", lambda *a, **k: seen.append(semantic.stale_blocks) or real(*a, **k))
    semantic.compute()
    assert queued > 0 and seen == [queued] and semantic.stale_blocks == 0


def test_a_cancelled_objects_pass_publishes_and_votes_nothing(student):
    xyz, rgb = room(4)
    semantic = SemanticMap(student, vocabulary())
    semantic.update(xyz, rgb)
    settle(semantic)
    version, labels = semantic.version, semantic.snapshot()[2].copy()
    asked = []
    assert semantic.objects(lambda: asked.append(1) or len(asked) >= 2) is None
    assert len(asked) == 2 and semantic.objects_version == -1 and semantic.version == version
    np.testing.assert_array_equal(semantic.snapshot()[2], labels)
    objects, ids = semantic.objects(lambda: False)
    assert len(objects) >= 1 and semantic.objects_version >= version and list(ids) == list(range(len(ids)))


def test_surfaces_get_thin_and_planes_stay_put():
    rng = np.random.default_rng(0)
    plane = np.c_[rng.uniform(0, 2, (4000, 2)), np.zeros(4000)]
    noisy = plane + np.c_[np.zeros((4000, 2)), rng.normal(0, 0.02, 4000)]
    thinned = project_to_surfaces(noisy, neighbours=16, iterations=2)
    assert thinned[:, 2].std() < noisy[:, 2].std() / 3
    assert np.allclose(project_to_surfaces(plane), plane, atol=1e-6)
    assert np.array_equal(project_to_surfaces(plane[:2]), plane[:2].astype(np.float32))


def test_plane_normals_are_the_smallest_eigenvectors_and_degenerate_patches_get_a_unit_normal():
    rng = np.random.default_rng(3)
    patches = rng.normal(size=(500, 16, 3)) * rng.uniform(0.001, 0.1, (500, 1, 3))     # flat to round
    patches = patches @ np.linalg.qr(rng.normal(size=(3, 3)))[0]
    spread = patches - patches.mean(axis=1, keepdims=True)
    normals = plane_normals(torch.from_numpy(spread).float()).double().numpy()
    _, vectors = np.linalg.eigh(np.einsum("nki,nkj->nij", spread, spread))
    assert np.abs(np.sum(normals * vectors[:, :, 0], axis=1)).min() > 0.999
    line = np.zeros((3, 16, 3), np.float32)
    line[0, :, 0] = np.linspace(-1, 1, 16)                  # along x, along x = y, and a single point
    line[1, :, 0] = line[1, :, 1] = np.linspace(-1, 1, 16)
    degenerate = plane_normals(torch.from_numpy(line)).numpy()
    assert np.allclose(np.linalg.norm(degenerate, axis=1), 1.0)
    assert abs(degenerate[0, 0]) < 1e-6 and abs(degenerate[1, 0] + degenerate[1, 1]) < 1e-6


def test_projecting_a_subset_moves_it_as_projecting_everything_does():
    rng = np.random.default_rng(1)
    xyz = np.c_[rng.uniform(0, 1, (3000, 2)), rng.normal(0, 0.01, 3000)]
    moving = xyz[:, 0] < 0.3
    everything = project_to_surfaces(xyz, neighbours=12, iterations=3)
    subset = project_to_surfaces(xyz, neighbours=12, iterations=3, moving=moving)
    assert np.allclose(subset[moving], everything[moving], atol=1e-6)
    assert np.array_equal(subset[~moving], xyz[~moving].astype(np.float32))
    assert not np.allclose(subset[moving], xyz[moving], atol=1e-3)


@pytest.mark.parametrize("voting", [True, False])
def test_objects_vote_the_labels_of_isolated_voxels_inside_their_superpoint(student, monkeypatch, voting):
    xyz, _ = room(5)
    rgb = np.full((len(xyz), 3), 128, np.uint8)                        # evenly coloured: one patch per surface
    words = vocabulary()
    floor, box = words.label_embeddings[0], words.label_embeddings[2]
    on_floor = xyz[:, 2] < 0.05
    # the "network" calls the floor floor, except for a sparse grid of isolated voxels it calls box
    speckle = on_floor & (np.floor(xyz[:, 0] / 0.3) % 2 == 0) & (np.floor(xyz[:, 1] / 0.3) % 2 == 0) & \
        (np.abs((xyz[:, 0] % 0.3) - 0.15) < 0.04) & (np.abs((xyz[:, 1] % 0.3) - 0.15) < 0.04)

    def fake_network(points, inputs=None, per_voxel=False):   # one 'voxel' per point
        near = torch.from_numpy(np.asarray(
            np.linalg.norm(points.numpy()[:, None, :2] - xyz[speckle][None, :, :2], axis=2).min(axis=1) < 0.03))
        low = points[:, 2] < 0.05
        out = torch.from_numpy(np.where(low.numpy()[:, None], floor, words.label_embeddings[1])).float()
        out[low & near] = torch.from_numpy(box).float()
        return (out, torch.arange(len(out))) if per_voxel else out
    monkeypatch.setattr(student, "forward", fake_network)
    semantic = SemanticMap(student, words, settings=SemanticMapSettings(superpoint_voting=voting))
    semantic.update(xyz, rgb)
    settle(semantic)
    points, _, labels, _, _ = semantic.snapshot()
    box_side = (np.abs(points[:, 0] - 1.2) < 0.3) & (np.abs(points[:, 1] - 1.0) < 0.3)
    floor_voxels = (points[:, 2] < 0.05) & (points[:, 1] < 1.9) & ~box_side   # not the wall's or box's feet
    assert 0 < np.mean(labels[floor_voxels] == 2) < 0.2                # the network's speckle, before objects
    version = semantic.version
    semantic.objects()
    assert semantic.objects_version == semantic.version             # the objects describe the map as voted
    _, _, labels, scores, _ = semantic.snapshot()
    if voting:
        assert np.all(labels[floor_voxels] == 0) and semantic.version > version
        assert np.all((scores > 0) & (scores <= 1))
    else:
        assert 0 < np.mean(labels[floor_voxels] == 2) < 0.2 and semantic.version == version


def test_objects_recompute_superpoints_only_where_the_map_changed(student, monkeypatch):
    import ov3d_ros.mapping.superpoints as superpoints_module
    calls = []
    real = superpoints_module.compute_superpoints
    monkeypatch.setattr(superpoints_module, "compute_superpoints", lambda xyz, rgb, params, *args:
                        calls.append(len(xyz)) or real(xyz, rgb, params, *args))
    xyz, rgb = room(2)
    semantic = SemanticMap(student, vocabulary())
    semantic.update(xyz, rgb)
    settle(semantic)
    first, _ = semantic.objects()
    again, _ = semantic.objects()                                   # same points: the superpoints are reused
    assert len(calls) == 1 and np.allclose(first.centres, again.centres)
    corner = (xyz[:, 0] < 0.5) & (xyz[:, 1] < 0.5)
    repainted = rgb.copy()
    repainted[corner] = 255 - repainted[corner]
    semantic.update(xyz, repainted)                                 # a corner repainted: only its superpoints
    settle(semantic)
    semantic.objects()
    assert len(calls) == 2 and 0 < calls[1] < calls[0] / 4
    semantic.update(xyz[: len(xyz) // 2], rgb[: len(xyz) // 2])     # half the room left: computed anew
    settle(semantic)
    semantic.objects()
    assert len(calls) == 3 and calls[2] < calls[0]


@pytest.mark.parametrize("min_points, kept", [(4, True), (20, False)])
def test_the_vote_keeps_a_small_object_with_superpoints_sized_for_the_objects_map(student, monkeypatch, min_points,
                                                                                 kept):
    """A red 8 x 8 cm mat on a grey floor: four cells of the 4 cm objects map, its own superpoint unless the
    smallest superpoint is larger than that."""
    xyz, _ = room(7)
    words = vocabulary()
    mat = (np.abs(xyz[:, 0] - 1.5) < 0.04) & (np.abs(xyz[:, 1] - 0.4) < 0.04) & (xyz[:, 2] < 0.05)
    rgb = np.full((len(xyz), 3), 128, np.uint8)
    rgb[mat] = (200, 20, 20)

    def fake_network(points, inputs=None, per_voxel=False):   # one 'voxel' per point
        on_mat = (np.abs(points[:, 0].numpy() - 1.5) < 0.04) & (np.abs(points[:, 1].numpy() - 0.4) < 0.04) & \
            (points[:, 2].numpy() < 0.05)
        out = torch.from_numpy(np.where(on_mat[:, None], words.label_embeddings[2], words.label_embeddings[0])).float()
        return (out, torch.arange(len(out))) if per_voxel else out
    monkeypatch.setattr(student, "forward", fake_network)
    semantic = SemanticMap(student, words, settings=SemanticMapSettings(superpoint_min_points=min_points))
    semantic.update(xyz, rgb)
    settle(semantic)
    semantic.objects()
    points, _, labels, _, _ = semantic.snapshot()
    centre = (np.abs(points[:, 0] - 1.5) < 0.02) & (np.abs(points[:, 1] - 0.4) < 0.02) & (points[:, 2] < 0.05)
    assert centre.any() and np.all(labels[centre] == 2) == kept
