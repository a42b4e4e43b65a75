"""Weakly supervised grounding (WS-3DVG) from (scene, sentence) pairs: data, the teacher's fine stage, and the
distilled and fully supervised two-stage grounders.

Data: every scene of a split becomes a map labelled by a feature source (2D fusion or a student), its objects
(proposals) and their neighbourhoods; every sentence becomes its QueryContext and coarse similarities. The
ground-truth target is kept only to score, and to train the fully supervised upper bound.

Teacher: the keyword reconstructor is trained so that the sentence's masked words are likely under a mixture over
the coarse stage's top K candidates, each weighted by its coarse prior: loss = -log sum_k prior_k p(words | k).
No target is ever named to it; the candidate that explains the sentence best wins.

Student: the two-stage grounder learns the teacher's posterior over those candidates (soft cross-entropy over all
of the scene's objects) plus a MIL loss: the best object of the paired scene must outscore the best object of
another scene for the same sentence.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import softmax
from tqdm import tqdm

from ov3d_ros.config import ConfigError, GroundingConfig, PipelineConfig
from ov3d_ros.data.dataset import Dataset
from ov3d_ros.data.openscene import DataError
from ov3d_ros.data.scanrefer import read_scanrefer
from ov3d_ros.evaluation.grounding import instance_boxes, labelled_objects, recall_from_overlap, truth_overlap
from ov3d_ros.evaluation.segmentation import FeatureSource, checkpoint_source, dataset_vocabulary, fused_source
from ov3d_ros.geometry.boxes import OrientedBox
from ov3d_ros.grounding.grounders import (CoarseToFineTeacher, PreparedScene, QueryContext, QueryEncoder,
                                          coarse_matrix, grounder_batch, prepare_scene, reconstruction_batch,
                                          load_grounding_model, run_grounder, save_grounding_model)
from ov3d_ros.grounding.query import QueryParser
from ov3d_ros.grounding.words import WordVectors, word_ids, word_list
from ov3d_ros.language.vocabulary import Vocabulary
from ov3d_ros.mapping.superpoints import SuperpointCache
from ov3d_ros.models.grounding import GroundingModelConfig, KeywordReconstructor, TwoStageGrounder, reconstruction_nll
from ov3d_ros.training.logs import CsvLog

SUPERVISED_MIN_IOU = 0.25


@dataclass(frozen=True, eq=False)
class GroundingExample:
    """One sentence of one scene, ready for the networks."""

    scene: int                    # index into GroundingData.scenes
    query: QueryContext
    coarse: np.ndarray            # (P, 2) class and feature similarity of the scene's objects
    eval_type: str
    target: OrientedBox | None    # ground truth: scoring and the supervised upper bound only
    best_object: int              # the object overlapping the target most when IoU >= SUPERVISED_MIN_IOU, else -1


@dataclass(frozen=True, eq=False)
class GroundingData:
    """A split ready for grounding: each scene's prepared objects and every description as an example."""

    scene_ids: list[str]
    scenes: list[PreparedScene]
    examples: list[GroundingExample]
    recall: dict[str, float]      # the objects' recall of the described targets


@dataclass(frozen=True, eq=False)
class GroundingSetup:
    """What turns a dataset into grounding data: the map's feature source and the text side of its space."""

    source: FeatureSource
    space: Vocabulary
    queries: QueryEncoder
    text_space: str
    door_label: int | None


def grounding_setup(dataset: Dataset, config: PipelineConfig, map_source: str = "fused") -> GroundingSetup:
    """Maps labelled by 2D fusion ('fused') or by a student checkpoint (or 'default'), and the matching queries."""
    from ov3d_ros.language.encoders import build_text_encoder

    vocabulary = dataset_vocabulary(dataset, config.language)
    source, space, offset = (fused_source(dataset, config.grounding.fused), vocabulary, None) \
        if map_source == "fused" else checkpoint_source(map_source, vocabulary)
    encoder = build_text_encoder(config.language)
    parser = QueryParser(dataset.classes, dataset.info.synonyms)
    queries = QueryEncoder(parser, space.label_embeddings, encoder.encode, WordVectors(encoder.encode), offset)
    door = config.grounding.door_label
    return GroundingSetup(source, space, queries, vocabulary.encoder_name,
                          dataset.classes.index(door) if door in dataset.classes else None)


