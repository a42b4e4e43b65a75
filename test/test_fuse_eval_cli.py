"""End to end through the CLI: `ov3d fuse` with a precomputed teacher, then `ov3d eval seg` on the fused features
and on a per-point feature file, in the real MiniLM text space."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from ov3d_ros.cli import main
from ov3d_ros.data.openscene import SceneCloud, read_fused, write_scene_pth
from ov3d_ros.data.scannet_export import write_frame
from ov3d_ros.evaluation.bench_fusion import synthetic_room
from ov3d_ros.language.encoders import MiniLMEncoder
from ov3d_ros.language.vocabulary import embed_with_templates

CLASSES = ["wall", "floor", "table"]
TEMPLATES = ["a {} in a scene"]


@pytest.fixture(scope="module")
def text_space() -> dict[str, np.ndarray]:
    vectors = embed_with_templates(MiniLMEncoder(), TEMPLATES, CLASSES)
    return dict(zip(CLASSES, vectors))


@pytest.fixture
def dataset_root(tmp_path, text_space):
    """One val scene of the benchmark room; floor points labelled floor, the rest wall. Each frame's
    precomputed map says "floor" everywhere, so every point that fusion sees must be predicted floor."""
    points, frames = synthetic_room(points=4000, frames=4, width=64, height=48, seed=3)
    labels = np.where(points[:, 2] < 0.01, 1, 0)
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump(
        {"classes": CLASSES, "ignore_label": 255, "splits": {"train": [], "val": ["room"]}}))
    write_scene_pth(tmp_path / "3d" / "val" / "room.pth",
                    SceneCloud("room", points, np.zeros((len(points), 3), np.uint8), labels))
    maps = tmp_path / "maps" / "room"
    maps.mkdir(parents=True)
    for frame in frames:
        write_frame(tmp_path / "2d" / "room", frame)
        np.save(maps / f"{frame.index}.npy", np.tile(text_space["floor"], (6, 8, 1)).astype(np.float32))
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "language": {"encoder": "minilm", "templates": TEMPLATES, "cache_dir": str(tmp_path / "cache")},
        "teacher": {"kind": "precomputed", "precomputed_dir": str(tmp_path / "maps"), "precomputed_layout": "hwc"}}))
    return tmp_path, labels


def test_fuse_then_eval_seg_on_fused_features(dataset_root, capsys):
    root, labels = dataset_root
    config = str(root / "pipeline.yaml")
    assert main(["fuse", "--data", str(root), "--config", config]) == 0
    fused = read_fused(root / "fused" / "precomputed" / "room_0.pt")
    seen = fused.mask_full.numpy()
    assert 0 < seen.sum() < len(seen)

    assert main(["eval", "seg", "--data", str(root), "--fused", "precomputed", "--json", str(root / "seg.json"),
                 "--config", config]) == 0
    report = json.loads((root / "seg.json").read_text())
    by_name = {c["name"]: c for c in report["classes"]}
    floor = labels == 1
    expected_floor_acc = 100.0 * seen[floor].sum() / floor.sum()
    assert by_name["floor"]["accuracy"] == pytest.approx(expected_floor_acc)
    assert by_name["wall"]["accuracy"] == 0.0
    assert by_name["table"]["iou"] is None          # absent from the ground truth
    assert (root / report["plots"]["confusion"]).stat().st_size > 1000
    assert "mIoU" in capsys.readouterr().out


def test_eval_seg_on_a_feature_file_scores_perfect_features_perfectly(dataset_root, text_space):
    root, labels = dataset_root
    features = np.stack([text_space[CLASSES[k]] for k in labels]).astype(np.float32)
    torch.save(torch.from_numpy(features), root / "room.pt")
    out = root / "perfect.json"
    assert main(["eval", "seg", "--data", str(root), "--features", str(root / "room.pt"), "--json", str(out),
                 "--config", str(root / "pipeline.yaml")]) == 0
    assert json.loads(out.read_text())["miou"] == pytest.approx(100.0)


def test_eval_seg_errors_are_one_line(dataset_root, capsys):
    root, _ = dataset_root
    assert main(["eval", "seg", "--data", str(root), "--fused", "nothing", "--json", str(root / "x.json"),
                 "--config", str(root / "pipeline.yaml")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ov3d eval seg: error:") and "\n" not in err


def test_fused_map_needs_a_student(dataset_root, capsys):
    root, _ = dataset_root
    assert main(["eval", "seg", "--data", str(root), "--features", str(root / "f.pt"), "--fused-map", "--json",
                 str(root / "x.json"), "--config", str(root / "pipeline.yaml")]) == 1
    assert "--fused-map apply to a student" in capsys.readouterr().err
