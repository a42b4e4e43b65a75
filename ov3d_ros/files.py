"""Atomic file writes (every map, checkpoint, report and data file goes through `atomic_path`) and safe reads of
our torch checkpoints."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` atomically, on an exception it is
    removed and `path` is untouched. Creates the folder; the file gets mode 0644 (not mkstemp's 0600)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def save_torch(path: str | os.PathLike[str], content: dict[str, Any]) -> None:
    """`torch.save` of a dict of tensors, numbers, strings, lists and dicts, atomically."""
    import torch
    with atomic_path(path) as temporary:
        torch.save(content, temporary)


def load_torch_checkpoint(path: str | os.PathLike[str], fmt: str, what: str, hint: str = "") -> dict[str, Any]:
    """A checkpoint dict read with `weights_only=True` whose "format" is `fmt`; FileNotFoundError (with `hint`)
    when it is missing, ValueError when it is unreadable or not a `what` checkpoint."""
    import torch
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such {what} checkpoint: {path}{f' ({hint})' if hint else ''}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle / zip errors of all kinds mean the same thing here
        raise ValueError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(content, dict) or content.get("format") != fmt:
        raise ValueError(f"{path}: not an ov3d {what} checkpoint (format {fmt})")
    return content
