"""Build the configured 2D teacher, checking that it lives in the same space as the text encoder."""
from __future__ import annotations

from typing import Mapping, Sequence

from ov3d_ros.config import ConfigError, LanguageConfig, PipelineConfig
from ov3d_ros.teachers.base import Teacher
from ov3d_ros.teachers.simulated import SimulatedTeacher


def simulated_teacher(language: LanguageConfig, classes: Sequence[str], noise: float,
                      confusions: Mapping[str, Sequence[str]] | None = None, seed: int = 0) -> SimulatedTeacher:
    """The calibrated simulated teacher over `classes` (label value = position), in the configured text space."""
    from ov3d_ros.language.vocabulary import configured_vocabulary
    from ov3d_ros.teachers.simulated import CalibratedNoiseModel

    vocabulary = configured_vocabulary(list(classes), language)
    index = {name: i for i, name in enumerate(classes)}
    pairs = [(index[a], index[b]) for a, targets in (confusions or {}).items() for b in targets
             if a in index and b in index]
    return SimulatedTeacher(CalibratedNoiseModel(vocabulary.label_embeddings, noise=noise, seed=seed,
                                                 confusable_pairs=pairs, name=vocabulary.encoder_name))


def build_teacher(config: PipelineConfig, kind: str | None = None, classes: Sequence[str] = (),
                  confusions: Mapping[str, Sequence[str]] | None = None) -> Teacher:
    """The teacher `kind` (default `config.teacher.kind`) with the settings of `config`; the simulated teacher
    also needs the dataset's `classes` (and optionally its `confusions`)."""
    kind = kind or config.teacher.kind
    if kind == "open_clip_dense":
        if config.language.encoder != "open_clip":
            raise ConfigError("open_clip_dense features live in an open_clip text space: set language.encoder to "
                              "open_clip (with the same model and checkpoint)")
        from ov3d_ros.teachers.open_clip_dense import OpenClipDenseTeacher
        return OpenClipDenseTeacher(config.language.open_clip_model, config.language.open_clip_checkpoint or None,
                                    input_size=(config.teacher.input_width, config.teacher.input_height))
    if kind == "precomputed":
        if not config.teacher.precomputed_dir:
            raise ConfigError("the precomputed teacher needs teacher.precomputed_dir (a folder of per-frame maps)")
        from ov3d_ros.teachers.precomputed import PrecomputedTeacher
        return PrecomputedTeacher(config.teacher.precomputed_dir, layout=config.teacher.precomputed_layout)
    if kind == "simulated":
        if not classes:
            raise ConfigError("the simulated teacher needs the dataset's classes")
        return simulated_teacher(config.language, classes, config.teacher.noise, confusions)
    raise ConfigError(f"unknown teacher kind {kind!r}")
