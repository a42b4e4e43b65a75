"""`ov3d synth`: generate the synthetic world (one split, or the whole fixed benchmark)."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ov3d_ros.config import ConfigError, SynthConfig, load_benchmark_config, load_pipeline_config
from ov3d_ros.data.synthetic.categories import CATEGORIES, CLASS_NAMES
from ov3d_ros.teachers.factory import simulated_teacher


def _synth_config(args: argparse.Namespace, base: SynthConfig) -> SynthConfig:
    overrides = {"frames": args.frames, "width": args.width, "height": args.height, "lidar": args.lidar or None,
                 "teacher_noise": args.teacher_noise, "duration_s": args.duration, "bag": False if args.no_bag else None,
                 "compressed_images": args.compressed_images or None}
    try:
        return dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise ConfigError(f"bad option: {exc}") from None


def run_synth(args: argparse.Namespace) -> int:
    from ov3d_ros.data.synthetic.world import synthesize

    if args.benchmark is None and (args.scenes is None or args.seed is None):
        raise ConfigError("give --scenes N and --seed S, or --benchmark [FILE]")
    pipeline = load_pipeline_config(args.config)
    if args.benchmark is not None:
        benchmark = load_benchmark_config(args.benchmark or None)
        config = _synth_config(args, benchmark.synth)
        jobs = [("train", range(benchmark.train_seed, benchmark.train_seed + benchmark.train_scenes)),
                ("val", range(benchmark.val_seed, benchmark.val_seed + benchmark.val_scenes))]
    else:
        if args.scenes < 1:
            raise ConfigError(f"--scenes must be at least 1, got {args.scenes}")
        config = _synth_config(args, SynthConfig())
        jobs = [(args.split, range(args.seed, args.seed + args.scenes))]
    teacher = None if args.no_fuse else simulated_teacher(
        pipeline.language, CLASS_NAMES, config.teacher_noise,
        {c.name: c.confused_with for c in CATEGORIES})
    out = Path(args.out)
    for split, seeds in jobs:
        for entry in synthesize(out, split, seeds, config, teacher, pipeline.fusion):
            print(f"{split}/{entry['scene']}: {entry['room_type']}, {entry['objects']} objects, {entry['points']} "
                  f"points, {entry['frames']} frames, {entry['lidar_scans']} LiDAR scans, {entry['descriptions']} "
                  f"descriptions, {entry['seconds']:.1f} s")
    print(f"wrote {out} (dataset.yaml, 3d/, 2d/, fused/, bags/, ply/, preview/, boxes/, scanrefer/)")
    return 0
