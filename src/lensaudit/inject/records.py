"""Injection records on disk: one Parquet chunk per batch of injections, under
``<run>/injections/<family>/<config tag>_chunk_<k>.parquet``, written atomically.

A chunk holds one row per injection: its parameters, what the engine measured on the rendered arc,
the host and, once scored, ``logit``, ``probability`` and optionally ``features`` (the penultimate
layer). The configuration tag in the file name keeps chunks of a changed configuration apart, so an
interrupted run resumes and a changed one never mixes with an old one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from lensaudit.errors import InputError


def chunk_path(run_dir: str | Path, family: str, tag: str, k: int) -> Path:
    return Path(run_dir) / "injections" / family / f"{tag}_chunk_{k:05d}.parquet"


def current_tag(run_dir: str | Path) -> str:
    """The configuration tag of the last completed run in ``run_dir`` (from its ``summary.json``)."""
    p = Path(run_dir) / "summary.json"
    if not p.is_file():
        raise InputError(f"{run_dir}: no summary.json (not a finished selection run)")
    return json.loads(p.read_text())["config_tag"]


def read_injections(run_dir: str | Path, family: str, tag: str | None = None, features: bool = False) -> pd.DataFrame:
    """All injection records of ``family`` in a run directory (the given or current configuration's chunks)."""
    d = Path(run_dir) / "injections" / family
    tag = tag or current_tag(run_dir)
    files = sorted(d.glob(f"{tag}_chunk_*.parquet"))
    if not files:
        raise InputError(f"{d}: no injection chunks of configuration {tag}")
    frames = []
    for f in files:
        df = pd.read_parquet(f)
        if not features and "features" in df:
            df = df.drop(columns="features")
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


__all__ = ["chunk_path", "current_tag", "read_injections"]
