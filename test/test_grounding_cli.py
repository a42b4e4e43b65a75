"""End to end on a small synthetic dataset: `ov3d synth`, `ov3d train grounding` (every stage, a tiny budget) and
`ov3d eval ground` with every row, through the real CLI."""
from __future__ import annotations

import json

import yaml

from ov3d_ros.cli import main
from ov3d_ros.config import default_config_path


def test_train_then_evaluate_grounding_through_the_cli(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["synth", "--out", str(data), "--scenes", "2", "--seed", "31", "--frames", "6", "--width", "160",
                 "--height", "120", "--no-bag"]) == 0
    config = yaml.safe_load(default_config_path("pipeline.yaml").read_text())
    config["grounding"].update(teacher_epochs=2, grounder_epochs=2, dim=32, grounder_dim=32, threads=1)
    config_path = tmp_path / "pipeline.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert main(["train", "grounding", "--config", str(config_path), "--data", str(data), "--out", str(run)]) == 0
    for name in ("teacher", "grounder", "supervised"):
        assert (run / f"{name}.pt").is_file() and (run / f"{name}_log.csv").is_file()
    report = tmp_path / "ground.json"
    assert main(["eval", "ground", "--config", str(config_path), "--data", str(data), "--split", "train",
                 "--teacher", str(run / "teacher.pt"), "--grounder", str(run / "grounder.pt"),
                 "--supervised", str(run / "supervised.pt"), "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    descriptions = len(json.loads((data / "scanrefer" / "train.json").read_text()))
    assert set(result["methods"]) == {"random proposal of the predicted class", "coarse stage only",
                                      "coarse-to-fine teacher", "distilled grounder", "fully supervised grounder"}
    for groups in result["methods"].values():
        assert groups["overall"]["count"] == descriptions
        assert 0.0 <= groups["overall"]["acc@0.5"] <= groups["overall"]["acc@0.25"] <= 100.0
    assert result["ms_per_query"]["distilled grounder in PyTorch eager"] > 0
    assert 0.0 < result["proposal_recall"]["recall@0.25"] <= 1.0
    assert report.with_suffix(".png").is_file()
