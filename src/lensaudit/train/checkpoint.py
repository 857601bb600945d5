"""Checkpoints: plain dicts of tensors and primitives, written atomically, read with ``weights_only=True``.

Every checkpoint carries its architecture, model arguments and preprocessing, so
``load_model(path)`` rebuilds a model that knows how to feed itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from lensaudit.data.preprocess import PreprocessConfig
from lensaudit.errors import LensauditError
from lensaudit.models import build_model
from lensaudit.utils.io import atomic_path

FORMAT = "lensaudit-checkpoint-1"


class CheckpointError(LensauditError, ValueError):
    """A checkpoint is unreadable or does not fit the requested model."""


def save_checkpoint(path: str | os.PathLike, **payload) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            torch.save({"format": FORMAT, **payload}, tmp)
    except (OSError, RuntimeError) as exc:  # torch reports a failed write (full disk, quota) as RuntimeError
        reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1][:200]
        raise CheckpointError(f"checkpoint {path}: could not be written ({reason}); is the disk full or over quota? "
                              f"The previous {path.name}, if any, is unchanged") from exc
    return path


def read_checkpoint(path: str | os.PathLike) -> dict:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: file not found") from None
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"checkpoint {path}: not a readable lensaudit checkpoint ({first})") from exc
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not a {FORMAT} file")
    return ck


def load_model(path: str | os.PathLike, arch: str | None = None) -> tuple[nn.Module, PreprocessConfig, dict]:
    """Rebuild the model of a checkpoint; ``arch`` (if given) must match the checkpoint's."""
    ck = read_checkpoint(path)
    if arch is not None and arch != ck["arch"]:
        raise CheckpointError(f"checkpoint {path}: holds a {ck['arch']!r} model, not {arch!r}")
    model = build_model(ck["arch"], **ck.get("model_kwargs", {}))
    try:
        model.load_state_dict(ck["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path}: weights do not fit {ck['arch']!r} ({str(exc)[:300]})") from exc
    return model, PreprocessConfig(**ck["preprocess"]), ck
