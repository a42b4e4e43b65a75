"""`ov3d train ggsd`: train the student with GGSD from a pipeline config."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ov3d_ros.config import ConfigError, load_pipeline_config


def run_train_ggsd(args: argparse.Namespace) -> int:
    from ov3d_ros.data.dataset import Dataset
    from ov3d_ros.evaluation.segmentation import dataset_vocabulary
    from ov3d_ros.training.ggsd import GGSDTrainer

    config = load_pipeline_config(args.config)
    ggsd = config.ggsd
    overrides = {k: v for k, v in {"distill_steps": args.distill_steps,
                                   "self_distill_steps": args.self_distill_steps}.items() if v is not None}
    if args.plain_distillation:
        overrides.update(superpoint_loss=False, self_distillation=False, superpoint_voting=False)
    ggsd = dataclasses.replace(ggsd, **overrides)
    data = args.data or ggsd.data
    if not data:
        raise ConfigError("no dataset: pass --data DIR or set ggsd.data in the config")
    dataset = Dataset(Path(data))
    out = Path(args.out)
    trainer = GGSDTrainer(dataset, dataset_vocabulary(dataset, config.language), ggsd, config.student, out)
    last = out / "last.pt"
    if last.exists() and not args.restart:
        trainer.resume(last)
        print(f"resuming from {last} at step {trainer.step}")
    final = trainer.run()
    if trainer.rank == 0:
        print(f"trained {trainer.total_steps} steps; checkpoint {final}; logs {out / 'log.csv'}, "
              f"{out / 'tensorboard'}")
    return 0