def load_grounding_data(dataset: Dataset, split: str, setup: GroundingSetup, neighbours: int,
                        progress: bool = True) -> GroundingData:
    """Objects of every scene of `split` with descriptions, and one example per description."""
    expressions = read_scanrefer(dataset.root / "scanrefer" / f"{split}.json")
    scene_ids = [s for s in dataset.scenes(split) if any(e.scene_id == s for e in expressions)]
    if not scene_ids:
        raise DataError(f"no referring expressions for the scenes of split {split!r}")
    superpoints = SuperpointCache.of_dataset(dataset.root)
    scenes, examples, recalls = [], [], []
    for index, scene_id in enumerate(tqdm(scene_ids, desc=f"{split} maps", unit="scene", disable=not progress)):
        cloud = dataset.scene_cloud(scene_id)
        objects = labelled_objects(scene_id, cloud, setup.source, setup.space,
                                   superpoints.get(scene_id, cloud.coords, cloud.colors))
        scene = prepare_scene(objects, setup.door_label, neighbours)
        scenes.append(scene)
        truth = instance_boxes(cloud)
        here = [e for e in expressions if e.scene_id == scene_id]
        targets = [truth.get(e.object_id) for e in here]
        overlap = truth_overlap([t for t in targets if t is not None], objects.boxes)
        recalls.append(recall_from_overlap(overlap))
        rows = iter(overlap)
        for expression, target in zip(here, targets):
            row = next(rows) if target is not None else np.zeros(0)
            best = int(row.argmax()) if len(row) and row.max() >= SUPERVISED_MIN_IOU else -1
            query = setup.queries(expression.description)
            examples.append(GroundingExample(index, query, coarse_matrix(query, scene),
                                             expression.eval_type or "unknown", target, best))
    recall = {key: float(np.nanmean([r[key] for r in recalls])) for key in recalls[0]}
    return GroundingData(scene_ids, scenes, examples, recall)


def model_config(config: GroundingConfig, feature_dim: int, grounder: bool) -> GroundingModelConfig:
    """The teacher's (`grounder` False) or the grounder's network config."""
    return GroundingModelConfig(feature_dim=feature_dim, dim=config.grounder_dim if grounder else config.dim,
                                heads=config.heads, layers=config.layers,
                                dropout=config.grounder_dropout if grounder else config.dropout)


def inference_settings(config: GroundingConfig) -> dict:
    """What a checkpoint must carry so inference prepares objects and queries as training did."""
    return {"top_k": config.top_k, "class_weight": config.class_weight,
            "prior_temperature": config.prior_temperature, "neighbours": config.neighbours,
            "door_label": config.door_label}


