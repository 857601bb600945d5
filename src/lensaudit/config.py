"""Typed YAML configuration: safe loading into pydantic models with errors naming file and key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from lensaudit.errors import LensauditError
from lensaudit.utils.io import atomic_write_text, sha256_json

M = TypeVar("M", bound=BaseModel)


class ConfigError(LensauditError, ValueError):
    """A configuration file is unreadable or invalid."""


def load_config(path: str | os.PathLike, model: type[M], overrides: dict | None = None) -> M:
    """Load YAML (``yaml.safe_load``) into ``model``; unknown keys and bad values are errors."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config {path}: file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path}: top level must be a mapping, got {type(raw).__name__}")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return validate_config(raw, model, source=str(path))


def validate_config(raw: dict, model: type[M], source: str = "config") -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"{source}: invalid {model.__name__}: " + "; ".join(lines)) from None


def write_resolved(cfg: BaseModel, path: str | os.PathLike) -> str:
    """Write the resolved config as YAML next to a run's outputs; returns its SHA-256."""
    data = cfg.model_dump(mode="json")
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=True))
    return sha256_json(data)
