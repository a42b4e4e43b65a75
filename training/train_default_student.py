"""Reproduce the shipped default student (ov3d_ros/weights/student_default.pt), MiniLM text space.

    .venv/bin/python training/train_default_student.py [--data data/benchmark] [--out runs/ggsd_default]

Generates the benchmark if it is missing (`ov3d synth --benchmark`), trains full GGSD with the budget below on
its train split (`ov3d train ggsd`), and exports the final checkpoint as float16 weights into the package.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ov3d_ros.cli import main as ov3d
from ov3d_ros.training.checkpoint import default_checkpoint_path, export_student

DISTILL_STEPS, SELF_DISTILL_STEPS = 500, 200


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/benchmark")
    parser.add_argument("--out", default="runs/ggsd_default")
    args = parser.parse_args()
    if not (Path(args.data) / "dataset.yaml").exists() and ov3d(["synth", "--benchmark", "--out", args.data]):
        return 1
    if ov3d(["train", "ggsd", "--data", args.data, "--out", args.out, "--distill-steps", str(DISTILL_STEPS),
             "--self-distill-steps", str(SELF_DISTILL_STEPS)]):
        return 1
    target = export_student(Path(args.out) / "final.pt", default_checkpoint_path(),
                            {"data": "ov3d synth --benchmark (config/benchmark.yaml)", "method": "GGSD",
                             "distill_steps": DISTILL_STEPS, "self_distill_steps": SELF_DISTILL_STEPS})
    print(f"exported {target}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
