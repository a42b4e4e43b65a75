"""Reproduce the shipped default grounder (ov3d_ros/weights/grounder_default.pt), MiniLM text space.

    .venv/bin/python training/train_default_grounder.py [--data data/benchmark] [--out runs/grounding]

Generates the benchmark if it is missing (`ov3d synth --benchmark`), runs `ov3d train grounding --stage all` with
the grounding section of config/pipeline.yaml on its train split (the teacher, the cross-fitted fold teachers, the
distilled grounder and the fully supervised upper bound; about 25 minutes on 2 cores), and exports the distilled
grounder as float16 weights into the package.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ov3d_ros.cli import main as ov3d
from ov3d_ros.config import default_config_path, load_pipeline_config
from ov3d_ros.grounding.engine import default_grounder_path
from ov3d_ros.grounding.grounders import export_grounding_model


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(default_config_path("pipeline.yaml")))
    parser.add_argument("--data", default="data/benchmark")
    parser.add_argument("--out", default="runs/grounding")
    parser.add_argument("--export-only", metavar="CHECKPOINT", help="skip training and export this grounder")
    args = parser.parse_args()
    source = Path(args.export_only or Path(args.out) / "grounder.pt")
    if not args.export_only:
        if not (Path(args.data) / "dataset.yaml").exists() and ov3d(["synth", "--benchmark", "--out", args.data]):
            return 1
        if ov3d(["train", "grounding", "--config", args.config, "--data", args.data, "--out", args.out]):
            return 1
    config = load_pipeline_config(args.config)
    provenance = {"data": "ov3d synth --benchmark (config/benchmark.yaml)", "method": "WS-3DVG distillation",
                  "command": "training/train_default_grounder.py",
                  "grounding": {k: v for k, v in dataclasses.asdict(config.grounding).items() if k != "data"}}
    print(f"exported {export_grounding_model(source, default_grounder_path(), provenance)}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
