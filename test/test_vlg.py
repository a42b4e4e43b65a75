"""3DSS-VLG: scene-level labels, masked pseudo labels and their file, the adapter, and a tiny run of all stages."""
from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import torch

from ov3d_ros.cli import main as ov3d
from ov3d_ros.config import GGSDConfig, PipelineConfig, StudentSection, VLGConfig
from ov3d_ros.data.openscene import DataError
from ov3d_ros.data.pseudo_labels import PseudoLabels, read_pseudo_labels, write_pseudo_labels
from ov3d_ros.data.scene_labels import dataset_scene_labels, parse_scene_labels, read_scene_labels
from ov3d_ros.models.adapter import Adapter, load_adapter, save_adapter
from ov3d_ros.training.checkpoint import load_checkpoint
from ov3d_ros.training.ggsd import masked_pseudo_labels
from ov3d_ros.training.vlg import VLGPipeline

CLASSES = ("wall", "floor", "bed", "desk", "lamp", "sofa")


def test_masking_never_assigns_an_absent_class():
    logits = torch.randn(2000, len(CLASSES)) * 3
    present = torch.tensor([True, False, True, False, False, True])
    logits[:100, 1] = 50.0                       # an absent class that would win everywhere it is this strong
    labels, confidence = masked_pseudo_labels(logits, present, 0.05)
    assert present[labels].all()
    assert (confidence > 0).all() and (confidence <= 1).all()
    expected = logits[:, present].argmax(1)
    assert (labels == torch.nonzero(present)[:, 0][expected]).all()
    with pytest.raises(ValueError, match="at least one"):
        masked_pseudo_labels(logits, torch.zeros(len(CLASSES), dtype=torch.bool), 0.05)


def test_unknown_scene_label_names_give_a_clear_error_with_a_suggestion(tmp_path):
    with pytest.raises(DataError, match=r"scene 's1': unknown label 'bedd'; did you mean 'bed'\?"):
        parse_scene_labels({"s1": ["wall", "bedd"]}, CLASSES)
    path = tmp_path / "labels.yaml"
    path.write_text("s1: [wall, couch]\ns2: desk, Lamp\n")
    labels = read_scene_labels(path, CLASSES, {"sofa": ("couch",)})
    assert labels["s1"].tolist() == [True, False, False, False, False, True]
    assert np.flatnonzero(labels["s2"]).tolist() == [3, 4]
    with pytest.raises(DataError, match="list or a comma-separated string"):
        parse_scene_labels({"s1": 3}, CLASSES)
    with pytest.raises(DataError, match="lists no class"):
        parse_scene_labels({"s1": []}, CLASSES)
    with pytest.raises(FileNotFoundError, match="no scene-label file"):
        read_scene_labels(tmp_path / "missing.yaml", CLASSES)


def test_scene_label_file_is_checked_against_the_dataset(tiny_dataset, tmp_path):
    dataset, _ = tiny_dataset
    first, second = dataset.scenes("train")
    from_truth = dataset_scene_labels(dataset, [first])
    assert from_truth[first].sum() >= 3           # walls, floor and furniture at least
    path = tmp_path / "labels.yaml"
    path.write_text(f"{first}: [wall]\n{first}x: [wall]\n")
    with pytest.raises(DataError, match=f"unknown scene '{first}x'; did you mean '{first}'"):
        dataset_scene_labels(dataset, [first], str(path))
    path.write_text(f"{first}: [wall]\n")
    with pytest.raises(DataError, match=f"no labels for scene.*{second}"):
        dataset_scene_labels(dataset, [first, second], str(path))


