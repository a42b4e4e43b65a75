"""Superpoints: pure on rendered rooms, never across separate surfaces, deterministic, cached on disk."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import ov3d_ros.mapping.superpoints as superpoints_module
from ov3d_ros.config import SynthConfig
from ov3d_ros.data.synthetic.world import render_scene
from ov3d_ros.geometry.voxels import pack_coords, voxel_coords
from ov3d_ros.mapping.superpoints import (SlabSuperpoints, SuperpointCache, SuperpointParams, SuperpointTracker,
                                          compute_superpoints, estimate_normals, superpoint_labels,
                                          superpoint_purity)

SMALL = SynthConfig(frames=4, width=160, height=120, point_spacing_m=0.03, lidar=False, bag=False,
                    descriptions_per_object=0)
SPACING = 0.02


def _rectangle(rng: np.random.Generator, origin: tuple[float, float, float], u: tuple[float, float, float],
               v: tuple[float, float, float]) -> np.ndarray:
    """Uniform random points, one per SPACING^2, on the parallelogram origin + s u + t v, s, t in [0, 1]."""
    u_, v_ = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    count = round(np.linalg.norm(np.cross(u_, v_)) / SPACING ** 2)
    s, t = rng.random((2, count, 1))
    return np.asarray(origin) + s * u_ + t * v_


def _grey(xyz: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One grey colour with a little noise: only geometry can tell the surfaces apart."""
    return np.clip(128 + rng.normal(0.0, 4.0, xyz.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def rooms():
    return [render_scene(seed, SMALL).points for seed in (1, 6)]


def test_superpoints_are_pure_on_rendered_rooms(rooms):
    for points in rooms:
        ids = compute_superpoints(points.xyz, points.rgb)
        assert ids.dtype == np.int64 and ids.shape == (len(points.xyz),)
        sizes = np.bincount(ids)
        assert (sizes > 0).all(), "ids must be 0..S-1 without gaps"
        assert superpoint_purity(ids, points.labels) >= 0.95
        assert 50 <= len(sizes) <= len(ids) / 20, "hundreds of superpoints, not single points"
        assert sizes[sizes < 10].sum() < 0.01 * len(ids)


def test_two_parallel_walls_never_share_a_superpoint():
    rng = np.random.default_rng(0)
    walls = [_rectangle(rng, (x, 0.0, 0.0), (0.0, 2.0, 0.0), (0.0, 0.0, 1.5)) for x in (0.0, 1.0)]
    xyz = np.concatenate(walls)
    ids = compute_superpoints(xyz, _grey(xyz, rng))
    first, second = ids[:len(walls[0])], ids[len(walls[0]):]
    assert not set(first) & set(second)


def test_box_top_and_floor_never_share_a_superpoint():
    rng = np.random.default_rng(1)
    floor = _rectangle(rng, (0.0, 0.0, 0.0), (2.0, 0.0, 0.0), (0.0, 2.0, 0.0))
    x0, x1, h = 0.7, 1.2, 0.3
    floor = floor[~((floor[:, :2] > x0) & (floor[:, :2] < x1)).all(axis=1)]  # not under the box
    top = _rectangle(rng, (x0, x0, h), (x1 - x0, 0, 0), (0, x1 - x0, 0))
    sides = [_rectangle(rng, origin, edge, (0.0, 0.0, h)) for origin, edge in
             (((x0, x0, 0), (x1 - x0, 0, 0)), ((x0, x1, 0), (x1 - x0, 0, 0)),
              ((x0, x0, 0), (0, x1 - x0, 0)), ((x1, x0, 0), (0, x1 - x0, 0)))]
    xyz = np.concatenate([floor, top, *sides])
    ids = compute_superpoints(xyz, _grey(xyz, rng))
    floor_ids, top_ids = set(ids[:len(floor)]), set(ids[len(floor):len(floor) + len(top)])
    assert not floor_ids & top_ids
    surface = np.repeat(np.arange(6), [len(floor), len(top), *map(len, sides)])
    assert superpoint_purity(ids, surface) >= 0.95


def test_superpoints_are_deterministic(rooms):
    points = rooms[0]
    np.testing.assert_array_equal(compute_superpoints(points.xyz, points.rgb),
                                  compute_superpoints(points.xyz.copy(), points.rgb.copy()))


def test_small_and_empty_clouds():
    assert compute_superpoints(np.zeros((0, 3)), np.zeros((0, 3), np.uint8)).shape == (0,)
    np.testing.assert_array_equal(compute_superpoints(np.zeros((1, 3)), np.zeros((1, 3), np.uint8)), [0])
    with pytest.raises(ValueError, match="rgb"):
        compute_superpoints(np.zeros((4, 3)), np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="seed_resolution_m"):
        SuperpointParams(seed_resolution_m=0.0)


def test_normals_of_a_plane_and_a_sphere():
    rng = np.random.default_rng(2)
    plane = _rectangle(rng, (0.0, 0.0, 1.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
    assert (np.abs(estimate_normals(plane)[:, 2]) > 0.999).all()
    sphere = rng.normal(size=(3000, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    normals = estimate_normals(sphere, k=12)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
    assert np.median(np.abs(np.sum(normals * sphere, axis=1))) > 0.99


def test_purity_matches_a_brute_force_count():
    rng = np.random.default_rng(3)
    for _ in range(5):
        ids = rng.integers(0, 40, 600)
        labels = rng.choice([0, 1, 2, 3, 7, 255], 600, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
        pure = 0
        for superpoint in np.unique(ids):
            votes = Counter(labels[(ids == superpoint) & (labels != 255)].tolist())
            pure += max(votes.values(), default=0)
        assert superpoint_purity(ids, labels) == pytest.approx(pure / np.sum(labels != 255))
    assert superpoint_purity(np.array([0, 0, 1]), np.array([4, 4, 255])) == 1.0
    assert np.isnan(superpoint_purity(np.array([0, 1]), np.array([255, 255])))


def test_labels_voted_in_superpoints_match_a_hand_computation():
    # superpoint 5: points 0, 1 (weights 1, 3); superpoint 9: point 2 (valid) and point 3 (not valid)
    scores = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [9.0, 0.0]])
    ids = np.array([5, 5, 9, 9])
    labels, confidence = superpoint_labels(scores, ids, temperature=1.0, weights=np.array([1.0, 3.0, 1.0, 1.0]),
                                           valid=np.array([True, True, True, False]))
    p0 = np.exp([2.0, 0.0]) / np.exp([2.0, 0.0]).sum()          # point 0 alone says class 0 (0.88)
    p1 = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()          # point 1 says class 1 (0.73), with 3 times the weight
    patch = (p0 + 3 * p1) / 4
    assert labels.tolist() == [1, 1, 1, -1]                      # point 0 outvoted; point 3 has no feature
    assert confidence[:2] == pytest.approx([patch[1]] * 2)
    assert confidence[2] == pytest.approx(np.exp(3.0) / (1 + np.exp(3.0)))
    # unweighted, every point valid: point 0 (0.88) outweighs point 1 (0.73), and point 3's 9.0 carries patch 9
    assert superpoint_labels(scores, ids, temperature=1.0)[0].tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="temperature"):
        superpoint_labels(scores, ids, temperature=0.0)
    with pytest.raises(ValueError, match="superpoint ids"):
        superpoint_labels(scores, ids[:3], temperature=1.0)


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return len(np.unique(np.stack([a, b], axis=1), axis=0)) == len(np.unique(a)) == len(np.unique(b))


def test_tracker_recomputes_only_the_superpoints_where_the_map_changed(rooms):
    points = rooms[0]
    keys, first = np.unique(pack_coords(voxel_coords(points.xyz, 0.03)), return_index=True)
    xyz, rgb, labels = points.xyz[first].astype(np.float64), points.rgb[first], points.labels[first]
    params = SuperpointParams(min_points=4)
    tracker = SuperpointTracker(params, move_m=0.0075, colour_levels=12.0)
    start = tracker.update(keys, xyz, rgb)
    assert tracker.recomputed == len(keys) and _same_partition(start, compute_superpoints(xyz, rgb, params))

    np.testing.assert_array_equal(tracker.update(keys, xyz + 0.002, rgb), start)
    assert tracker.recomputed == 0, "moves under move_m keep every superpoint"

    corner = xyz[:, 0] < xyz[:, 0].min() + 0.5
    repainted = rgb.copy()
    repainted[corner] = 255 - repainted[corner]
    ids = tracker.update(keys, xyz, repainted)
    assert corner.sum() <= tracker.recomputed < 0.5 * len(keys)
    far = xyz[:, 0] > xyz[:, 0].min() + 1.5
    assert far.sum() > 0.3 * len(keys) and _same_partition(ids[far], start[far])
    assert (np.bincount(ids) > 0).all() and superpoint_purity(ids, labels) >= 0.9

    kept = ~corner
    ids = tracker.update(keys[kept], xyz[kept], repainted[kept])
    assert 0 < tracker.recomputed < 0.5 * kept.sum(), "cells beside removed ones are redone, the rest kept"
    assert _same_partition(ids[far[kept]], start[far])

    moved = xyz[kept] + 0.05
    ids = tracker.update(keys[kept], moved, rgb[kept])
    assert tracker.recomputed == kept.sum(), "a change of most of the map recomputes all of it"
    assert _same_partition(ids, compute_superpoints(moved, rgb[kept], params))
    with pytest.raises(ValueError, match="keys"):
        tracker.update(keys[:3], xyz[:2], rgb[:2])


def test_slabs_in_two_processes_cut_a_room_in_two_and_survive_a_dead_worker(rooms):
    points = rooms[1]
    single = compute_superpoints(points.xyz, points.rgb)
    slabs = SlabSuperpoints(SuperpointParams(), processes=2, min_points=1000)
    try:
        ids = slabs.compute(points.xyz, points.rgb)
        assert (np.bincount(ids) > 0).all() and superpoint_purity(ids, points.labels) >= 0.95
        assert len(np.unique(single)) <= len(np.unique(ids)) <= 1.1 * len(np.unique(single))
        halves = slabs._slabs(points.xyz.astype(np.float64))
        assert len(halves) == 2 and abs(len(halves[0]) - len(halves[1])) < 0.2 * len(ids)
        first, second = (set(np.unique(ids[half]).tolist()) for half in halves)
        assert first and second and not first & second, "no superpoint crosses the cut"
        np.testing.assert_array_equal(compute_superpoints(points.xyz[:10], points.rgb[:10]),
                                      slabs.compute(points.xyz[:10], points.rgb[:10]))   # small: computed here
        for process in list(slabs._pool._processes.values()):
            process.kill()
            process.join()
        with pytest.warns(UserWarning, match="worker process died"):
            again = slabs.compute(points.xyz, points.rgb)
        np.testing.assert_array_equal(again, single)
    finally:
        slabs.close()


def test_cache_hit_does_not_recompute_and_a_corrupt_file_is_replaced(rooms, tmp_path, monkeypatch):
    points = rooms[1]
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return compute_superpoints(*args, **kwargs)

    monkeypatch.setattr(superpoints_module, "compute_superpoints", counting)
    cache = SuperpointCache(tmp_path / "superpoints")
    first = cache.get("room", points.xyz, points.rgb)
    second = cache.get("room", points.xyz, points.rgb)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, second)
    files = list((tmp_path / "superpoints").iterdir())
    assert [f.name for f in files] == [cache.path("room", points.xyz, points.rgb, SuperpointParams()).name]
    assert files[0].name.startswith("room-") and files[0].suffix == ".npy"

    coarse = SuperpointParams(seed_resolution_m=0.8)
    assert cache.path("room", points.xyz, points.rgb, coarse) != files[0]
    moved = points.xyz + np.float32(0.01)
    assert cache.path("room", moved, points.rgb, SuperpointParams()) != files[0]

    files[0].write_bytes(b"not a numpy file")
    np.testing.assert_array_equal(cache.get("room", points.xyz, points.rgb), first)
    assert len(calls) == 2
    np.testing.assert_array_equal(np.load(files[0]), first)
    assert sorted(f.name for f in files[0].parent.iterdir()) == [files[0].name], "no temporary files left"
    with pytest.raises(ValueError, match="scene_id"):
        cache.get("../escape", points.xyz, points.rgb)


def test_superpoint_bench_scores_a_split_and_times_the_computation(tiny_dataset, tmp_path, capsys):
    from ov3d_ros.cli import main
    import json

    dataset, _ = tiny_dataset
    out = tmp_path / "sp.json"
    assert main(["bench", "superpoints", "--data", str(dataset.root), "--split", "train", "--points", "3000",
                 "--json", str(out)]) == 0
    assert "purity over the split" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert [row["scene"] for row in result["rows"]] == dataset.scenes("train")
    assert 0.5 < result["purity"] <= 1.0 and result["timing"]["points"] == 3000
