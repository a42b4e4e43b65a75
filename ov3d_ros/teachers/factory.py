"""Build the configured 2D teacher, checking that it lives in the same space as the text encoder."""
from __future__ import annotations

from ov3d_ros.config import ConfigError, PipelineConfig
from ov3d_ros.teachers.base import Teacher


def build_teacher(config: PipelineConfig, kind: str | None = None) -> Teacher:
    """The teacher `kind` (default `config.teacher.kind`) with the settings of `config`."""
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
        raise ConfigError("the simulated teacher's noise model comes with the synthetic world (issue #4)")
    raise ConfigError(f"unknown teacher kind {kind!r}")
