"""The student's recipe: named per-point inputs, the vocabulary losses against hand computations, a tiny run that
fits its scenes, and the recipe benchmark."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ov3d_ros.config import ConfigError, GGSDConfig, StudentSection
from ov3d_ros.geometry.voxels import grid_offset
from ov3d_ros.models.inputs import floor_height, input_channels, point_inputs
from ov3d_ros.models.student import Student, student_config
from ov3d_ros.training.checkpoint import load_checkpoint, load_student, save_checkpoint
from ov3d_ros.training.ggsd import GGSDTrainer, superpoint_vocabulary_loss, vocabulary_loss


def test_vocabulary_loss_equals_a_hand_computed_weighted_cross_entropy():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    voxels = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    point_to_voxel = torch.tensor([0, 0, 1, 1])
    labels = torch.tensor([0, 1, 1, -1])                 # the last point has no label: not counted
    weights = torch.tensor([1.0, 2.0, 3.0, 5.0])
    t = 0.5

    def nll(f: list[float], label: int) -> float:
        logits = [(f[0] * c[0] + f[1] * c[1]) / t for c in text.tolist()]
        return math.log(sum(math.exp(v) for v in logits)) - logits[label]

    expected = (1 * nll([1, 0], 0) + 2 * nll([1, 0], 1) + 3 * nll([0.6, 0.8], 1)) / 6
    got = vocabulary_loss(voxels, text, labels, t, weights, point_to_voxel)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    unweighted = (nll([1, 0], 0) + nll([1, 0], 1) + nll([0.6, 0.8], 1)) / 3
    assert float(vocabulary_loss(voxels, text, labels, t, None, point_to_voxel)) == pytest.approx(unweighted, rel=1e-6)
    assert float(vocabulary_loss(voxels, text, torch.full((4,), -1), t, None, point_to_voxel)) == 0.0


def test_superpoint_vocabulary_loss_classifies_superpoint_means_against_their_majority():
    text = torch.eye(3)
    points = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2, 0.0], [0.8, 0.0, 0.3], [0.0, 1.0, 0.0],
                                                         [0.1, 0.9, 0.1], [0.0, 0.0, 1.0]]), dim=1)
    superpoints = torch.tensor([0, 0, 1, 1, 1])
    labels = torch.tensor([0, 0, 1, 2, 1])               # superpoint 1: majority class 1
    mean0 = torch.nn.functional.normalize(points[:2].sum(0), dim=0)
    mean1 = torch.nn.functional.normalize(points[2:].sum(0), dim=0)
    t = 0.1
    expected = (torch.nn.functional.cross_entropy((mean0 @ text.T / t)[None], torch.tensor([0]))
                + torch.nn.functional.cross_entropy((mean1 @ text.T / t)[None], torch.tensor([1]))) / 2
    got = superpoint_vocabulary_loss(points, text, labels, superpoints, t)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_point_inputs_give_centred_colour_with_a_known_flag_and_height_above_the_floor():
    xyz = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.5], [0.0, 1.0, 2.0]], np.float32)
    rgb = np.array([[255, 0, 128], [0, 0, 0], [255, 255, 255]], np.uint8)
    both = point_inputs(["height", "colour"], xyz, rgb, floor_z=-0.5)
    assert both.shape == (3, 5) and input_channels(["colour", "height"]) == 6
    np.testing.assert_allclose(both[:, :3].numpy(), rgb / 255.0 - 0.5, atol=1e-6)   # colour first (canonical)
    np.testing.assert_allclose(both[:, 3].numpy(), 1.0)
    np.testing.assert_allclose(both[:, 4].numpy(), [0.5, 1.0, 2.5], atol=1e-6)
    blind = point_inputs(["colour"], xyz, None)
    assert (blind == 0).all()                                                      # a LiDAR-only map
    assert point_inputs([], xyz, rgb) is None
    floor = np.concatenate([np.full(990, 0.3), np.full(10, -3.0), np.linspace(0.3, 2.5, 1000)])
    assert floor_height(floor) == pytest.approx(0.3, abs=0.05)                        # a few stray points below
    with pytest.raises(ValueError, match="distinct names"):
        point_inputs(["colour", "colour"], xyz, rgb)
    with pytest.raises(ConfigError):
        StudentSection(inputs=["normals?"])


def test_a_student_declares_its_inputs_in_the_checkpoint_and_runs_with_or_without_colour(tmp_path):
    student = Student(student_config("tiny", inputs=("colour", "height"))).eval()
    save_checkpoint(tmp_path / "s.pt", student, "random-16d")
    loaded, _ = load_student(tmp_path / "s.pt")
    assert loaded.config.inputs == ("colour", "height") and loaded.config.in_channels == 6
    xyz = np.random.default_rng(0).random((500, 3)).astype(np.float32) * 2
    rgb = np.random.default_rng(1).integers(0, 256, (500, 3)).astype(np.uint8)
    with torch.no_grad():
        coloured, blind = loaded.run_on_map(xyz, rgb), loaded.run_on_map(xyz, None)
    assert coloured.shape == blind.shape == (500, 16)
    assert not torch.allclose(coloured, blind)
    legacy = {"format": "ov3d-student-1", "text_space": "x", "model": {},
              "student_config": {"channels": [8], "blocks": [1], "out_dim": 16, "voxel_size": 0.05, "in_channels": 4}}
    torch.save(legacy, tmp_path / "legacy.pt")
    with pytest.raises(ValueError, match="retrain"):
        load_student(tmp_path / "legacy.pt")


def test_a_tiny_vocabulary_run_fits_its_two_scenes(tiny_dataset, tmp_path):
    dataset, vocabulary = tiny_dataset
    config = GGSDConfig(distill_steps=120, self_distillation=False, crop_m=0.0, learning_rate=0.01, threads=2,
                        seed=0, val_every=0, superpoint_loss=False, center_text_space=False, fused_map_share=0.0)
    student = StudentSection(preset="tiny", voxel_size_m=0.08)
    trainer = GGSDTrainer(dataset, vocabulary, config, student, tmp_path, progress=False)
    before = trainer.validate(dataset.scenes("train"))
    trainer.run()
    after = trainer.validate(dataset.scenes("train"))
    chance = 100.0 / after["classes_present"]
    assert after["miou"] > 1.5 * chance and after["miou"] > before["miou"] + 5, (before, after)
    assert after["macc"] > 2.5 * chance


def test_recipe_bench_trains_every_row_for_the_budget_and_writes_the_table(tiny_dataset, tmp_path, monkeypatch):
    from ov3d_ros.cli import main

    dataset, vocabulary = tiny_dataset
    monkeypatch.setattr("ov3d_ros.evaluation.segmentation.dataset_vocabulary", lambda *_: vocabulary)
    config = tmp_path / "pipeline.yaml"
    config.write_text("student: {preset: tiny, voxel_size_m: 0.08}\n"
                      "ggsd: {val_split: train, threads: 1, log_every: 2}\n")
    rows = ["ground truth (upper bound)", "config"]                 # the bench's order
    assert main(["bench", "student-recipes", "--data", str(dataset.root), "--out", str(tmp_path / "r"), "--config",
                 str(config), "--minutes", "0.05", "--rows", *rows, "--train-scenes", "1", "--quiet"]) == 0
    table = json.loads((tmp_path / "r" / "recipes.json").read_text())
    assert [row["name"] for row in table["rows"]] == rows
    for row in table["rows"]:
        assert row["steps"] >= 1 and row["seconds_per_step"] * row["steps"] >= 3.0
        assert 0.0 <= row["val"]["miou"] <= 100.0 and 0.0 <= row["val"]["map_miou"] <= 100.0 and row["curve"]
    assert (tmp_path / "r" / "recipes.png").stat().st_size > 0
    assert main(["bench", "student-recipes", "--data", str(dataset.root), "--rows", "nonsense"]) != 0


def test_train_ggsd_minutes_trains_for_that_time_and_resumes_finished(tiny_dataset, tmp_path, monkeypatch):
    from ov3d_ros.cli import main

    dataset, vocabulary = tiny_dataset
    monkeypatch.setattr("ov3d_ros.evaluation.segmentation.dataset_vocabulary", lambda *_: vocabulary)
    config = tmp_path / "pipeline.yaml"
    config.write_text("student: {preset: tiny, voxel_size_m: 0.08}\n"
                      "ggsd: {val_split: train, val_every: 0, threads: 1, distill_steps: 100000}\n")
    out = tmp_path / "run"
    command = ["train", "ggsd", "--data", str(dataset.root), "--out", str(out), "--config", str(config),
               "--minutes", "0.04"]
    assert main(command) == 0
    final = load_checkpoint(out / "final.pt")
    assert 2.4 <= final["elapsed_s"] < 10.0 and 1 <= final["step"] < 100000
    assert final["train_config"]["time_budget_s"] == pytest.approx(2.4)
    assert main(command) == 0                                       # resumed: the budget is spent, nothing to do
    assert load_checkpoint(out / "final.pt")["step"] == final["step"]


def test_grid_offset_puts_a_noisy_floor_and_wall_mid_voxel():
    rng = np.random.default_rng(0)
    floor = np.c_[rng.uniform(0, 4, (4000, 2)), rng.normal(0.0, 0.004, 4000)]
    wall = np.c_[rng.normal(1.0, 0.004, 4000), rng.uniform(0, 4, 4000), rng.uniform(0, 2.5, 4000)]
    offset = grid_offset(np.r_[floor, wall], 0.05)
    assert offset[0] == pytest.approx(0.025) and offset[2] == pytest.approx(0.025)
    layers = np.unique(np.floor((floor[:, 2] + offset[2]) / 0.05))
    assert len(layers) == 1 and len(np.unique(np.floor(floor[:, 2] / 0.05))) == 2    # one layer, not two
    raised = grid_offset(np.r_[floor, wall] + [0.0, 0.0, 0.0125], 0.05)
    assert raised[2] == pytest.approx(0.0125)
    assert np.all((offset >= 0) & (offset < 0.05)) and not grid_offset(np.zeros((0, 3)), 0.05).any()


def test_a_map_moved_by_grid_phases_gets_the_same_features():
    """Moved by phases of a voxel plus whole coarsest voxels (16 student voxels: the strided levels group voxels
    by their coordinates' parity), a map is voxelised the same way and gets the same features."""
    student = Student(student_config("tiny", inputs=("colour", "height"))).eval()
    rng = np.random.default_rng(2)
    xyz = np.r_[np.c_[rng.uniform(0, 2, (3000, 2)), rng.normal(0, 0.004, 3000)],
                np.c_[rng.uniform(0.5, 1.0, (800, 2)), rng.uniform(0, 0.7, 800)]].astype(np.float32)
    rgb = rng.integers(0, 256, (len(xyz), 3)).astype(np.uint8)
    voxel = student.config.voxel_size
    moved = xyz + (np.array([3, 5, 7]) * voxel / 16 + np.array([16, -32, 48]) * voxel).astype(np.float32)
    with torch.no_grad():
        here, there = student.run_on_map(xyz, rgb), student.run_on_map(moved, rgb)
        unaligned = student.run_on_map(moved, rgb, offset=np.zeros(3))
    assert torch.allclose(here, there, atol=1e-4)
    assert not torch.allclose(here, unaligned, atol=1e-2)
