"""Student checkpoints: atomic, `weights_only=True` loadable, carrying their config and text space."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ov3d_ros.files import load_torch_checkpoint, save_torch
from ov3d_ros.models.student import Student, StudentConfig

FORMAT = "ov3d-student-1"
BATCHNORM_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def save_checkpoint(path: str | Path, student: Student, text_space: str, extra: dict[str, Any] | None = None) -> None:
    """Write the student's weights, its config and the name of its text space (plus training state in `extra`).

    Only tensors, numbers, strings, lists and dicts are stored, so `torch.load(weights_only=True)` reads it.
    """
    config = dataclasses.asdict(student.config)
    content = {"format": FORMAT, "student_config": {k: list(v) if isinstance(v, tuple) else v
                                                    for k, v in config.items()},
               "text_space": text_space, "model": student.state_dict(), **(extra or {})}
    save_torch(path, content)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's content (weights_only); ValueError when it is not an ov3d student checkpoint."""
    return load_torch_checkpoint(path, FORMAT, "student")


def load_student(path: str | Path) -> tuple[Student, str]:
    """The student of a checkpoint in eval mode (float32), and the name of its text space."""
    return _student_from(load_checkpoint(resolve_checkpoint(path)))


def text_offset(path: str | Path) -> np.ndarray | None:
    """The mean text embedding a centred-space student was trained relative to (None for a plain space)."""
    return _offset_of(load_checkpoint(resolve_checkpoint(path)))


def load_student_and_offset(path: str | Path) -> tuple[Student, str, np.ndarray | None]:
    """`load_student` and `text_offset` from one read of the checkpoint."""
    content = load_checkpoint(resolve_checkpoint(path))
    return (*_student_from(content), _offset_of(content))


def _offset_of(content: dict[str, Any]) -> np.ndarray | None:
    offset = content.get("text_offset")
    return None if offset is None else offset.float().numpy()


def _student_from(content: dict[str, Any]) -> tuple[Student, str]:
    config = dict(content["student_config"])
    legacy_channels = config.pop("in_channels", None)     # checkpoints before inputs were named
    if legacy_channels not in (None, 1):
        raise ValueError(f"this checkpoint predates named student inputs and takes {legacy_channels} channels; "
                         "retrain it")
    student = Student(StudentConfig(**config))
    # students trained with BatchNorm (one room per batch) trained exactly as with instance normalisation; their
    # running statistics are never used
    weights = {k: v for k, v in content["model"].items() if k.rsplit(".", 1)[-1] not in BATCHNORM_STATISTICS}
    student.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()})
    return student.eval(), str(content["text_space"])


def default_checkpoint_path() -> Path:
    """The shipped default student (MiniLM text space), inside the package."""
    return Path(__file__).resolve().parent.parent / "weights" / "student_default.pt"


def resolve_checkpoint(path: str | Path) -> Path:
    """`default` names the shipped student; anything else is a path."""
    return default_checkpoint_path() if str(path) == "default" else Path(path)


def export_student(source: str | Path, target: str | Path, provenance: dict[str, Any] | None = None) -> Path:
    """A small inference-only copy of a training checkpoint: weights in float16, no optimiser or EMA state."""
    content = load_checkpoint(source)
    student, text_space = _student_from(content)
    half = {k: v.half() if v.is_floating_point() else v for k, v in student.state_dict().items()}
    content = {"format": FORMAT, "student_config": content["student_config"], "text_space": text_space,
               "model": half, "text_offset": content.get("text_offset"), "provenance": provenance or {}}
    save_torch(target, content)
    return Path(target)
