"""`ov3d train ggsd` and `ov3d train vlg`: train the student (GGSD, 3DSS-VLG) from a pipeline config."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from ov3d_ros.config import ConfigError, load_pipeline_config

if TYPE_CHECKING:
    from ov3d_ros.training.ggsd import GGSDTrainer


def run_train_ggsd(args: argparse.Namespace) -> int:
    from ov3d_ros.data.dataset import Dataset
    from ov3d_ros.evaluation.segmentation import dataset_vocabulary
    from ov3d_ros.training.ggsd import GGSDTrainer

    config = load_pipeline_config(args.config)
    ggsd = config.ggsd
    overrides = {k: v for k, v in {"distill_steps": args.distill_steps, "self_distill_steps": args.self_distill_steps,
                                   "train_split": args.train_split,
                                   "time_budget_s": None if args.minutes is None else args.minutes * 60.0}.items()
                 if v is not None}
    if args.plain_distillation:
        overrides.update(superpoint_loss=False, self_distillation=False, superpoint_voting=False)
    ggsd = dataclasses.replace(ggsd, **overrides)
    data = args.data or ggsd.data
    if not data:
        raise ConfigError("no dataset: pass --data DIR or set ggsd.data in the config")
    dataset = Dataset(Path(data))
    out = Path(args.out)
    _run(GGSDTrainer(dataset, dataset_vocabulary(dataset, config.language), ggsd, config.student, out), out,
         args.restart)
    return 0


def _run(trainer: GGSDTrainer, out: Path, restart: bool) -> None:
    """Run a student trainer in `out`, resuming from out/last.pt unless `restart`."""
    if not restart and trainer.resume_latest():
        print(f"resuming from {out / 'last.pt'} at step {trainer.step}")
    final = trainer.run()
    if trainer.rank == 0:
        print(f"trained {trainer.total_steps} steps; checkpoint {final}; logs {out / 'log.csv'}, "
              f"{out / 'tensorboard'}")


def run_train_vlg(args: argparse.Namespace) -> int:
    from ov3d_ros.data.dataset import Dataset
    from ov3d_ros.evaluation.reports import segmentation_report
    from ov3d_ros.evaluation.segmentation import dataset_vocabulary
    from ov3d_ros.models.adapter import load_adapter
    from ov3d_ros.training.vlg import VLGPipeline

    config = load_pipeline_config(args.config)
    overrides = {k: v for k, v in {"scene_labels": args.labels, "guidance_steps": args.guidance_steps}.items()
                 if v is not None}
    config = dataclasses.replace(config, vlg=dataclasses.replace(config.vlg, **overrides))
    data = args.data or config.ggsd.data
    if not data:
        raise ConfigError("no dataset: pass --data DIR or set ggsd.data in the config")
    dataset = Dataset(Path(data))
    vocabulary = dataset_vocabulary(dataset, config.language)
    out = Path(args.out)
    pipeline = VLGPipeline(dataset, vocabulary, config, out)
    if args.stage in ("pseudo", "all"):
        scores = pipeline.generate_pseudo_labels().scores
        report = segmentation_report(scores, out / "pseudo_val.json")
        print(f"pseudo labels in {pipeline.pseudo_dir}; on {config.ggsd.val_split}: mIoU {scores.miou:.1f}, "
              f"mAcc {scores.macc:.1f}; report {out / 'pseudo_val.json'} "
              f"(plots: {', '.join(report['plots'].values())})")
    if args.stage in ("adapter", "all"):
        pipeline.train_adapter()
        print(f"adapter {pipeline.adapter_path}; log {out / 'adapter_log.csv'}")
    if args.stage in ("guidance", "all"):
        adapter, content = load_adapter(pipeline.adapter_path)
        if content["text_space"] != vocabulary.encoder_name:
            raise ConfigError(f"{pipeline.adapter_path} was trained in the text space {content['text_space']!r}, "
                              f"but the config's encoder is {vocabulary.encoder_name!r}")
        _run(pipeline.guidance_trainer(adapter), out / "student", args.restart)
    return 0


def run_train_grounding(args: argparse.Namespace) -> int:
    from ov3d_ros.data.dataset import Dataset
    from ov3d_ros.training.grounding import train_grounding

    config = load_pipeline_config(args.config)
    data = args.data or config.grounding.data
    if not data:
        raise ConfigError("no dataset: pass --data DIR or set grounding.data in the config")
    stages = ("teacher", "distill", "supervised") if args.stage == "all" else (args.stage,)
    out = Path(args.out)
    written = train_grounding(Dataset(Path(data)), config, out, stages)
    print("wrote " + ", ".join(f"{name} {path}" for name, path in written.items()) +
          f"; logs {out}/<stage>_log.csv. Score them: ov3d eval ground --data {data} --teacher {out / 'teacher.pt'} "
          f"--grounder {out / 'grounder.pt'} --supervised {out / 'supervised.pt'} --json {out / 'ground.json'}")
    return 0
