"""`ov3d eval seg`: label per-point features with the dataset's classes and score them against ground truth."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ov3d_ros.config import ConfigError, load_perception_config, load_pipeline_config
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.openscene import DataError, SceneCloud, load_torch_file, read_fused
from ov3d_ros.evaluation.reports import segmentation_report
from ov3d_ros.evaluation.segmentation import (FusedMaps, checkpoint_source, cloud_superpoints, dataset_vocabulary,
                                              evaluate_features)


def point_features(path: Path, num_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) features and (N,) validity of a per-point feature file: fused .pt, a (N, D) .pt tensor or .npy."""
    if path.suffix == ".npy":
        feats = torch.from_numpy(np.load(path, allow_pickle=False)).float()
    else:
        content = load_torch_file(path)
        if isinstance(content, dict):
            fused = read_fused(path)
            return fused.dense(num_points), fused.mask_full
        feats = torch.as_tensor(content).float()
    if feats.ndim != 2 or feats.shape[0] != num_points:
        raise DataError(f"{path}: expected ({num_points}, D) features, got shape {tuple(feats.shape)}")
    return feats, torch.ones(num_points, dtype=torch.bool)


def _feature_file(args: argparse.Namespace, dataset: Dataset, scene: str) -> Path:
    if args.fused:
        folder = Path(args.fused) if Path(args.fused).is_dir() else dataset.fused_dir(args.fused)
        return folder / f"{scene}_0.pt"
    source = Path(args.features)
    if source.is_file():
        return source
    for suffix in (".pt", ".npy"):
        if (source / f"{scene}{suffix}").exists():
            return source / f"{scene}{suffix}"
    raise DataError(f"no features for scene {scene} in {source} ({scene}.pt or {scene}.npy)")


def run_eval_seg(args: argparse.Namespace) -> int:
    config = load_pipeline_config(args.config)
    dataset = Dataset(Path(args.data))
    scenes = dataset.scenes(args.split)
    if args.features and Path(args.features).is_file() and len(scenes) != 1:
        raise ConfigError(f"--features names one file but split {args.split!r} has {len(scenes)} scenes")
    if args.fused and not (Path(args.fused).is_dir() or dataset.fused_dir(args.fused).is_dir()):
        raise DataError(f"no fused features called {args.fused!r}: neither a folder nor {dataset.fused_dir(args.fused)}")
    if (args.no_colour or args.fused_map) and not args.checkpoint:
        raise ConfigError("--no-colour and --fused-map apply to a student (--checkpoint) only")
    if args.features and not Path(args.features).exists():
        raise DataError(f"no such features file or folder: {args.features}")

    def from_files(scene: str, cloud: SceneCloud) -> tuple[torch.Tensor, torch.Tensor]:
        return point_features(_feature_file(args, dataset, scene), cloud.num_points)

    vocabulary = dataset_vocabulary(dataset, config.language)
    features = from_files
    superpoints = cloud_superpoints(dataset) if args.superpoint_vote else None
    if args.checkpoint:
        runner = None
        if args.fused_map:
            perception = load_perception_config(None if args.fused_map == "default" else args.fused_map)
            maps = FusedMaps(dataset, perception.fusion_node)
            runner = maps.runner
            superpoints = maps.superpoints if args.superpoint_vote else None
        features, vocabulary, _ = checkpoint_source(args.checkpoint, vocabulary, with_colour=not args.no_colour,
                                                    runner=runner)
    result = evaluate_features(dataset, scenes, features, vocabulary, superpoints=superpoints)
    scores = result.scores
    report = segmentation_report(scores, Path(args.json))
    groups = ", ".join(f"{name} {value:.1f}" for name, value in scores.group_miou.items())
    print(f"{args.split}: {len(scenes)} scene(s), mIoU {scores.miou:.1f}, mAcc {scores.macc:.1f} ({groups}); "
          f"points with features {100.0 * result.coverage:.1f} % (the rest count as misses)")
    print(f"report: {args.json} (plots: {', '.join(report['plots'].values())})")
    return 0