def _batches(indices: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(indices)
    return [order[i:i + size] for i in range(0, len(order), size)]


def _training_mask(query: QueryContext, config: GroundingConfig, rng: np.random.Generator) -> np.ndarray:
    """Mask of one training sentence: each keyword group with chance `group_mask` (at least one group), any
    other word with chance `random_mask`; never the whole sentence."""
    length = len(query.words)
    groups = query.keyword_groups
    mask = rng.random(length) < config.random_mask
    chosen = [g for g in groups if rng.random() < config.group_mask] or \
        ([groups[int(rng.integers(len(groups)))]] if groups else [])
    for group in chosen:
        mask[[p for p in group if p < length]] = True
    if mask.all() and length > 1:
        mask[int(rng.integers(length))] = False
    if not mask.any():
        mask[int(rng.integers(length))] = True
    return mask


class GroundingTrainer:
    """Trains the teacher's reconstructor, then the distilled grounder (or the supervised upper bound)."""

    def __init__(self, data: GroundingData, config: GroundingConfig, text_space: str, out_dir: Path,
                 progress: bool = True) -> None:
        if not data.examples:
            raise ConfigError("no training sentences")
        self.data, self.config, self.text_space, self.out_dir, self.progress = (data, config, text_space,
                                                                                Path(out_dir), progress)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(config.threads)
        self.feature_dim = data.scenes[0].objects.features.shape[1]

    def _optimiser(self, model: torch.nn.Module, learning_rate: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=self.config.weight_decay)

    def _epochs(self, epochs: int, name: str, step: Callable[[np.ndarray], dict[str, float]],
                rng: np.random.Generator, indices: np.ndarray) -> None:
        log = CsvLog(self.out_dir / f"{name}_log.csv")
        bar = tqdm(range(epochs), desc=name, unit="epoch", disable=not self.progress)
        for epoch in bar:
            totals: dict[str, list[float]] = {}
            for batch in _batches(indices, self.config.batch_size, rng):
                for key, value in step(batch).items():
                    totals.setdefault(key, []).append(value)
            row = {"epoch": epoch + 1, **{k: float(np.mean(v)) for k, v in totals.items()}}
            log.write(row)
            bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k != "epoch"})

    def train_teacher(self, word_vectors: WordVectors) -> CoarseToFineTeacher:
        """Train the keyword reconstructor on every training sentence; writes teacher.pt."""
        config, rng = self.config, np.random.default_rng(config_seed(self.config, 1))
        torch.manual_seed(config_seed(self.config, 1))
        examples = self.data.examples
        words = word_list([e.query.parsed.tokens for e in examples], config.min_word_count)
        table = torch.from_numpy(word_vectors(list(words)))
        table[0] = 0.0
        model = KeywordReconstructor(model_config(config, self.feature_dim, False), table)
        index = {w: i for i, w in enumerate(words)}
        teacher = CoarseToFineTeacher(model, index, config.top_k, config.class_weight, config.prior_temperature)
        candidates = [teacher.candidates(e.query, self.data.scenes[e.scene]) for e in examples]
        targets = [torch.from_numpy(word_ids(e.query.parsed.tokens or ("?",), index)) for e in examples]
        optimiser = self._optimiser(model, config.learning_rate)

        def step(batch: np.ndarray) -> dict[str, float]:
            model.train()
            items, owners, priors, target_rows = [], [], [], []
            for b, i in enumerate(batch):
                example = examples[i]
                mask = _training_mask(example.query, config, rng)
                chosen, log_prior = candidates[i]
                items += [(example.query, self.data.scenes[example.scene], int(c), mask) for c in chosen]
                owners += [b] * len(chosen)
                priors.append(torch.from_numpy(log_prior).float())
                target_rows += [targets[i]] * len(chosen)
            inputs = reconstruction_batch(items, model.config.max_words)
            length = inputs["words"].shape[1]
            target = torch.stack([F.pad(t[:length], (0, length - len(t[:length]))) for t in target_rows])
            logits = model(inputs["words"], inputs["masked"], inputs["word_padding"],
                           model.memory(inputs["context"], inputs["context_pairs"]), inputs["memory_padding"])
            masked = inputs["masked"].float()
            visible = (~inputs["masked"] & ~inputs["word_padding"]).float()
            nll = reconstruction_nll(logits, target, masked)
            visible_nll = reconstruction_nll(logits, target, visible) / visible.sum(1).clamp(min=1)
            owner = torch.tensor(owners)
            mixture = torch.stack([-torch.logsumexp(priors[b] - nll[owner == b], 0) for b in range(len(batch))])
            loss = (1 - config.unmasked_weight) * mixture.mean() + config.unmasked_weight * visible_nll.mean()
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            return {"loss": float(loss.detach()), "masked_nll": float(nll.detach().mean())}

        self._epochs(config.teacher_epochs, "teacher", step, rng, np.arange(len(examples)))
        model.eval()
        save_grounding_model(self.out_dir / "teacher.pt", "reconstructor", model, self.text_space,
                             inference_settings(config), {"words": list(words)})
        return teacher

    def teacher_posteriors(self, teacher: CoarseToFineTeacher) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Example index -> the teacher's (candidates, posterior probabilities at `distill_temperature`)."""
        out = {}
        for i, example in enumerate(tqdm(self.data.examples, desc="teacher labels", unit="sentence",
                                         disable=not self.progress)):
            chosen, log_posterior = teacher.posterior(example.query, self.data.scenes[example.scene])
            out[i] = (chosen, softmax(log_posterior / self.config.distill_temperature))
        return out

    def train_grounder(self, targets: Mapping[int, tuple[np.ndarray, np.ndarray]] | None,
                       name: str = "grounder") -> TwoStageGrounder:
        """Distil from `targets` (candidates, probabilities) per example, with the MIL loss; with None, train the
        fully supervised upper bound on the true targets instead. Writes <name>.pt."""
        config = self.config
        rng = np.random.default_rng(config_seed(config, 2))
        torch.manual_seed(config_seed(config, 2))
        model = TwoStageGrounder(model_config(config, self.feature_dim, True))
        optimiser = self._optimiser(model, config.grounder_learning_rate)
        examples, scenes = self.data.examples, self.data.scenes
        usable = np.flatnonzero([i in targets if targets is not None else e.best_object >= 0
                                 for i, e in enumerate(examples)])

        def step(batch: np.ndarray) -> dict[str, float]:
            model.train()
            items = [(examples[i].query, scenes[examples[i].scene], examples[i].coarse) for i in batch]
            scores = run_grounder(model, grounder_batch(items, model.config.max_words))
            log_p = scores.log_softmax(dim=1)
            if targets is None:
                loss = F.nll_loss(log_p, torch.tensor([examples[i].best_object for i in batch]))
                parts = {"ce": float(loss.detach())}
            else:
                distill = torch.stack([-(torch.from_numpy(targets[i][1]).float() * log_p[b, targets[i][0]]).sum()
                                       for b, i in enumerate(batch)]).mean()
                mil = self._mil(model, batch, scores, rng)
                loss = distill + config.mil_weight * mil
                parts = {"distill": float(distill.detach()), "mil": float(mil.detach())}
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            return {"loss": float(loss.detach()), **parts}

        self._epochs(config.grounder_epochs, name, step, rng, usable)
        model.eval()
        save_grounding_model(self.out_dir / f"{name}.pt", "grounder", model, self.text_space,
                             inference_settings(config), {"supervised": targets is None})
        return model

    def _mil(self, model: TwoStageGrounder, batch: np.ndarray, scores: torch.Tensor,
             rng: np.random.Generator) -> torch.Tensor:
        """Logistic loss of (best object of another scene - best object of the paired scene) per sentence."""
        examples, scenes = self.data.examples, self.data.scenes
        if len(scenes) < 2 or self.config.mil_weight == 0:
            return scores.new_zeros(())
        items, rows = [], []
        for b, i in enumerate(batch):
            others = [s for s in range(len(scenes)) if s != examples[i].scene and len(scenes[s].objects)]
            if not others:
                continue
            other = scenes[int(rng.choice(others))]
            items.append((examples[i].query, other, coarse_matrix(examples[i].query, other)))
            rows.append(b)
        if not items:
            return scores.new_zeros(())
        negative = run_grounder(model, grounder_batch(items, model.config.max_words)).logsumexp(dim=1)
        positive = scores[rows].logsumexp(dim=1)
        return F.softplus(negative - positive).mean()


