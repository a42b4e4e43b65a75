"""GGSD: geometry-guided distillation from fused 2D features, then EMA self-distillation with superpoint voting.

Stage 1 trains the student with L_d = L_p + L_sp: L_p = 1 - cos(F3D, F2D) per point seen by the 2D teacher,
L_sp the same on superpoint means. Stage 2 keeps w * L_d and adds L_sd: an EMA copy of the student labels every
point with its nearest class text embedding, superpoint voting replaces each point's label by its superpoint's
majority, and the student learns those labels with a softmax cross-entropy over the vocabulary at temperature
tau. Each part is a switch of GGSDConfig, so the same code produces every row of GGSD's ablation. Two hooks serve
3DSS-VLG (training/vlg.py): a target map that replaces the fused targets (its adapter), and scene-level labels
that, with `scene_label_masking`, restrict the stage-2 pseudo labels to the classes a scene contains.

Multi-process training: run under `torchrun` (gloo on CPU, nccl on GPU); each process draws its own crops and
DistributedDataParallel averages the gradients; process 0 writes logs and checkpoints.
"""
from __future__ import annotations

import copy
import math
import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from ov3d_ros.config import FusionNodeConfig, GGSDConfig, StudentSection, load_perception_config
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.scene_labels import SceneLabels
from ov3d_ros.language.vocabulary import Vocabulary
from ov3d_ros.mapping.superpoints import SuperpointCache
from ov3d_ros.models.student import Student, student_config
from ov3d_ros.training.checkpoint import load_checkpoint, save_checkpoint
from ov3d_ros.training.logs import CsvLog, tensorboard
from ov3d_ros.training.scenes import (Sample, TargetMap, TrainingScene, collate, load_training_scene, make_sample,
                                      training_space, with_fused_map)

STAGE2_LR_SCALE = 0.1


