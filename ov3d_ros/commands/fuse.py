"""`ov3d fuse`: multi-view 2D->3D feature fusion of a dataset."""
from __future__ import annotations

import argparse
from pathlib import Path

from ov3d_ros.config import load_pipeline_config
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.teachers.factory import build_teacher
from ov3d_ros.teachers.multiview import fuse_dataset


def run_fuse(args: argparse.Namespace) -> int:
    config = load_pipeline_config(args.config)
    kind = args.teacher or config.teacher.kind
    dataset = Dataset(Path(args.data))
    scenes = args.scenes or (dataset.scenes(args.split) if args.split else None)
    teacher = build_teacher(config, kind, dataset.classes, dataset.info.confusions)
    out = Path(args.out) if args.out else dataset.fused_dir(kind)
    summary = fuse_dataset(dataset, teacher, out, config.fusion, scenes=scenes, overwrite=args.overwrite)
    for scene, stats in summary["scenes"].items():
        if stats["skipped"]:
            print(f"{scene}: already fused (use --overwrite to redo)")
        else:
            print(f"{scene}: {stats['fused_points']}/{stats['points']} points seen, {stats['mean_views']:.1f} views "
                  f"on average, {stats['frames']} frames, {stats['seconds']:.1f} s")
    print(f"fused {summary['fused']} scene(s), skipped {summary['skipped']}, into {out}")
    return 0
