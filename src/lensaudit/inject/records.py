"""Injection records on disk: one Parquet chunk per batch of injections, under
``<selection run>/injections/<family>/<config tag>_chunk_<k>.parquet``, written atomically.

A chunk holds one row per injection: its parameters, what the engine measured on the rendered arc,
the host and, once scored, ``logit``, ``probability`` and optionally ``features`` (the penultimate
layer). The configuration tag in the file name keeps chunks of a changed configuration apart, so an
interrupted run resumes and a changed one never mixes with an old one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from lensaudit.artifacts import SelectionRunDir, read_doc
from lensaudit.artifacts.kinds import SELECTION_SUMMARY
from lensaudit.errors import InputError

#: Version of the record columns; part of a selection run's configuration tag, so records written by an older
#: version (2: the measured arc columns of :mod:`lensaudit.survey.arcphot` added; 3: the clumpy family's source sizes
#: measured on a grid twice as fine) are never mixed with new ones.
RECORDS_VERSION = 3


def chunk_path(run_dir: str | Path | SelectionRunDir, family: str, tag: str, k: int) -> Path:
    return _rd(run_dir).family_injections(family) / f"{tag}_chunk_{k:05d}.parquet"


def chunk_ok(path: Path) -> bool:
    """Whether a chunk file is a whole Parquet file (a truncated or corrupt one is not)."""
    try:
        pq.read_metadata(path)
        return True
    except Exception:   # pyarrow raises several types for a broken file
        return False


def _rd(run_dir) -> SelectionRunDir:
    return run_dir if isinstance(run_dir, SelectionRunDir) else SelectionRunDir(run_dir)


def current_tag(run_dir: str | Path | SelectionRunDir) -> str:
    """The configuration tag of the last completed run in ``run_dir`` (from its summary)."""
    rd = _rd(run_dir)
    if not rd.summary.is_file():
        raise InputError(f"{rd.root}: no {rd.summary.name} (not a finished selection run)")
    return read_doc(rd.summary, SELECTION_SUMMARY)["config_tag"]


def read_injections(run_dir: str | Path | SelectionRunDir, family: str, tag: str | None = None,
                    features: bool = False) -> pd.DataFrame:
    """All injection records of ``family`` in a run directory (the given or current configuration's chunks)."""
    d = _rd(run_dir).family_injections(family)
    tag = tag or current_tag(run_dir)
    files = sorted(d.glob(f"{tag}_chunk_*.parquet"))
    if not files:
        raise InputError(f"{d}: no injection chunks of configuration {tag}")
    frames = []
    for f in files:
        if not chunk_ok(f):
            raise InputError(f"{f}: a corrupt injection chunk; re-run the selection run (it recomputes the chunk)")
        df = pd.read_parquet(f)
        if not features and "features" in df:
            df = df.drop(columns="features")
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


__all__ = ["chunk_ok", "chunk_path", "current_tag", "read_injections"]