def config_seed(config: GroundingConfig, stage: int) -> int:
    return config.seed * 10 + stage


def train_grounding(dataset: Dataset, config: PipelineConfig, out_dir: Path, stages: Sequence[str],
                    progress: bool = True) -> dict[str, Path]:
    """Run the stages ('teacher', 'distill', 'supervised') in order; returns the checkpoints written."""
    setup = grounding_setup(dataset, config)
    data = load_grounding_data(dataset, config.grounding.train_split, setup, config.grounding.neighbours, progress)
    trainer = GroundingTrainer(data, config.grounding, setup.text_space, out_dir, progress)
    written: dict[str, Path] = {}
    if "teacher" in stages:
        trainer.train_teacher(setup.queries.words)
        written["teacher"] = out_dir / "teacher.pt"
    if "distill" in stages:
        teacher = teacher_from(*load_grounding_model(out_dir / "teacher.pt", "reconstructor"))
        trainer.train_grounder(trainer.teacher_posteriors(teacher))
        written["grounder"] = out_dir / "grounder.pt"
    if "supervised" in stages:
        trainer.train_grounder(None, "supervised")
        written["supervised"] = out_dir / "supervised.pt"
    return written


def teacher_from(model: torch.nn.Module, content: dict) -> CoarseToFineTeacher:
    """The coarse-to-fine teacher of a reconstructor checkpoint's model and content."""
    settings = content["settings"]
    return CoarseToFineTeacher(model, {w: i for i, w in enumerate(content["words"])}, int(settings["top_k"]),
                               float(settings["class_weight"]), float(settings["prior_temperature"]))

