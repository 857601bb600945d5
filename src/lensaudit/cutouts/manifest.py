"""Reading and checking cutout manifests (Parquet or CSV with at least ``id, ra, dec``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd


class ManifestError(ValueError):
    """A manifest is unreadable or has bad rows; the message names the file, rows and ids."""


REQUIRED = ("id", "ra", "dec")


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a Parquet or CSV manifest and check it (see :func:`check_manifest`)."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest {path}: file not found")
    try:
        if path.suffix in (".parquet", ".pq"):
            df = pd.read_parquet(path)
        elif path.suffix in (".csv", ".txt") or path.name.endswith(".csv.gz"):
            df = pd.read_csv(path, dtype={"id": str})
        else:
            raise ManifestError(f"manifest {path}: unknown format {path.suffix!r} (use .parquet or .csv)")
    except ManifestError:
        raise
    except Exception as exc:
        raise ManifestError(f"manifest {path}: cannot read ({type(exc).__name__}: {exc})") from exc
    return check_manifest(df, source=str(path))


def check_manifest(df: pd.DataFrame, source: str = "manifest") -> pd.DataFrame:
    """Check required columns, coordinate ranges, missing values and duplicate ids.

    Returns a copy with ``id`` as str and ``ra``/``dec`` as float64 degrees.
    """
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ManifestError(f"{source}: missing required column(s) {missing}; has {list(df.columns)[:20]}")
    out = df.copy()
    if out["id"].isna().any():
        rows = np.flatnonzero(out["id"].isna().to_numpy())
        raise ManifestError(f"{source}: {len(rows)} row(s) with empty id, e.g. rows {rows[:5].tolist()}")
    out["id"] = out["id"].astype(str)
    for c in ("ra", "dec"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(np.float64)
    bad = out["ra"].isna() | out["dec"].isna() | ~out["ra"].between(0.0, 360.0) | ~out["dec"].between(-90.0, 90.0)
    if bad.any():
        ids = out.loc[bad, "id"].tolist()
        raise ManifestError(f"{source}: {len(ids)} row(s) with missing or out-of-range ra/dec, ids {ids[:5]}")
    dup = out["id"].duplicated(keep=False)
    if dup.any():
        ids = sorted(set(out.loc[dup, "id"]))
        raise ManifestError(f"{source}: {len(ids)} duplicate id(s), e.g. {ids[:5]}")
    return out.reset_index(drop=True)
