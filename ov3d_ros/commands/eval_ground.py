"""`ov3d eval ground`: proposals from a labelled map of each scene, then Acc@0.25 / Acc@0.5 of the grounders
built so far on the split's referring expressions, beside the proposals' recall of the targets."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ov3d_ros.config import load_pipeline_config
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.openscene import DataError
from ov3d_ros.data.scanrefer import read_scanrefer
from ov3d_ros.evaluation.grounding import (GroundingCase, grounding_accuracy, instance_boxes, proposal_recall,
                                           score_case)
from ov3d_ros.evaluation.reports import write_json
from ov3d_ros.evaluation.segmentation import checkpoint_source, dataset_vocabulary, fused_source
from ov3d_ros.grounding.coarse import CoarseGrounder
from ov3d_ros.grounding.query import QueryParser
from ov3d_ros.mapping.instances import propose_instances
from ov3d_ros.mapping.superpoints import SuperpointCache
from ov3d_ros.training.scenes import space_rows

METHODS = ("random proposal of the predicted class", "coarse stage only")


def run_eval_ground(args: argparse.Namespace) -> int:
    from ov3d_ros.evaluation.plots import plot_method_bars
    from ov3d_ros.language.encoders import build_text_encoder

    config = load_pipeline_config(args.config)
    dataset = Dataset(Path(args.data))
    expressions = read_scanrefer(dataset.root / "scanrefer" / f"{args.split}.json")
    scenes = [s for s in dataset.scenes(args.split) if any(e.scene_id == s for e in expressions)]
    if not scenes:
        raise DataError(f"no referring expressions for the scenes of split {args.split!r}")
    vocabulary = dataset_vocabulary(dataset, config.language)
    source, space, offset = (fused_source(dataset, args.fused), vocabulary, None) if args.map == "fused" else \
        checkpoint_source(args.map, vocabulary)
    encoder = build_text_encoder(config.language)
    grounder = CoarseGrounder(QueryParser(dataset.classes, dataset.info.synonyms), space.label_embeddings,
                              lambda texts: space_rows(torch.from_numpy(encoder.encode(texts)), offset).numpy(),
                              args.class_weight)
    cache = SuperpointCache(dataset.root / "superpoints")
    rng = np.random.default_rng(args.seed)
    cases: dict[str, list[GroundingCase]] = {name: [] for name in METHODS}
    recalls = []
    for scene in tqdm(scenes, desc="scenes", unit="scene"):
        cloud = dataset.scene_cloud(scene)
        features, valid = source(scene, cloud)
        unit = torch.nn.functional.normalize(features.float(), dim=1)
        scores = space.logits(unit)
        labels = torch.where(valid, scores.argmax(dim=1), -1)
        proposals = propose_instances(cloud.coords, labels.numpy(), cache.get(scene, cloud.coords, cloud.colors),
                                      scores.numpy(), unit.numpy())
        truth = instance_boxes(cloud)
        here = [e for e in expressions if e.scene_id == scene]
        recalls.append(proposal_recall([truth[e.object_id] for e in here if e.object_id in truth],
                                       [p.box for p in proposals]))
        distributions = np.stack([p.class_distribution for p in proposals]) if proposals else np.zeros((0, 0))
        unit_features = np.stack([p.feature for p in proposals]) if proposals else np.zeros((0, 0))
        for expression in here:
            target = truth.get(expression.object_id)
            query = grounder.parser.parse(expression.description)
            same = [p for p in proposals if p.label == query.target_label] or proposals
            pick = same[int(rng.integers(len(same)))].box if same else None
            cases[METHODS[0]].append(score_case(expression.eval_type, pick, target))
            best = proposals[int(grounder.rank(query, distributions, unit_features)[0][0])].box if proposals else None
            cases[METHODS[1]].append(score_case(expression.eval_type, best, target))
    table = {name: grounding_accuracy(found) for name, found in cases.items()}
    recall = {key: float(np.nanmean([r[key] for r in recalls])) for key in recalls[0]}
    print(f"grounding on {args.split}: {len(scenes)} scenes, {len(cases[METHODS[0]])} expressions; map: {args.map}; "
          f"proposal recall of the targets " + ", ".join(f"{k} {100 * v:.1f}" for k, v in recall.items()))
    print(f"{'method':<42}" + "".join(f"{g + ' ' + t:>18}" for g in ("overall", "unique", "multiple")
                                      for t in ("@0.25", "@0.5")))
    for name, groups in table.items():
        print(f"{name:<42}" + "".join(f"{groups.get(g, {}).get(f'acc{t}', float('nan')):>18.1f}"
                                      for g in ("overall", "unique", "multiple") for t in ("@0.25", "@0.5")))
    out = Path(args.json)
    write_json(out, {"split": args.split, "map": args.map, "scenes": scenes, "proposal_recall": recall,
                     "methods": table})
    plot_method_bars(list(table), {f"{g} Acc@{t}": [table[m].get(g, {}).get(f"acc@{t}", float("nan")) for m in table]
                                   for g in ("overall",) for t in (0.25, 0.5)}, "%", out.with_suffix(".png"))
    print(f"report: {out} (+ .png)")
    return 0
