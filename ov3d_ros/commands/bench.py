"""`ov3d bench <name>`: benchmarks that print our numbers beside a reference's, from one run."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

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
    from ov3d_ros.data.synthetic.categories import CATEGORIES, label_entries
    from ov3d_ros.language.encoders import build_text_encoder
    from ov3d_ros.language.vocabulary import EmbeddingCache, Vocabulary

    config = load_pipeline_config(args.config)
    entries = label_entries()
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


RUN_FOLDERS = {"pixel-point distillation": "pixel-point", "geometry-guided distillation": "geometry-guided",
               "+ self-distillation (EMA)": "self-distillation", "full GGSD (+ superpoint voting)": "full"}
ABLATION_ROWS = (  # (name, superpoint_loss, self_distillation, superpoint_voting), GGSD's Table 4 order
    ("pixel-point distillation", False, False, False),
    ("geometry-guided distillation", True, False, False),
    ("+ self-distillation (EMA)", True, True, False),
    ("full GGSD (+ superpoint voting)", True, True, True),
)


def run_bench_superpoints(args: argparse.Namespace) -> int:
    """Superpoint purity on a split (from the dataset's superpoint cache, computed where missing) and the time to
    compute them for the first scene cut to `--points` points, on one thread."""
    import time

    import numpy as np
    import torch

    from ov3d_ros.data.dataset import Dataset
    from ov3d_ros.mapping.superpoints import SuperpointCache, compute_superpoints, superpoint_purity

    dataset = Dataset(Path(args.data))
    scenes = dataset.scenes(args.split)
    cache = SuperpointCache.of_dataset(dataset.root)
    rows = []
    print(f"superpoints on {args.split} ({len(scenes)} scenes)")
    print(f"{'scene':<24}{'points':>9}{'superpoints':>13}{'purity':>9}")
    for scene in scenes:
        cloud = dataset.scene_cloud(scene)
        ids = cache.get(scene, cloud.coords, cloud.colors)
        purity = superpoint_purity(ids, cloud.labels, dataset.info.ignore_label)
        rows.append({"scene": scene, "points": cloud.num_points, "superpoints": int(ids.max()) + 1, "purity": purity})
        print(f"{scene:<24}{cloud.num_points:>9}{rows[-1]['superpoints']:>13}{purity:>9.3f}", flush=True)
    purity = float(np.average([r["purity"] for r in rows], weights=[r["points"] for r in rows]))
    cloud = dataset.scene_cloud(scenes[0])
    keep = np.random.default_rng(0).permutation(cloud.num_points)[:args.points]
    torch.set_num_threads(1)
    started = time.perf_counter()
    compute_superpoints(cloud.coords[keep], cloud.colors[keep])
    seconds = time.perf_counter() - started
    print(f"purity over the split (point-weighted): {purity:.3f} (target >= 0.95); {len(keep)} points of "
          f"{scenes[0]} in {seconds:.2f} s on one thread (target < 2 s)")
    if args.json:
        write_json(Path(args.json), {"split": args.split, "rows": rows, "purity": purity,
                                     "timing": {"points": len(keep), "seconds": seconds}})
    return 0


class _ScoreTable:
    """Scores methods on a split, printing one row per method as it comes; `write` saves JSON and a bar chart."""

    GROUPS = ("head", "common", "tail")

    def __init__(self, dataset: Any, scenes: list[str], title: str) -> None:
        self.dataset, self.scenes, self.rows = dataset, scenes, []
        print(title)
        print(f"{'':<40}{'mIoU':>7}{'mAcc':>7}" + "".join(f"{g:>8}" for g in self.GROUPS))

    def add_features(self, name: str, source: Any, space: Any) -> dict[str, Any]:
        from ov3d_ros.evaluation.segmentation import evaluate_features
        return self.add(name, evaluate_features(self.dataset, self.scenes, source, space, progress=False).scores)

    def add(self, name: str, scores: Any) -> dict[str, Any]:
        row = {"name": name, "miou": scores.miou, "macc": scores.macc, "groups": scores.group_miou}
        self.rows.append(row)
        print(f"{name:<40}{scores.miou:>7.1f}{scores.macc:>7.1f}" + "".join(
            f"{scores.group_miou.get(g, float('nan')):>8.1f}" for g in self.GROUPS), flush=True)
        return row

    def write(self, path: Path, **extra: Any) -> None:
        from ov3d_ros.evaluation.plots import plot_method_bars
        write_json(path, {"scenes": self.scenes, "rows": self.rows, **extra})
        series = {"mIoU": [r["miou"] for r in self.rows], "mAcc": [r["macc"] for r in self.rows],
                  **{f"{g} mIoU": [r["groups"].get(g, float("nan")) for r in self.rows] for g in self.GROUPS}}
        plot_method_bars([r["name"] for r in self.rows], series, "%", path.with_suffix(".png"))


def _budget(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(pipeline config with the command line's step budget, dataset, its vocabulary)."""
    import dataclasses

    from ov3d_ros.config import load_pipeline_config
    from ov3d_ros.data.dataset import Dataset
    from ov3d_ros.evaluation.segmentation import dataset_vocabulary

    config = load_pipeline_config(args.config)
    ggsd = dataclasses.replace(config.ggsd, distill_steps=args.distill_steps or config.ggsd.distill_steps,
                               self_distill_steps=args.self_distill_steps or config.ggsd.self_distill_steps,
                               train_split=args.train_split or config.ggsd.train_split,
                               time_budget_s=config.ggsd.time_budget_s if args.minutes is None else args.minutes * 60.0)
    config = dataclasses.replace(config, ggsd=ggsd)
    dataset = Dataset(Path(args.data))
    return config, dataset, dataset_vocabulary(dataset, config.language)


def run_bench_student_recipes(args: argparse.Namespace) -> int:
    """Student training recipes under one wall-clock budget (ov3d_ros.evaluation.bench_recipes)."""
    import re

    from ov3d_ros.config import ConfigError, load_pipeline_config
    from ov3d_ros.data.dataset import Dataset
    from ov3d_ros.data.openscene import DataError
    from ov3d_ros.evaluation import bench_recipes as bench
    from ov3d_ros.evaluation.segmentation import dataset_vocabulary

    recipes = [r for r in bench.RECIPES if not args.rows or r.name in args.rows]
    unknown = set(args.rows or ()) - {r.name for r in recipes}
    if unknown:
        raise ConfigError(f"unknown recipe {sorted(unknown)[0]!r}; rows: {'; '.join(bench.recipe_names())}")
    config = load_pipeline_config(args.config)
    dataset = Dataset(Path(args.data))
    vocabulary = dataset_vocabulary(dataset, config.language)
    train_scenes = dataset.scenes(config.ggsd.train_split)[:args.train_scenes]
    val_scenes = dataset.scenes(config.ggsd.val_split)
    out, seconds = Path(args.out), args.minutes * 60.0
    bench.print_header(seconds, len(train_scenes), len(val_scenes))
    rows = []
    for recipe in recipes:
        folder = out / re.sub(r"[^a-z0-9]+", "-", recipe.name.lower()).strip("-")
        for stale in ("log.csv", "val.csv", "last.pt", "final.pt"):
            (folder / stale).unlink(missing_ok=True)
        try:
            rows.append(bench.run_recipe(dataset, vocabulary, config, recipe, folder, seconds, train_scenes,
                                         val_scenes, progress=not args.quiet))
        except DataError as exc:
            print(f"{recipe.name:<40}skipped: {exc}")
            continue
        bench.print_row(rows[-1])
        write_json(out / "recipes.json", {"minutes": args.minutes, "train_scenes": train_scenes,
                                          "val_scenes": val_scenes, "rows": rows})
    plot = bench.plot_recipe_curves(rows, out / "recipes.png")
    print(f"table: {out / 'recipes.json'}; curves: {plot}")
    return 0


def run_bench_ggsd_ablation(args: argparse.Namespace) -> int:
    """GGSD's ablation on the benchmark with one budget: 2D fusion, then the four trained rows of Table 4.

    The two stage-2 rows resume from the geometry-guided row's checkpoint (its schedule is independent of stage 2),
    so every row with self-distillation has seen exactly the same stage 1. A row cut off part way (or finished)
    resumes from its own last.pt, unless --restart.
    """
    import dataclasses
    import shutil

    from ov3d_ros.evaluation.segmentation import fused_source, student_source
    from ov3d_ros.training.ggsd import GGSDTrainer

    config, dataset, vocabulary = _budget(args)
    base = config.ggsd
    out = Path(args.out)
    table = _ScoreTable(dataset, dataset.scenes(base.val_split),
                        f"GGSD ablation on {base.val_split} ({len(dataset.scenes(base.val_split))} scenes); budget "
                        f"{base.distill_steps} + {base.self_distill_steps} steps")
    table.add_features("2D fusion", fused_source(dataset, base.fused), vocabulary)
    for name, sp_loss, self_distill, voting in ABLATION_ROWS:
        run = out / RUN_FOLDERS[name]
        row_config = dataclasses.replace(base, superpoint_loss=sp_loss, self_distillation=self_distill,
                                         superpoint_voting=voting)
        if args.restart:
            shutil.rmtree(run, ignore_errors=True)
        trainer = GGSDTrainer(dataset, vocabulary, row_config, config.student, run, progress=not args.quiet)
        if not trainer.resume_latest() and self_distill:
            trainer.resume(out / "geometry-guided" / "final.pt")
        trainer.run()
        trainer.model.eval()
        table.add_features(name, student_source(trainer.model), trainer.space)
    table.write(out / "ablation.json", split=base.val_split, distill_steps=base.distill_steps,
                self_distill_steps=base.self_distill_steps)
    print(f"full GGSD - 2D fusion: {table.rows[-1]['miou'] - table.rows[0]['miou']:+.1f} mIoU (paper: +6.5); "
          f"table: {out / 'ablation.json'} (+ .png)")
    return 0


def run_bench_vlg(args: argparse.Namespace) -> int:
    """3DSS-VLG's comparison with one student budget (ggsd.distill_steps + self_distill_steps for every student):
    2D fusion, pseudo labels (they use the val scenes' scene-level labels), the adapter on the fused features,
    full 3DSS-VLG, the GGSD student, and the combination: GGSD trained towards the adapter's embeddings, with the
    scene-level labels masking its stage-2 pseudo labels before superpoint voting. A student cut off part way
    resumes from its own last.pt."""
    import dataclasses

    from ov3d_ros.evaluation.segmentation import checkpoint_source, fused_source, student_source
    from ov3d_ros.training.ggsd import GGSDTrainer
    from ov3d_ros.training.vlg import VLGPipeline

    config, dataset, vocabulary = _budget(args)
    budget = config.ggsd.distill_steps + config.ggsd.self_distill_steps
    config = dataclasses.replace(config, vlg=dataclasses.replace(config.vlg, guidance_steps=budget))
    out = Path(args.out)
    pipeline = VLGPipeline(dataset, vocabulary, config, out / "vlg", progress=not args.quiet)
    split = config.ggsd.val_split
    table = _ScoreTable(dataset, pipeline.val_scenes, f"3DSS-VLG comparison on {split} "
                        f"({len(pipeline.val_scenes)} scenes); every student {budget} steps")
    table.add_features("2D fusion", fused_source(dataset, config.ggsd.fused), vocabulary)
    table.add("pseudo labels (scene labels known)", pipeline.generate_pseudo_labels().scores)
    adapter = pipeline.train_adapter()
    table.add_features("adapter only (2D)", pipeline.adapter_source(adapter), pipeline.space)

    def trained(name: str, trainer: GGSDTrainer) -> None:
        trainer.resume_latest()             # a row cut off part way goes on from its last.pt
        trainer.run()
        table.add_features(name, student_source(trainer.model.eval()), trainer.space)

    trained("3DSS-VLG (student)", pipeline.guidance_trainer(adapter))
    if args.ggsd_checkpoint:
        source, space, _ = checkpoint_source(args.ggsd_checkpoint, vocabulary)
        table.add_features("GGSD (student)", source, space)
    else:
        trained("GGSD (student)", GGSDTrainer(dataset, vocabulary, config.ggsd, config.student, out / "ggsd",
                                              progress=not args.quiet))
    trained("VLG targets + GGSD, scene-masked voting",
            pipeline.guidance_trainer(adapter, out / "combined", superpoint_loss=True, self_distillation=True,
                                      superpoint_voting=True, scene_label_masking=True,
                                      distill_steps=config.ggsd.distill_steps,
                                      self_distill_steps=config.ggsd.self_distill_steps))
    table.write(out / "vlg.json", split=split, student_steps=budget)
    print(f"table: {out / 'vlg.json'} (+ .png)")
    return 0


def run_bench_student(args: argparse.Namespace) -> int:
    """Forward+backward and inference time and peak memory of the student: our portable backend vs spconv."""
    from ov3d_ros.evaluation.bench_student import run_student_benchmark
    result = run_student_benchmark(voxels=args.voxels, preset=args.preset, threads=args.threads)
    print(f"student '{args.preset}' on a {result.get('voxels', args.voxels)}-voxel room, {args.threads} thread(s)")
    print(f"{'backend':<28}{'threads':>8}{'fwd+bwd s':>11}{'infer s':>9}{'peak MB':>9}")
    for row in result["rows"]:
        print(f"{row['name']:<28}{row['threads']:>8}{row['forward_backward_s']:>11.3f}{row['inference_s']:>9.3f}"
              f"{row['peak_mb']:>9.0f}")
    for key in ("ratio", "ratio_1_thread"):
        if key in result:
            print(f"ours / spconv ({key.replace('_', ' ')}): fwd+bwd {result[key]['forward_backward_s']:.2f}, "
                  f"inference {result[key]['inference_s']:.2f}")
    if args.json:
        write_json(Path(args.json), result)
    return 0


def run_bench_grounding(args: argparse.Namespace) -> int:
    """Latency percentiles of the grounding engine for a map of --objects objects, one thread."""
    from ov3d_ros.config import load_pipeline_config
    from ov3d_ros.data.synthetic.categories import label_entries
    from ov3d_ros.evaluation.bench_grounding import run_grounding_benchmark
    from ov3d_ros.grounding.engine import load_engine
    from ov3d_ros.language.encoders import build_text_encoder
    from ov3d_ros.language.vocabulary import configured_vocabulary

    if args.objects < 1 or args.queries < 1:
        raise ValueError("--objects and --queries must be positive")
    config = load_pipeline_config(args.config)
    encoder = build_text_encoder(config.language)
    engine = load_engine(encoder.encode, None if args.checkpoint == "coarse" else args.checkpoint)
    vocabulary = configured_vocabulary(label_entries(), config.language, encoder)
    result = run_grounding_benchmark(engine, vocabulary, args.objects, args.queries, args.seed)
    print(f"grounding engine ({result['ranker']}), {args.objects} objects, {args.queries} distinct queries, "
          f"1 thread; {result['unanswered']} unanswered")
    print(f"{'ms per query':<34}" + "".join(f"{k:>8}" for k in ("p50", "p90", "p99", "max")))
    for name, key in (("with text encoding (new query)", "with_text_encoding_ms"),
                      ("cached query (ranking only)", "cached_query_ms")):
        print(f"{name:<34}" + "".join(f"{result[key][k]:>8.1f}" for k in ("p50", "p90", "p99", "max")))
    print(f"target p99 < 50 ms with text encoding: {'met' if result['with_text_encoding_ms']['p99'] < 50 else 'missed'}")
    if args.json:
        write_json(Path(args.json), result)
    return 0


def run_bench_relations(args: argparse.Namespace) -> int:
    """Accuracy per spatial relation on generated probes, each ranker without and with the relation module."""
    import torch

    from ov3d_ros.config import load_pipeline_config
    from ov3d_ros.data.synthetic.categories import label_entries
    from ov3d_ros.evaluation.relation_probes import run_relation_benchmark
    from ov3d_ros.language.encoders import build_text_encoder
    from ov3d_ros.language.vocabulary import configured_vocabulary

    if args.probes < 1:
        raise ValueError("--probes must be positive")
    torch.set_num_threads(1)
    config = load_pipeline_config(args.config)
    encoder = build_text_encoder(config.language)
    vocabulary = configured_vocabulary(label_entries(), config.language, encoder)
    result = run_relation_benchmark(encoder.encode, vocabulary, None if args.checkpoint == "coarse" else
                                    args.checkpoint, args.probes, args.seed)
    methods = result["methods"]
    print(f"spatial-relation probes: {args.probes} per relation, seed {args.seed}, text encoder {encoder.name}; "
          "% whose first answer is the described object")
    width = max(len(m) for m in methods) + 2
    print(f"{'relation':<10}" + "".join(f"{m:>{width}}" for m in methods))
    for relation in result["relations"]:
        print(f"{relation:<10}" + "".join(f"{100 * methods[m][relation]:>{width}.0f}" for m in methods))
    print(f"{'mean':<10}" + "".join(f"{100 * sum(methods[m].values()) / len(methods[m]):>{width}.1f}"
                                    for m in methods))
    for name, reason in result["skipped"].items():
        print(f"{name} skipped: {reason}")
    if args.json:
        write_json(Path(args.json), result)
    return 0


def run_bench_service(args: argparse.Namespace) -> int:
    """/ground_object round trips through DDS with --objects objects in the map."""
    import tempfile

    from ov3d_ros.config import load_perception_config
    from ov3d_ros.ros.benchmarks import run_service_benchmark
    from ov3d_ros.ros.graph_client import GraphClient, GraphProcess, isolated_config

    if args.objects < 1 or args.queries < 1:
        raise ValueError("--objects and --queries must be positive")
    language = load_perception_config(args.config).grounding_node.language
    with tempfile.TemporaryDirectory() as folder, \
            GraphProcess(isolated_config(args.config, folder), Path(folder) / "graph.log"), \
            GraphClient("ov3d_bench_service") as client:
        result = run_service_benchmark(client, language, args.objects, args.queries, args.seed)
    ms = result["round_trip_ms"]
    print(f"/ground_object through DDS, {args.objects} objects, {args.queries} distinct queries "
          f"({result['unanswered']} answered success=false)")
    print("round trip ms: " + "  ".join(f"{k} {ms[k]:.1f}" for k in ("p50", "p90", "p99", "max")))
    print(f"target p99 < 100 ms: {'met' if ms['p99'] < 100 else 'missed'}")
    if args.json:
        write_json(Path(args.json), result)
    return 0


def run_bench_soak(args: argparse.Namespace) -> int:
    """Loop a bag into the graph for --minutes; memory curve and service calls."""
    import tempfile

    from ov3d_ros.evaluation.plots import plot_curve
    from ov3d_ros.ros.benchmarks import run_soak
    from ov3d_ros.ros.graph_client import GraphClient, GraphProcess, isolated_config

    if args.minutes <= 0 or args.rate <= 0 or args.call_hz <= 0 or args.max_voxels < 1000:
        raise ValueError("--minutes, --rate and --call-hz must be positive and --max-voxels at least 1000")
    out = Path(args.json)
    with tempfile.TemporaryDirectory() as folder:
        config = isolated_config(args.config, folder, max_voxels=args.max_voxels)
        with GraphProcess(config, out.with_name(f"{out.stem}_graph.log")) as graph, \
                GraphClient("ov3d_bench_soak") as client:
            result = run_soak(graph, client, Path(args.bag), args.minutes, args.rate, call_hz=args.call_hz)
    curve = result["memory_mb"]
    png = plot_curve([t / 60.0 for t, _, _ in curve], {"graph RSS (MB)": [rss for _, rss, _ in curve]},
                     "minutes", "resident memory (MB)", out.with_name(f"{out.stem}_memory.png"))
    result["plot"] = png.name
    write_json(out, result)
    after, calls = result["rss_after_full_mb"], result["service_calls"]
    print(f"soak: {args.minutes:.0f} min at {args.rate}x ({result['bag_seconds_played']:.0f} s of bag), budget "
          f"{result['budget_voxels']} voxels full after {result['budget_full_after_s']} s, "
          f"{result['evicted_voxels']} evicted")
    if after:
        print(f"RSS after the budget filled: first {after['first']:.0f} MB, last {after['last']:.0f} MB, "
              f"max {after['max']:.0f} MB")
    for window in result["rss_windows_mb"]:
        print(f"  RSS {window['from_s'] / 60:.0f}-{window['to_s'] / 60:.0f} min: mean {window['mean']:.0f} MB, "
              f"max {window['max']:.0f} MB")
    print(f"service calls at {calls['call_hz']:g} Hz ({calls['calls_per_s']:.1f} made a second): "
          f"{calls['answered']} answered, {sum(calls['failed'].values())} failed {calls['failed'] or ''}, "
          f"{calls['dropped']} dropped; p50 {calls['latency_ms']['p50']:.1f} ms, "
          f"p99 {calls['latency_ms']['p99']:.1f} ms")
    print(f"wrote {out} and {png}")
    return 0
