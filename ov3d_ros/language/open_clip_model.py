"""open_clip models loaded offline: weights from a checkpoint on disk (or seeded random weights for tests).

One model per (name, checkpoint file) per process: the text encoder and the dense teacher share it. open_clip is
imported lazily (it takes seconds), and never with a pretrained tag, so nothing is ever downloaded.
"""
from __future__ import annotations

import difflib
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch

RANDOM_INIT_SEED = 0
CHECKPOINT_HINT = "set language.open_clip_checkpoint to a .pt / .safetensors state_dict"


def ensure_offline_hub() -> None:
    """Forbid Hugging Face hub downloads in this process; call before importing open_clip or sentence_transformers."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def import_open_clip() -> ModuleType:
    """The open_clip module, imported with the hub forced offline."""
    ensure_offline_hub()
    try:
        import open_clip
    except ImportError as exc:
        raise ImportError(f"open_clip is not installed ({exc}); install the 'language' extra: "
                          "pip install open-clip-torch") from exc
    return open_clip


@dataclass(frozen=True, eq=False)
class OpenClipBundle:
    """A loaded open_clip model (eval mode, CPU, frozen), its tokenizer and the fingerprint of its weights."""

    model_name: str
    model: torch.nn.Module
    tokenizer: Callable[[list[str]], torch.Tensor]
    embed_dim: int
    fingerprint: str


def resolve_checkpoint(checkpoint: str | os.PathLike | None, allow_random: bool = False) -> Path | None:
    """The checkpoint's absolute path, or None for random weights (only when `allow_random`); ValueError otherwise."""
    if checkpoint is None or not str(checkpoint).strip():
        if allow_random:
            return None
        raise ValueError(f"open_clip needs a checkpoint path: {CHECKPOINT_HINT} (no weights are ever downloaded)")
    path = Path(checkpoint).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"open_clip checkpoint not found: {path} ({CHECKPOINT_HINT})")
    return path


def model_embed_dim(model_name: str) -> int:
    """The joint image-text embedding size of a built-in open_clip model (no weights are built)."""
    return int(_model_config(import_open_clip(), model_name)["embed_dim"])


def model_fingerprint(model_name: str, checkpoint_path: Path | None) -> str:
    """Identifies model + weights: the checkpoint's sha256 (first 16 hex), or the seeded random initialisation."""
    if checkpoint_path is None:
        return f"open_clip:{model_name}:random-seed{RANDOM_INIT_SEED}-torch{torch.__version__}"
    return f"open_clip:{model_name}:sha256-{_file_sha256(checkpoint_path)[:16]}"


def load_open_clip(model_name: str, checkpoint: str | os.PathLike | None,
                   allow_random: bool = False) -> OpenClipBundle:
    """Load (once per process and checkpoint file version) an open_clip model for CPU inference.

    Without a checkpoint, `allow_random` gives weights drawn with a fixed seed (tests only; the global RNG is left
    untouched); without either it raises ValueError.
    """
    path = resolve_checkpoint(checkpoint, allow_random)
    key = (model_name, _file_key(path) if path is not None else None)
    with _bundles_lock:
        bundle = _bundles.get(key)
        if bundle is None:
            bundle = _bundles[key] = _load(model_name, path)
    return bundle


_bundles: dict[tuple[str, tuple[str, int, int] | None], OpenClipBundle] = {}
_bundles_lock = threading.Lock()
_sha256_by_file: dict[tuple[str, int, int], str] = {}


def _file_key(path: Path) -> tuple[str, int, int]:
    """(path, size, mtime): a rewritten checkpoint is a new key."""
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def _file_sha256(path: Path) -> str:
    key = _file_key(path)
    digest = _sha256_by_file.get(key)
    if digest is None:
        sha = hashlib.sha256()
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                sha.update(block)
        digest = _sha256_by_file[key] = sha.hexdigest()
    return digest


def _model_config(open_clip: ModuleType, model_name: str) -> dict:
    config = open_clip.get_model_config(model_name)
    if config is None:
        close = difflib.get_close_matches(model_name, open_clip.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown open_clip model {model_name!r}{hint}")
    return config


def _load(model_name: str, path: Path | None) -> OpenClipBundle:
    open_clip = import_open_clip()
    config = _model_config(open_clip, model_name)
    # pretrained_image/text=False: never fetch per-tower base weights (HF text towers would try the hub)
    options = dict(device="cpu", pretrained_image=False, pretrained_text=False)
    if path is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = open_clip.create_model(model_name, pretrained=None, **options)
    else:
        # open_clip reads .safetensors with safetensors and everything else with torch.load(weights_only=True)
        model = open_clip.create_model(model_name, pretrained=str(path), weights_only=True, require_pretrained=True,
                                       **options)
    model.eval().requires_grad_(False)
    try:
        tokenizer = open_clip.get_tokenizer(model_name)
    except Exception as exc:  # noqa: BLE001 - HF tokenizers fail in many ways offline; say which model and why
        raise ValueError(f"the tokenizer of open_clip model {model_name!r} is not available offline: {exc}") from exc
    return OpenClipBundle(model_name=model_name, model=model, tokenizer=tokenizer,
                          embed_dim=int(config["embed_dim"]), fingerprint=model_fingerprint(model_name, path))
