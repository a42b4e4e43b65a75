"""Benchmark: student training recipes under one wall-clock budget (`ov3d bench student-recipes`).

Every row trains the same architecture from scratch (stage 1 only unless the row says otherwise) for the same
number of seconds, with the learning-rate schedule run on elapsed time, then scores the student on the first
training scenes (can it fit what it saw?) and on the val split (does it generalise?): mIoU, head / common / tail
and how many of the classes present it labels right somewhere; on val also the mIoU on the maps the fusion node
builds from the rooms' RGB-D frames (what the running graph labels). The val mIoU is also taken at quarters of the
budget, for a curve of mIoU against training hours. Rows are overrides of the config's `ggsd` and `student`
sections, so the config's own recipe is the row "config".
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ov3d_ros.config import PipelineConfig
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.language.vocabulary import Vocabulary
from ov3d_ros.training.logs import read_csv_rows

CURVE_FRACTIONS = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Recipe:
    """One row: a name and its overrides of the ggsd and student config sections."""

    name: str
    ggsd: dict[str, Any] = field(default_factory=dict)
    student: dict[str, Any] = field(default_factory=dict)


RECIPES: tuple[Recipe, ...] = (
    Recipe("#5: cosine, 2 cm, 3 m crops, geometry", {"loss": "cosine", "crop_m": 3.0, "superpoint_loss": True},
           {"voxel_size_m": 0.02, "inputs": []}),
    Recipe("ground truth (upper bound)", {"labels": "ground_truth"}),
    Recipe("config"),
    Recipe("cosine loss", {"loss": "cosine"}),
    Recipe("no colour", student={"inputs": ["height"]}),
    Recipe("no height", student={"inputs": ["colour"]}),
    Recipe("3 m crops", {"crop_m": 3.0}),
    Recipe("2 rooms per step", {"scenes_per_step": 2}),
    Recipe("no superpoint loss", {"superpoint_loss": False}),
    Recipe("no class balance", {"class_balance": 0.0}),
    Recipe("+ extra rooms (train+extra)", {"train_split": "train+extra"}),
    Recipe("clean clouds only (no fused maps)", {"fused_map_share": 0.0}),
    Recipe("fused maps only", {"fused_map_share": 1.0}),
)


def recipe_names() -> list[str]:
    return [r.name for r in RECIPES]


def run_recipe(dataset: Dataset, vocabulary: Vocabulary, config: PipelineConfig, recipe: Recipe, out: Path,
               seconds: float, train_scenes: list[str], val_scenes: list[str],
               progress: bool = True) -> dict[str, Any]:
    """Train one recipe for `seconds` of step time and score it; the row of the table (with its val curve).
    A recipe naming a split the dataset lacks (e.g. `extra`: `ov3d synth --split extra`) raises DataError."""
    from ov3d_ros.training.ggsd import GGSDTrainer

    ggsd = dataclasses.replace(config.ggsd, **{"self_distillation": False, "val_every": 0,
                                               "val_scenes": len(val_scenes), **recipe.ggsd,
                                               "time_budget_s": seconds})
    student = dataclasses.replace(config.student, **recipe.student)
    trainer = GGSDTrainer(dataset, vocabulary, ggsd, student, out, progress=progress)
    trainer.run(validate_at=CURVE_FRACTIONS)
    curve = [{"hours": float(r["seconds"]) / 3600.0, "miou": float(r["miou"])}
             for r in read_csv_rows(out / "val.csv")]
    train, val = trainer.validate(train_scenes, on_maps=False), trainer.validate(val_scenes, on_maps=True)
    return {"name": recipe.name, "ggsd": recipe.ggsd, "student": recipe.student, "steps": trainer.step,
            "seconds_per_step": trainer.elapsed_s / max(trainer.step, 1), "train": train, "val": val,
            "curve": curve}


def print_header(seconds: float, train_scenes: int, val_scenes: int) -> None:
    print(f"student recipes, {seconds / 60:.1f} min of training each; train = {train_scenes} training scenes, "
          f"val = {val_scenes} val scenes; classes = labelled right somewhere / present")
    print(f"{'recipe':<40}{'steps':>7}{'s/step':>8}{'train mIoU':>12}{'classes':>9}{'val mIoU':>10}{'classes':>9}"
          f"{'tail':>7}{'val map':>9}")


def print_row(row: dict[str, Any]) -> None:
    train, val = row["train"], row["val"]
    print(f"{row['name']:<40}{row['steps']:>7}{row['seconds_per_step']:>8.2f}{train['miou']:>12.1f}"
          f"{train['classes_right']:>5}/{train['classes_present']:<3}{val['miou']:>10.1f}"
          f"{val['classes_right']:>5}/{val['classes_present']:<3}{val['tail']:>7.1f}{val['map_miou']:>9.1f}",
          flush=True)


def plot_recipe_curves(rows: list[dict[str, Any]], path: Path) -> Path:
    """Val mIoU against training hours, one line per recipe."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for row in rows:
        ax.plot([p["hours"] for p in row["curve"]], [p["miou"] for p in row["curve"]], marker="o", label=row["name"])
    ax.set_xlabel("training hours (step time, 2 threads)")
    ax.set_ylabel("val mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
