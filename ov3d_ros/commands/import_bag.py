"""`ov3d import BAG --out DATA`: a recorded bag as a scene of a dataset (`ov3d_ros.data.bag_import`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ov3d_ros.config import ConfigError, load_perception_config
from ov3d_ros.data.bag_import import import_bag
from ov3d_ros.language.vocabulary import parse_label_entries


def _class_entries(path: str | None) -> list[str]:
    """Vocabulary entries ('name' or 'name: synonym, ...') of a new dataset: one per line of `path`, or the
    built-in indoor vocabulary."""
    if path is None:
        from ov3d_ros.data.synthetic.categories import label_entries
        return label_entries()
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    entries = [line for line in lines if line and not line.startswith("#")]
    if not entries:
        raise ConfigError(f"{path}: no class names")
    return entries


def run_import(args: argparse.Namespace) -> int:
    fusion = load_perception_config(args.config).fusion_node
    classes, synonyms = parse_label_entries(_class_entries(args.classes))
    labels = [name.strip() for name in args.labels.split(",") if name.strip()] if args.labels else []
    report = import_bag(args.bag, args.out, fusion, classes, synonyms, split=args.split, scene=args.scene,
                        scene_labels=labels, frame_stride=args.stride)
    print(f"{report.scene} ({report.split}): {report.frames} posed frames fused into {report.points} points in "
          f"{report.seconds:.1f} s -> {args.out}; next: ov3d fuse --data {args.out} --scenes {report.scene}")
    return 0
