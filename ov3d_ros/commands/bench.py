"""`ov3d bench <name>`: benchmarks that print our numbers beside a reference's, from one run."""
from __future__ import annotations

import argparse
from pathlib import Path

from ov3d_ros.evaluation.reports import write_json


def run_bench_fusion(args: argparse.Namespace) -> int:
    from ov3d_ros.evaluation.bench_fusion import run_fusion_benchmark
    result = run_fusion_benchmark(points=args.points, frames=args.frames, dim=args.dim)
    print(f"multi-view fusion: {args.points} points, {args.frames} frames, {args.dim}-d features")
    print(f"{'implementation':<40}{'points/s':>12}{'seconds':>10}{'peak MB':>10}")
    for row in result["rows"]:
        print(f"{row['name']:<40}{row['points_per_s']:>12,.0f}{row['seconds']:>10.2f}{row['peak_mb']:>10.0f}")
    print(f"speed-up over the reference: {result['speedup']:.1f}x; max |difference| {result['max_abs_diff']:.2e}")
    if args.json:
        write_json(Path(args.json), result)
    return 0


def run_bench_teacher_noise(args: argparse.Namespace) -> int:
    """2D-fusion mIoU of the simulated teacher at several noise levels (fusing on the fly, nothing written)."""
    import torch

    from ov3d_ros.config import load_pipeline_config
    from ov3d_ros.data.dataset import Dataset
    from ov3d_ros.data.openscene import SceneCloud
    from ov3d_ros.evaluation.plots import plot_curve
    from ov3d_ros.evaluation.segmentation import dataset_vocabulary, evaluate_features
    from ov3d_ros.teachers.factory import simulated_teacher
    from ov3d_ros.teachers.multiview import fuse_scene

    config = load_pipeline_config(args.config)
    dataset = Dataset(Path(args.data))
    scenes = dataset.scenes(args.split)
    vocabulary = dataset_vocabulary(dataset, config.language)
    rows = []
    print(f"2D fusion of the simulated teacher on {args.split} ({len(scenes)} scenes)")
    print(f"{'noise':>6}{'mIoU':>8}{'mAcc':>8}{'head':>8}{'common':>8}{'tail':>8}")
    for level in args.levels:
        teacher = simulated_teacher(config.language, dataset.classes, level, dataset.info.confusions)

        def fused(scene: str, cloud: SceneCloud) -> tuple[torch.Tensor, torch.Tensor]:
            result = fuse_scene(cloud.coords, dataset.frames(scene, config.fusion.frame_stride), teacher,
                                config.fusion)
            return result.dense(cloud.num_points), result.mask_full

        scores = evaluate_features(dataset, scenes, fused, vocabulary, progress=False).scores
        rows.append({"noise": level, "miou": scores.miou, "macc": scores.macc, "groups": scores.group_miou})
        g = scores.group_miou
        print(f"{level:>6.2f}{scores.miou:>8.1f}{scores.macc:>8.1f}{g.get('head', float('nan')):>8.1f}"
              f"{g.get('common', float('nan')):>8.1f}{g.get('tail', float('nan')):>8.1f}", flush=True)
    if args.json:
        write_json(Path(args.json), {"split": args.split, "scenes": scenes, "rows": rows})
        plot_curve([r["noise"] for r in rows], {"mIoU": [r["miou"] for r in rows], "mAcc": [r["macc"] for r in rows]},
                   "teacher noise level", "%", Path(args.json).with_suffix(".png"))
    return 0


def run_bench_text(args: argparse.Namespace) -> int:
    """Time to embed a vocabulary of about 200 labels: model load, cold encode, warm (cached) rebuild."""
    import tempfile
    import time

    from ov3d_ros.config import load_pipeline_config
    from ov3d_ros.data.synthetic.categories import CATEGORIES
    from ov3d_ros.language.encoders import build_text_encoder
    from ov3d_ros.language.vocabulary import EmbeddingCache, Vocabulary

    config = load_pipeline_config(args.config)
    entries = [f"{c.name}: {', '.join(c.synonyms)}" for c in CATEGORIES]
    texts = sum(1 + len(c.synonyms) for c in CATEGORIES)
    encoder = build_text_encoder(config.language)
    start = time.perf_counter()
    encoder.encode(["warm-up"])
    load_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        cache = EmbeddingCache(Path(folder))
        start = time.perf_counter()
        Vocabulary.build(entries, encoder, config.language.templates, cache)
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        Vocabulary.build(entries, encoder, config.language.templates, EmbeddingCache(Path(folder)))
        warm_s = time.perf_counter() - start
    print(f"text encoder {encoder.name}: {len(entries)} labels, {texts} texts with synonyms")
    print(f"model load + first call {load_s:.2f} s; cold vocabulary {cold_s:.3f} s; warm (disk cache) "
          f"{warm_s * 1000:.1f} ms")
    return 0
