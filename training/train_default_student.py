"""Reproduce the shipped default student (ov3d_ros/weights/student_default.pt), MiniLM text space.

    .venv/bin/python training/train_default_student.py [--data data/benchmark] [--out runs/default_student]

Generates the benchmark if it is missing (`ov3d synth --benchmark`), trains the student with the method below and
the settings and budget of config/pipeline.yaml on its train split, and exports the final checkpoint as float16
weights into the package. METHOD is the best student of the last measured comparison on the val split
(`ov3d bench ggsd-ablation`, `ov3d bench vlg`; the numbers are in the README).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ov3d_ros.cli import main as ov3d
from ov3d_ros.config import default_config_path, load_pipeline_config
from ov3d_ros.training.checkpoint import default_checkpoint_path, export_student

METHOD = "vlg"   # "vlg" (3DSS-VLG soft guidance), "ggsd" (full GGSD) or "distill" (pixel-point distillation)
COMMANDS = {"vlg": ["train", "vlg"], "ggsd": ["train", "ggsd"], "distill": ["train", "distill"]}


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(default_config_path("pipeline.yaml")))
    parser.add_argument("--data", default="data/benchmark")
    parser.add_argument("--out", default="runs/default_student")
    parser.add_argument("--export-only", metavar="CHECKPOINT",
                        help="skip training and export this checkpoint (e.g. a bench's run of the same method)")
    args = parser.parse_args()
    out = Path(args.out)
    source = out / "student" / "final.pt" if METHOD == "vlg" else out / "final.pt"
    if args.export_only:
        source = Path(args.export_only)
    else:
        if not (Path(args.data) / "dataset.yaml").exists() and ov3d(["synth", "--benchmark", "--out", args.data]):
            return 1
        if ov3d([*COMMANDS[METHOD], "--config", args.config, "--data", args.data, "--out", str(out)]):
            return 1
    config = load_pipeline_config(args.config)
    provenance = {"data": "ov3d synth --benchmark (config/benchmark.yaml)", "method": METHOD,
                  "command": "training/train_default_student.py",
                  "ggsd": {k: v for k, v in dataclasses.asdict(config.ggsd).items() if k != "data"},
                  "vlg": dataclasses.asdict(config.vlg)}
    target = export_student(source, default_checkpoint_path(), provenance)
    print(f"exported {target}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