def test_pseudo_label_file_round_trips_and_rejects_labels_outside_the_scene(tmp_path):
    present = np.array([True, True, False, False, True, False])
    pseudo = PseudoLabels(np.array([0, 1, -1, 4]), np.array([0.9, 0.5, 0.0, 1.0]), CLASSES, present)
    write_pseudo_labels(tmp_path / "s.npz", pseudo)
    back = read_pseudo_labels(tmp_path / "s.npz")
    assert back.labels.tolist() == [0, 1, -1, 4] and back.classes == CLASSES
    assert back.labelled.tolist() == [True, True, False, True]
    np.testing.assert_allclose(back.confidence, [0.9, 0.5, 0.0, 1.0], atol=1e-3)
    with pytest.raises(DataError, match="outside the scene-level labels"):
        PseudoLabels(np.array([2]), np.array([0.5]), CLASSES, present)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a pseudo-label file"):
        read_pseudo_labels(tmp_path / "bad.npz")


def test_untrained_adapter_is_nearly_the_identity_and_round_trips(tmp_path):
    torch.manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(500, 64), dim=1)
    adapter = Adapter(64, 16, weight=0.05)
    adapted = adapter(rows)
    assert torch.allclose(adapted.norm(dim=1), torch.ones(500), atol=1e-5)
    assert (adapted * rows).sum(1).min() > 0.98
    assert torch.allclose(Adapter(64, 16, weight=0.0)(rows), rows, atol=1e-6)
    save_adapter(tmp_path / "a.pt", adapter, "random-64d")
    loaded, content = load_adapter(tmp_path / "a.pt")
    assert content["text_space"] == "random-64d" and not any(p.requires_grad for p in loaded.parameters())
    assert torch.allclose(loaded.map_rows(rows.half(), chunk=128), adapter(rows.half().float()), atol=1e-6)
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not an ov3d adapter checkpoint"):
        load_adapter(tmp_path / "other.pt")


def _tiny_config() -> PipelineConfig:
    ggsd = GGSDConfig(fused_map_share=0.0, crop_m=2.5, log_every=5, checkpoint_every=1000, learning_rate=0.01, threads=1, seed=3,
                      val_split="train", val_every=0, distill_steps=30, self_distill_steps=10)
    vlg = VLGConfig(adapter_steps=60, adapter_batch=2048, adapter_hidden=8, guidance_steps=40,
                    adapter_learning_rate=0.01)
    return PipelineConfig(student=StudentSection(preset="tiny", voxel_size_m=0.05), ggsd=ggsd, vlg=vlg)


def test_tiny_vlg_run_labels_within_the_scene_fits_the_adapter_and_guides_the_student(tiny_dataset, tmp_path):
    dataset, vocabulary = tiny_dataset
    pipeline = VLGPipeline(dataset, vocabulary, _tiny_config(), tmp_path, progress=False)
    scores = pipeline.generate_pseudo_labels().scores
    for scene in dataset.scenes("train"):
        pseudo = read_pseudo_labels(tmp_path / "pseudo" / f"{scene}.npz")
        truth = dataset_scene_labels(dataset, [scene])[scene]
        assert truth[pseudo.labels[pseudo.labelled]].all() and pseudo.labelled.mean() > 0.5
    assert scores.miou > 100.0 / len(dataset.classes)          # far above chance: the teacher knows the classes

    adapter = pipeline.train_adapter()
    rows = list(csv.DictReader(open(tmp_path / "adapter_log.csv")))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert float(rows[-1]["pseudo_label_agreement"]) > 0.5

    trainer = pipeline.guidance_trainer(adapter)
    final = trainer.run()
    log = list(csv.DictReader(open(tmp_path / "student" / "log.csv")))
    first, last = (np.mean([float(r["pixel"]) for r in part]) for part in (log[:2], log[-2:]))
    assert last < first                                          # the soft-guidance loss goes down
    assert float(log[-1]["superpoint"]) == 0.0 and load_checkpoint(final)["step"] == 40


