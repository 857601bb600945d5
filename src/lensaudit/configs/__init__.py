"""Bundled YAML configs (also reachable as ``configs/`` at the repository root)."""

from pathlib import Path

from lensaudit.errors import InputError

CONFIG_DIR = Path(__file__).resolve().parent


def bundled_config(name: str) -> Path:
    """Path of a bundled config, e.g. ``bundled_config("catalog/mock_demo.yaml")``."""
    p = CONFIG_DIR / name
    if not p.is_file():
        raise InputError(f"no bundled config {name!r} in {CONFIG_DIR}")
    return p
