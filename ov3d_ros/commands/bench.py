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