def test_scene_label_masking_in_ggsd_voting_needs_and_uses_the_labels(tiny_dataset, tmp_path):
    dataset, vocabulary = tiny_dataset
    config = dataclasses.replace(_tiny_config().ggsd, scene_label_masking=True, distill_steps=4,
                                 self_distill_steps=3)
    from ov3d_ros.training.ggsd import GGSDTrainer
    with pytest.raises(ValueError, match="needs scene-level labels"):
        GGSDTrainer(dataset, vocabulary, config, StudentSection(preset="tiny", voxel_size_m=0.05), tmp_path,
                    progress=False)
    scenes = dataset.scenes("train")
    only_walls = {scene: np.eye(len(dataset.classes), dtype=bool)[dataset.classes.index("wall")] for scene in scenes}
    trainer = GGSDTrainer(dataset, vocabulary, config, StudentSection(preset="tiny", voxel_size_m=0.05), tmp_path,
                          progress=False, scene_labels=only_walls)
    trainer.step = config.distill_steps
    losses = trainer.train_step()
    # every pseudo label is "wall", so their agreement with the truth is the crop's share of wall points
    assert 0.0 < losses.pseudo_accuracy < 1.0


def test_cli_pseudo_stage_writes_labels_and_a_report_and_rejects_unknown_names(tiny_dataset, tmp_path, capsys,
                                                                               monkeypatch):
    dataset, vocabulary = tiny_dataset
    # the tiny dataset's features live in a random 16-d space: hand the command that space's vocabulary
    monkeypatch.setattr("ov3d_ros.evaluation.segmentation.dataset_vocabulary", lambda *_: vocabulary)
    config = tmp_path / "pipeline.yaml"
    config.write_text("ggsd:\n  val_split: train\n")
    labels = tmp_path / "labels.yaml"
    labels.write_text("".join(f"{scene}: [wall, floor, chiar]\n" for scene in dataset.scenes("train")))
    assert ov3d(["train", "vlg", "--stage", "pseudo", "--config", str(config), "--data", str(dataset.root),
                 "--out", str(tmp_path / "run"), "--labels", str(labels)]) != 0
    assert "unknown label 'chiar'; did you mean 'chair'?" in capsys.readouterr().err
    labels.write_text("".join(f"{scene}: [wall, floor, chair]\n" for scene in dataset.scenes("train")))
    assert ov3d(["train", "vlg", "--stage", "pseudo", "--config", str(config), "--data", str(dataset.root),
                 "--out", str(tmp_path / "run"), "--labels", str(labels)]) == 0
    pseudo = read_pseudo_labels(tmp_path / "run" / "pseudo" / f"{dataset.scenes('train')[0]}.npz")
    assert set(np.unique(pseudo.labels[pseudo.labelled])) <= {dataset.classes.index(n) for n in ("wall", "floor", "chair")}
    assert (tmp_path / "run" / "pseudo_val.json").exists()


TINY_BENCH_CONFIG = """
student: {preset: tiny, voxel_size_m: 0.05}
ggsd: {val_split: train, distill_steps: 6, self_distill_steps: 3, threads: 1, crop_m: 2.5, val_every: 0,
       log_every: 2, learning_rate: 0.01}
vlg: {adapter_steps: 10, adapter_batch: 512, adapter_hidden: 8}
"""


def test_bench_vlg_fills_every_row_of_its_table(tiny_dataset, tmp_path, monkeypatch):
    import json

    dataset, vocabulary = tiny_dataset
    monkeypatch.setattr("ov3d_ros.evaluation.segmentation.dataset_vocabulary", lambda *_: vocabulary)
    config = tmp_path / "pipeline.yaml"
    config.write_text(TINY_BENCH_CONFIG)
    assert ov3d(["bench", "vlg", "--data", str(dataset.root), "--out", str(tmp_path / "b"), "--config", str(config),
                 "--quiet"]) == 0
    table = json.loads((tmp_path / "b" / "vlg.json").read_text())
    assert [row["name"] for row in table["rows"]] == [
        "2D fusion", "pseudo labels (scene labels known)", "adapter only (2D)", "3DSS-VLG (student)",
        "GGSD (student)", "VLG targets + GGSD, scene-masked voting"]
    assert all(0.0 <= row["miou"] <= 100.0 for row in table["rows"]) and table["student_steps"] == 9
    assert (tmp_path / "b" / "vlg.png").stat().st_size > 0
    assert load_checkpoint(tmp_path / "b" / "combined" / "final.pt")["step"] == 9