def segment_mean(values: torch.Tensor, segments: torch.Tensor, count: int,
                 weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, D) weighted means of `values` per segment id, and (count,) total weight per segment."""
    w = torch.ones(len(values), dtype=values.dtype) if weights is None else weights.to(values.dtype)
    sums = torch.zeros((count, values.shape[1]), dtype=values.dtype).index_add_(0, segments, values * w[:, None])
    totals = torch.zeros(count, dtype=values.dtype).index_add_(0, segments, w)
    return sums / totals.clamp_min(1e-12)[:, None], totals


def _rows(point_to_voxel: torch.Tensor | None, count: int) -> torch.Tensor:
    """The feature row each point reads: `point_to_voxel`, or the identity when features are per point."""
    return torch.arange(count) if point_to_voxel is None else point_to_voxel


def pixel_point_loss(features: torch.Tensor, target: torch.Tensor, seen: torch.Tensor,
                     weights: torch.Tensor | None = None,
                     point_to_voxel: torch.Tensor | None = None) -> torch.Tensor:
    """L_p: mean over seen points of 1 - cos(F3D, F2D), weighted per point when `weights` (N,) are given.

    `features` are unit-norm rows: one per point, or one per voxel with `point_to_voxel` (N,) giving each point's
    row; `target` (N, D) are unit rows too. Then cos(f, t) = f . t, so the loss is linear in the rows and is summed
    per voxel, never expanded to (N, D) points (the same value; much cheaper backward)."""
    w = seen.to(target.dtype) if weights is None else weights.to(target.dtype) * seen
    total = w.sum()
    if total <= 0:
        return features.sum() * 0.0
    pull = torch.zeros((len(features), target.shape[1]), dtype=target.dtype).index_add_(
        0, _rows(point_to_voxel, len(target)), target * w[:, None])
    return 1.0 - (features * pull).sum() / total


def _superpoint_sums(features: torch.Tensor, superpoints: torch.Tensor, rows: torch.Tensor,
                     count: int) -> torch.Tensor:
    """(count, D) sums of the student's point features per superpoint, built from (voxel, superpoint) pairs."""
    pairs, multiplicity = torch.unique(rows * count + superpoints, return_counts=True)
    return torch.zeros((count, features.shape[1]), dtype=features.dtype).index_add_(
        0, pairs % count, features[pairs // count] * multiplicity[:, None].to(features.dtype))


def superpoint_loss(features: torch.Tensor, target: torch.Tensor, seen: torch.Tensor,
                    superpoints: torch.Tensor, weights: torch.Tensor | None = None,
                    point_to_voxel: torch.Tensor | None = None) -> torch.Tensor:
    """L_sp: 1 - cos between superpoint means of F3D (all points) and F2D (seen points), over superpoints seen;
    with per-point `weights` (N,), each superpoint counts with the mean weight of its seen points. `features` and
    `point_to_voxel` as in `pixel_point_loss`: the student's means are built from (voxel, superpoint) pairs."""
    count = int(superpoints.max()) + 1 if len(superpoints) else 0
    student_sums = _superpoint_sums(features, superpoints, _rows(point_to_voxel, len(target)), count)
    teacher_means, seen_weight = segment_mean(target, superpoints, count, seen)
    valid = seen_weight > 0
    if not valid.any():
        return features.sum() * 0.0
    distance = 1.0 - F.cosine_similarity(student_sums[valid], teacher_means[valid], dim=1)
    if weights is None:
        return distance.mean()
    w = segment_mean(weights[:, None].to(target.dtype), superpoints, count, seen)[0][valid, 0]
    return (distance * w).sum() / w.sum().clamp_min(1e-12)


def vocabulary_loss(features: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, temperature: float,
                    weights: torch.Tensor | None = None,
                    point_to_voxel: torch.Tensor | None = None) -> torch.Tensor:
    """Classification over the vocabulary: the weighted mean over labelled points (labels >= 0) of the softmax
    cross-entropy of (F3D . text) / temperature against their class. `features` and `point_to_voxel` as in
    `pixel_point_loss`: logits are computed per voxel and gathered per point."""
    known = labels >= 0
    w = known.to(features.dtype) if weights is None else weights.to(features.dtype) * known
    total = w.sum()
    if total <= 0:
        return features.sum() * 0.0
    rows = _rows(point_to_voxel, len(labels))
    logits = features @ text.T / temperature
    nll = torch.logsumexp(logits, dim=1)[rows] - logits[rows, labels.clamp_min(0)]
    return (nll * w).sum() / total


def superpoint_vocabulary_loss(features: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                               superpoints: torch.Tensor, temperature: float, weights: torch.Tensor | None = None,
                               point_to_voxel: torch.Tensor | None = None) -> torch.Tensor:
    """L_sp for the vocabulary loss: each superpoint's mean student feature (normalised) classified against the
    majority class of its labelled points, weighted by the mean weight of those points."""
    known = labels >= 0
    if not known.any():
        return features.sum() * 0.0
    count = int(superpoints.max()) + 1
    means = F.normalize(_superpoint_sums(features, superpoints, _rows(point_to_voxel, len(labels)), count), dim=1)
    majority = superpoint_majority(labels[known], superpoints[known], len(text), count)
    point_weights = known.float() if weights is None else weights.float() * known
    w = torch.zeros(count).index_add_(0, superpoints, point_weights)
    size = torch.zeros(count).index_add_(0, superpoints, known.float())
    w = torch.where(size > 0, w / size.clamp_min(1), torch.zeros(()))
    return vocabulary_loss(means, text, torch.where(size > 0, majority, -1), temperature, w)


def class_balance_weights(classes: torch.Tensor, seen: torch.Tensor, power: float) -> torch.Tensor:
    """(N,) per-point weights freq(c)^-power of the class c (N,) the teacher gives each seen point (its nearest
    text embedding), normalised to mean 1 over the seen points; unseen points get 0. power 0 = uniform, 0.5 =
    inverse square root of the class frequency, 1 = every class present counts the same."""
    weights = torch.zeros(len(classes), dtype=torch.float32)
    if not seen.any():
        return weights
    _, inverse, frequency = torch.unique(classes[seen], return_inverse=True, return_counts=True)
    balanced = frequency[inverse].to(weights.dtype).pow(-power)
    weights[seen] = balanced / balanced.mean()
    return weights


def superpoint_majority(labels: torch.Tensor, superpoints: torch.Tensor, num_classes: int,
                        count: int | None = None) -> torch.Tensor:
    """(count,) the most frequent of the `labels` (N,) in each superpoint id 0..count-1 (ties: the lowest class
    index; a superpoint without points: class 0). `count` defaults to the largest id + 1."""
    count = int(superpoints.max()) + 1 if count is None else count
    votes = torch.zeros(count * num_classes, dtype=torch.int64)
    votes.index_add_(0, superpoints * num_classes + labels, torch.ones_like(labels))
    return votes.view(count, num_classes).argmax(dim=1)


def superpoint_vote(labels: torch.Tensor, superpoints: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Every point takes the most frequent label of its superpoint (ties: the lowest class index)."""
    return superpoint_majority(labels, superpoints, num_classes)[superpoints]


def masked_pseudo_labels(logits: torch.Tensor, present: torch.Tensor,
                         temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(M,) pseudo labels: the argmax of (M, C) logits over the classes `present` (C,) in the scene only, and
    (M,) confidences: the softmax probability of that class among the present ones at `temperature`."""
    if not present.any():
        raise ValueError("a scene needs at least one scene-level label")
    masked = logits.masked_fill(~present, float("-inf"))
    confidence, labels = torch.softmax(masked / temperature, dim=1).max(dim=1)
    return labels, confidence


def self_distillation_loss(features: torch.Tensor, text: torch.Tensor, labels: torch.Tensor,
                           temperature: float, point_to_voxel: torch.Tensor | None = None) -> torch.Tensor:
    """L_sd: mean over points of the softmax cross-entropy of (F3D . text) / tau against their pseudo labels
    `labels` (N,); `features` and `point_to_voxel` as in `pixel_point_loss`."""
    logits = features @ text.T / temperature
    rows = _rows(point_to_voxel, len(labels))
    return (torch.logsumexp(logits, dim=1)[rows] - logits[rows, labels]).mean()


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, momentum: float) -> None:
    """ema <- momentum * ema + (1 - momentum) * model (buffers copied)."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.mul_(momentum).add_(p.detach(), alpha=1.0 - momentum)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


@dataclasses.dataclass
class StepLosses:
    total: float
    pixel: float
    superpoint: float
    self_distill: float
    pseudo_accuracy: float      # share of pseudo labels equal to the ground truth (monitoring only; NaN if none)
    student_accuracy: float     # share of the student's own labels equal to the ground truth (monitoring only)


class GGSDTrainer:
    """Runs both GGSD stages with checkpoints (resumable), CSV + TensorBoard logs and optional DDP."""

    def __init__(self, dataset: Dataset, vocabulary: Vocabulary, config: GGSDConfig, student: StudentSection,
                 out_dir: Path, progress: bool = True, target_map: TargetMap | None = None,
                 scene_labels: SceneLabels | None = None) -> None:
        """`target_map` turns the fused targets into other unit rows before training (the 3DSS-VLG adapter);
        `scene_labels` (scene -> (C,) presence) are needed by `config.scene_label_masking`."""
        self.dataset, self.vocabulary, self.config, self.out_dir = dataset, vocabulary, config, Path(out_dir)
        self.progress = progress
        self.rank, self.world = _distributed_rank()
        if config.time_budget_s > 0 and self.world > 1:
            raise ValueError("ggsd.time_budget_s is for single-process runs (processes would stop at different steps)")
        torch.manual_seed(config.seed + self.rank)
        torch.set_num_threads(config.threads)
        self.model = Student(student_config(student.preset, out_dim=vocabulary.dim, voxel_size=student.voxel_size_m,
                                            inputs=tuple(student.inputs)))
        self.ddp = torch.nn.parallel.DistributedDataParallel(self.model) if self.world > 1 else None
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        self.total_steps = config.distill_steps + (config.self_distill_steps if config.self_distillation else 0)
        self.step = 0
        self.elapsed_s = 0.0       # training seconds so far (over resumes): the clock of a time budget
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.ema: Student | None = None
        self.space, self.offset = training_space(vocabulary, config.center_text_space)
        self.text = torch.from_numpy(self.space.label_embeddings).float()
        cache = SuperpointCache.of_dataset(dataset.root)
        names = dataset.scenes(config.train_split)[self.rank::self.world]
        if not names:
            raise ValueError(f"split {config.train_split!r} has no scene for process {self.rank}")
        if config.scene_label_masking and (scene_labels is None or any(n not in scene_labels for n in names)):
            raise ValueError("ggsd.scene_label_masking needs scene-level labels for every training scene")
        self.scenes: list[TrainingScene] = [
            load_training_scene(dataset, n, config.fused, cache, self.text, self.offset, target_map,
                                None if scene_labels is None else scene_labels.get(n),
                                keep_targets=config.loss == "cosine") for n in names]
        self.map_fusion: FusionNodeConfig = load_perception_config(config.maps_config or None).fusion_node
        if config.fused_map_share > 0:
            self.scenes = self._with_fused_maps(self.scenes)
        self.rng = np.random.default_rng([config.seed, self.rank])

    def _with_fused_maps(self, scenes: list[TrainingScene]) -> list[TrainingScene]:
        """The scenes with their fused RGB-D maps attached (made once and cached under <data>/maps); scenes
        without posed frames keep their clouds only."""
        from ov3d_ros.mapping.scene_maps import SceneMapCache

        maps = SceneMapCache(self.dataset, self.map_fusion, workers=self.config.threads)
        ignore = self.dataset.info.ignore_label
        out = []
        for scene in tqdm(scenes, desc="fused maps", unit="scene", disable=not (self.progress and self.rank == 0)):
            try:
                out.append(with_fused_map(scene, maps.get(scene.name), ignore))
            except FileNotFoundError:
                out.append(scene)
        return out

    @property
    def done_fraction(self) -> float:
        """How far training is, in [0, 1]: by steps, or by elapsed time under a time budget."""
        if self.config.time_budget_s > 0:
            return min(self.elapsed_s / self.config.time_budget_s, 1.0)
        return min(self.step / max(self.total_steps, 1), 1.0)

    @property
    def finished(self) -> bool:
        return self.done_fraction >= 1.0

    @property
    def _stage1_fraction(self) -> float:
        """The share of training (steps or time) that stage 1 takes."""
        return self.config.distill_steps / max(self.total_steps, 1)

    def _lr_factor(self, _: int) -> float:
        """Cosine decay to 1 % within each stage; stage 2 starts from STAGE2_LR_SCALE of the base rate.

        The schedule of stage 1 does not depend on stage 2, so a stage-1 checkpoint is exactly the state a full
        run has when it enters stage 2 (the ablation resumes from it)."""
        first = self._stage1_fraction
        if self.done_fraction < first:
            start, progress = 1.0, self.done_fraction / first
        else:
            start, progress = STAGE2_LR_SCALE, (self.done_fraction - first) / max(1.0 - first, 1e-12)
        return start * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))

    @property
    def stage(self) -> str:
        first = self._stage1_fraction
        return "distill" if first >= 1.0 or self.done_fraction < first else "self_distill"

    def _forward(self, net: torch.nn.Module, sample: Sample) -> tuple[torch.Tensor, torch.Tensor]:
        """(V, D) voxel features of the sample and each point's voxel row."""
        return net(sample.xyz, sample.inputs, sample.batch, per_voxel=True)

    def _stage1_loss(self, features: torch.Tensor, rows: torch.Tensor,
                     sample: Sample) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: (pixel-point term, superpoint term) of the configured loss (vocabulary or cosine)."""
        c = self.config
        if c.loss == "cosine":
            weights = class_balance_weights(sample.teacher_class, sample.seen, c.class_balance) \
                if c.class_balance > 0 else None
            pixel = pixel_point_loss(features, sample.target, sample.seen, weights, rows)
            geometric = superpoint_loss(features, sample.target, sample.seen, sample.superpoints, weights, rows) \
                if c.superpoint_loss else pixel * 0.0
            return pixel, geometric
        labels = sample.teacher_class
        if c.labels == "ground_truth":
            if sample.labels is None:
                raise ValueError("ggsd.labels = ground_truth needs scenes with ground-truth labels")
            labels = torch.where(sample.labels.long() < len(self.text), sample.labels.long(), -1)
        weights = class_balance_weights(labels, labels >= 0, c.class_balance) if c.class_balance > 0 else None
        pixel = vocabulary_loss(features, self.text, labels, c.vocabulary_temperature, weights, rows)
        geometric = superpoint_vocabulary_loss(features, self.text, labels, sample.superpoints,
                                               c.vocabulary_temperature, weights, rows) \
            if c.superpoint_loss else pixel * 0.0
        return pixel, geometric

    def train_step(self) -> StepLosses:
        c = self.config
        if self.stage == "self_distill" and self.ema is None:
            self.ema = copy.deepcopy(self.model).eval()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        picks = [int(self.rng.integers(len(self.scenes))) for _ in range(c.scenes_per_step)]
        sample = collate([make_sample(self.scenes[i], c, self.rng, self.model.config.inputs) for i in picks])
        features, rows = self._forward(self.ddp if self.ddp is not None else self.model, sample)
        pixel, geometric = self._stage1_loss(features, rows, sample)
        loss = pixel + geometric
        distill = pixel * 0.0
        known = sample.labels < len(self.text) if sample.labels is not None else None
        agree = labelled = 0
        if self.stage == "self_distill":
            with torch.no_grad():
                ema_features, ema_rows = self._forward(self.ema, sample)
                logits = (ema_features @ self.text.T)[ema_rows]
                if c.scene_label_masking:
                    present = torch.stack([self.scenes[i].present for i in picks])
                    pseudo = masked_pseudo_labels(logits, present[sample.batch] if sample.batch is not None
                                                  else present[0], 1.0)[0]
                else:
                    pseudo = logits.argmax(1)
                if c.superpoint_voting:
                    pseudo = superpoint_vote(pseudo, sample.superpoints, len(self.text))
            distill = self_distillation_loss(features, self.text, pseudo, c.temperature, rows)
            if known is not None:
                agree, labelled = int((pseudo[known] == sample.labels[known]).sum()), int(known.sum())
            loss = distill + c.distill_weight * loss
        correct = known_points = 0
        if known is not None:
            with torch.no_grad():
                own = (features @ self.text.T).argmax(1)[rows]
                correct, known_points = int((own[known] == sample.labels[known]).sum()), int(known.sum())
        loss.backward()
        parts = [t.item() for t in (loss, pixel, geometric, distill)]
        self.optimizer.step()
        self.step += 1
        self.scheduler.step()
        if self.ema is not None:
            ema_update(self.ema, self.model, c.ema_momentum)
        return StepLosses(*parts, pseudo_accuracy=agree / labelled if labelled else float("nan"),
                          student_accuracy=correct / known_points if known_points else float("nan"))

    def validate(self, scenes: list[str] | None = None, on_maps: bool | None = None) -> dict[str, float]:
        """The student's mIoU / mAcc (overall, head / common / tail) and the number of classes it labels right
        somewhere out of those present, on `scenes` (default: the first `val_scenes` val scenes); with `on_maps`
        (default: when training on fused maps), also its mIoU on those scenes' fused RGB-D maps (`map_miou`)."""
        from ov3d_ros.evaluation.segmentation import FusedMaps, evaluate_features, student_source

        if scenes is None:
            scenes = self.dataset.scenes(self.config.val_split)
            scenes = scenes[:self.config.val_scenes] if self.config.val_scenes else scenes
        if not scenes:
            raise ValueError(f"split {self.config.val_split!r} has no scene to validate on")
        was_training = self.model.training
        self.model.eval()
        try:
            scores = evaluate_features(self.dataset, scenes, student_source(self.model), self.space,
                                       progress=False).scores
            map_scores = {}
            if on_maps or (on_maps is None and self.config.fused_map_share > 0):
                source = FusedMaps(self.dataset, self.map_fusion).runner(self.model, True)
                map_scores["map_miou"] = evaluate_features(self.dataset, scenes, source, self.space,
                                                           progress=False).scores.miou
        finally:
            self.model.train(was_training)
        return {"miou": scores.miou, "macc": scores.macc,
                **{group: scores.group_miou.get(group, float("nan")) for group in ("head", "common", "tail")},
                "classes_right": int((scores.iou[scores.present] > 0).sum()), "classes_present": int(scores.present.sum()),
                **map_scores}

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "elapsed_s": self.elapsed_s, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "text_offset": None if self.offset is None else torch.from_numpy(self.offset).float(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "train_config": dataclasses.asdict(self.config), "classes": list(self.dataset.classes)}

    def save(self, name: str) -> Path:
        path = self.out_dir / name
        save_checkpoint(path, self.model, self.vocabulary.encoder_name, self.state())
        return path

    def resume(self, path: Path) -> None:
        content = load_checkpoint(path)
        self.model.load_state_dict(content["model"])
        self.optimizer.load_state_dict(content["optimizer"])
        self.scheduler.load_state_dict(content["scheduler"])
        self.step = int(content["step"])
        self.elapsed_s = float(content.get("elapsed_s", 0.0))
        if content.get("ema") is not None:
            self.ema = copy.deepcopy(self.model).eval()
            self.ema.load_state_dict(content["ema"])

    def resume_latest(self) -> bool:
        """Resume from this run's own out_dir/last.pt when there is one (a run cut off part way); True if so."""
        last = self.out_dir / "last.pt"
        if not last.exists():
            return False
        self.resume(last)
        return True

    def run(self, validate_at: tuple[float, ...] = ()) -> Path:
        """Train to `total_steps` or the time budget (from a resumed step if any); returns the final checkpoint's
        path. Besides every `val_every` steps, the student is validated when training passes each fraction of
        `validate_at` (a curve over a time budget)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        lead = self.rank == 0
        writer = tensorboard(self.out_dir) if lead else None
        log = CsvLog(self.out_dir / "log.csv") if lead else None
        val_log = CsvLog(self.out_dir / "val.csv") if lead and (self.config.val_every or validate_at) else None
        pending = sorted(validate_at)
        bar = tqdm(total=None if self.config.time_budget_s > 0 else self.total_steps, initial=self.step,
                   desc="ggsd", unit="step",
                   disable=not (self.progress and lead))
        started = time.perf_counter()
        while not self.finished:
            if lead and self.stage == "self_distill" and self.ema is None:
                self.save("stage1.pt")          # the student as stage 1 left it (compare with final.pt)
            step_started = time.perf_counter()
            losses = self.train_step()
            self.elapsed_s += time.perf_counter() - step_started
            bar.update(1)
            if lead and (self.step % self.config.log_every == 0 or self.finished):
                row = {"step": self.step, "stage": self.stage, "lr": self.scheduler.get_last_lr()[0],
                       "seconds": time.perf_counter() - started, **dataclasses.asdict(losses)}
                log.write(row)
                for key, value in dataclasses.asdict(losses).items():
                    writer.add_scalar(f"loss/{key}", value, self.step)
                bar.set_postfix(loss=f"{losses.total:.3f}", stage=self.stage)
            passed = [f for f in pending if self.done_fraction >= f]
            pending = [f for f in pending if f not in passed]
            if val_log is not None and ((self.config.val_every and self.step % self.config.val_every == 0)
                                        or self.finished or passed):
                scores = self.validate()
                val_log.write({"step": self.step, "stage": self.stage, "seconds": round(self.elapsed_s, 1), **scores})
                for key, value in scores.items():
                    writer.add_scalar(f"val/{key}", value, self.step)
                bar.write(f"step {self.step}: val mIoU {scores['miou']:.1f}, mAcc {scores['macc']:.1f}")
            if lead and self.step % self.config.checkpoint_every == 0:
                self.save("last.pt")
        bar.close()
        if writer is not None:
            writer.close()
        final = self.out_dir / "final.pt"
        if lead:
            self.save("last.pt")
            final = self.save("final.pt")
        if self.world > 1:
            dist.barrier()
        return final


def _distributed_rank() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)
