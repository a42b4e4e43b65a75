"""Reproduce the shipped default student (ov3d_ros/weights/student_default.pt), MiniLM text space.

    .venv/bin/python training/train_default_student.py [--data data/benchmark] [--out runs/ggsd_default]

Generates the benchmark if it is missing (`ov3d synth --benchmark`), trains full GGSD on its train split with the
settings and budget of config/pipeline.yaml (`ov3d train ggsd`), and exports the final checkpoint as float16
weights into the package. The ablation's "full GGSD" row (`ov3d bench ggsd-ablation`) trains the same run.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ov3d_ros.cli import main as ov3d
from ov3d_ros.config import default_config_path, load_pipeline_config
from ov3d_ros.training.checkpoint import default_checkpoint_path, export_student


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(default_config_path("pipeline.yaml")))
    parser.add_argument("--data", default="data/benchmark")
    parser.add_argument("--out", default="runs/ggsd_default")
    parser.add_argument("--export-only", metavar="CHECKPOINT",
                        help="skip training and export this checkpoint (e.g. the ablation's full GGSD row)")
    args = parser.parse_args()
    source = Path(args.export_only) if args.export_only else Path(args.out) / "final.pt"
    if not args.export_only:
        if not (Path(args.data) / "dataset.yaml").exists() and ov3d(["synth", "--benchmark", "--out", args.data]):
            return 1
        if ov3d(["train", "ggsd", "--config", args.config, "--data", args.data, "--out", args.out]):
            return 1
    ggsd = load_pipeline_config(args.config).ggsd
    provenance = {"data": "ov3d synth --benchmark (config/benchmark.yaml)", "method": "GGSD",
                  "command": "training/train_default_student.py",
                  "ggsd": {k: v for k, v in dataclasses.asdict(ggsd).items() if k != "data"}}
    target = export_student(source, default_checkpoint_path(), provenance)
    print(f"exported {target}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
