"""3DSS-VLG: weak supervision from scene-level labels, in three stages.

1. Pseudo labels: each point's fused 2D embedding is scored against every class text embedding, the classes the
   scene does not contain are masked out, and the argmax is the point's pseudo label; the softmax over the scene's
   classes (temperature `confidence_temperature`) gives its confidence.
2. Embeddings specialisation: an adapter over the fused embeddings learns (adapted . text) / T against the pseudo
   labels with a cross-entropy (confidence-weighted when configured); text embeddings stay frozen.
3. Soft guidance: the 3D student learns the frozen adapter's embeddings with the cosine loss L_p (the GGSD trainer
   with its stage switches off and the adapter as target map); inference is 3D only, as for GGSD.

Everything happens in the trainer's text space (`training_space`: centred or not, as `ggsd.center_text_space`).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ov3d_ros.config import GGSDConfig, PipelineConfig, VLGConfig
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.openscene import DataError, SceneCloud, read_fused
from ov3d_ros.data.pseudo_labels import PseudoLabels, read_pseudo_labels, write_pseudo_labels
from ov3d_ros.data.scene_labels import SceneLabels, dataset_scene_labels
from ov3d_ros.evaluation.segmentation import FeatureSource, SplitEvaluation, evaluate_labels
from ov3d_ros.language.vocabulary import Vocabulary
from ov3d_ros.models.adapter import Adapter, save_adapter
from ov3d_ros.training.ggsd import GGSDTrainer, masked_pseudo_labels
from ov3d_ros.training.logs import CsvLog
from ov3d_ros.training.scenes import space_rows, training_space


class VLGPipeline:
    """The three stages on one dataset, with their files under `out_dir`: pseudo/<scene>.npz, pseudo_val.json,
    adapter.pt (+ adapter_log.csv) and the soft-guidance student in student/."""

    def __init__(self, dataset: Dataset, vocabulary: Vocabulary, config: PipelineConfig, out_dir: Path,
                 progress: bool = True) -> None:
        self.dataset, self.config, self.out_dir, self.progress = dataset, config, Path(out_dir), progress
        self.vlg: VLGConfig = config.vlg
        self.ggsd: GGSDConfig = config.ggsd
        self.vocabulary = vocabulary
        self.space, self.offset = training_space(vocabulary, self.ggsd.center_text_space)
        self.text = torch.from_numpy(self.space.label_embeddings).float()
        self.train_scenes = dataset.scenes(self.ggsd.train_split)
        self.val_scenes = dataset.scenes(self.ggsd.val_split)
        self.scene_labels: SceneLabels = dataset_scene_labels(dataset, self.train_scenes + self.val_scenes,
                                                              self.vlg.scene_labels)

    @property
    def pseudo_dir(self) -> Path:
        return self.out_dir / "pseudo"

    @property
    def adapter_path(self) -> Path:
        return self.out_dir / "adapter.pt"

    def _rows(self, scene: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The scene's fused features as unit rows of the training space, and the (N,) mask of points having one."""
        fused = read_fused(self.dataset.fused_path(self.ggsd.fused, scene))
        return space_rows(fused.feat, self.offset), fused.mask_full

    # stage 1 -------------------------------------------------------------------------------------------------
    def pseudo_labels(self, scene: str) -> PseudoLabels:
        """Masked pseudo labels of one scene (not written)."""
        rows, seen = self._rows(scene)
        present = torch.from_numpy(self.scene_labels[scene])
        labels = torch.full((len(seen),), -1, dtype=torch.int64)
        confidence = torch.zeros(len(seen))
        labels[seen], confidence[seen] = masked_pseudo_labels(self.space.logits(rows), present,
                                                              self.vlg.confidence_temperature)
        return PseudoLabels(labels.numpy(), confidence.numpy(), self.dataset.classes, present.numpy())

    def generate_pseudo_labels(self) -> SplitEvaluation:
        """Write every train and val scene's pseudo labels; returns their scores on the val split."""
        for scene in tqdm(self.train_scenes + self.val_scenes, desc="pseudo labels", unit="scene",
                          disable=not self.progress):
            write_pseudo_labels(self.pseudo_dir / f"{scene}.npz", self.pseudo_labels(scene))
        return self.score_pseudo_labels(self.val_scenes)

    def score_pseudo_labels(self, scenes: list[str]) -> SplitEvaluation:
        def labels(scene: str, cloud: SceneCloud) -> torch.Tensor:
            return torch.from_numpy(self._read_pseudo(scene, cloud.num_points).labels.astype(np.int64))
        return evaluate_labels(self.dataset, scenes, labels, progress=False)

    def _read_pseudo(self, scene: str, num_points: int) -> PseudoLabels:
        pseudo = read_pseudo_labels(self.pseudo_dir / f"{scene}.npz")
        if len(pseudo.labels) != num_points or pseudo.classes != self.dataset.classes:
            raise DataError(f"{self.pseudo_dir / scene}.npz does not belong to this dataset's scene {scene} "
                            f"(points or classes differ); regenerate with --stage pseudo")
        return pseudo

    # stage 2 -------------------------------------------------------------------------------------------------
    def _adapter_data(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sampled (rows, pseudo labels, confidences) of the training scenes' labelled points."""
        rows, labels, confidence = [], [], []
        for scene in tqdm(self.train_scenes, desc="adapter data", unit="scene", disable=not self.progress):
            scene_rows, seen = self._rows(scene)
            pseudo = self._read_pseudo(scene, len(seen))
            seen_labels, seen_confidence = pseudo.labels[seen.numpy()], pseudo.confidence[seen.numpy()]
            pick = np.flatnonzero(seen_labels >= 0)        # the rows of `scene_rows` that have a pseudo label
            if len(pick) > self.vlg.adapter_points_per_scene:
                pick = rng.choice(pick, self.vlg.adapter_points_per_scene, replace=False)
            rows.append(scene_rows[torch.from_numpy(pick)].half())
            labels.append(torch.from_numpy(seen_labels[pick].astype(np.int64)))
            confidence.append(torch.from_numpy(seen_confidence[pick].astype(np.float32)))
        if not sum(len(r) for r in rows):
            raise DataError("no training point has a pseudo label")
        return torch.cat(rows), torch.cat(labels), torch.cat(confidence)

    def train_adapter(self) -> Adapter:
        """Embeddings specialisation: fit the adapter to the pseudo labels; writes adapter.pt and adapter_log.csv."""
        c = self.vlg
        torch.manual_seed(self.ggsd.seed)
        torch.set_num_threads(self.ggsd.threads)
        rng = np.random.default_rng(self.ggsd.seed)
        rows, labels, confidence = self._adapter_data(rng)
        adapter = Adapter(self.space.dim, c.adapter_hidden, c.adapter_weight)
        optimizer = torch.optim.Adam(adapter.parameters(), lr=c.adapter_learning_rate)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        log = CsvLog(self.out_dir / "adapter_log.csv")
        started = time.perf_counter()
        for step in tqdm(range(1, c.adapter_steps + 1), desc="adapter", unit="step", disable=not self.progress):
            batch = torch.from_numpy(rng.integers(0, len(rows), min(c.adapter_batch, len(rows))))
            logits = adapter(rows[batch].float()) @ self.text.T / c.adapter_temperature
            per_point = F.cross_entropy(logits, labels[batch], reduction="none")
            weights = confidence[batch] if c.confidence_weighted else torch.ones_like(per_point)
            loss = (per_point * weights).sum() / weights.sum().clamp_min(1e-12)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % self.ggsd.log_every == 0 or step == c.adapter_steps:
                accuracy = (logits.argmax(1) == labels[batch]).float().mean().item()
                log.write({"step": step, "loss": loss.item(), "pseudo_label_agreement": accuracy,
                           "seconds": time.perf_counter() - started})
        adapter.eval().requires_grad_(False)
        save_adapter(self.adapter_path, adapter, self.vocabulary.encoder_name,
                     {"text_offset": None if self.offset is None else torch.from_numpy(self.offset).float(),
                      "vlg_config": dataclasses.asdict(c)})
        return adapter

    def adapter_source(self, adapter: Adapter) -> FeatureSource:
        """A FeatureSource of the adapted fused features (the 'adapter only' row; classify in `self.space`)."""
        def features(scene: str, cloud: SceneCloud) -> tuple[torch.Tensor, torch.Tensor]:
            rows, seen = self._rows(scene)
            dense = torch.zeros((cloud.num_points, self.space.dim))
            dense[seen] = adapter.map_rows(rows)
            return dense, seen
        return features

    # stage 3 -------------------------------------------------------------------------------------------------
    def guidance_trainer(self, adapter: Adapter, out_dir: Path | None = None, **overrides: Any) -> GGSDTrainer:
        """The soft-guidance student's trainer: L_p towards the frozen adapter's embeddings for `guidance_steps`,
        with the ggsd section's optimiser, crops and augmentation; `overrides` replace GGSDConfig fields (the
        bench's combination row turns GGSD's own stages back on)."""
        config = dataclasses.replace(self.ggsd, superpoint_loss=False, self_distillation=False,
                                     superpoint_voting=False, distill_steps=self.vlg.guidance_steps,
                                     self_distill_steps=0)
        config = dataclasses.replace(config, **overrides)
        return GGSDTrainer(self.dataset, self.vocabulary, config, self.config.student,
                           out_dir or self.out_dir / "student", progress=self.progress,
                           target_map=adapter.map_rows, scene_labels=self.scene_labels)
