"""Training-set manifests: one Parquet file per split scheme, one row per cutout.

The writer is shared by both engines and fixes column order, dtypes, row order (by id) and
file metadata, so the same inputs and seed give byte-identical files whatever the engine.
The split definition (nside, seed, fractions) travels in the file's metadata, so
``verify`` can recompute every split independently.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import MANIFEST_META_KEY, manifest_columns, read_manifest_metadata, write_table
from lensaudit.catalog.config import CatalogConfig, SplitScheme
from lensaudit.catalog.spatial import assign_split
from lensaudit.survey.constants import CUTOUT_SIZE, DEFAULT_LAYER

__all__ = ["assemble_manifest", "cutout_ref", "manifest_columns", "manifest_metadata", "read_manifest_metadata",
           "write_manifest"]


def cutout_ref(ra: np.ndarray, dec: np.ndarray, layer: str = DEFAULT_LAYER, size: int = CUTOUT_SIZE) -> np.ndarray:
    """Position-based cutout reference ``layer:ra:dec:size`` (1e-5 deg), so two ids at one position collide."""
    return np.array([f"{layer}:{r:.5f}:{d:+.5f}:{size}" for r, d in zip(ra, dec, strict=True)], dtype=object)


def assemble_manifest(pos: pd.DataFrame, neg: pd.DataFrame, cfg: CatalogConfig, scheme: SplitScheme) -> pd.DataFrame:
    """Positives (label 1, tier A/B) and sampled negatives (label 0, tier N1/N2) with the scheme's split."""
    nside = cfg.splits.nside
    p = pos.assign(label=1, sample_weight=pos["tier"].map(cfg.positives.tier_weights).fillna(1.0).astype(np.float32),
                   confuser_category="")
    n = neg.assign(label=0, tier=neg["pool"], sample_weight=np.float32(1.0), name="", zlens=np.nan,
                   match_sep_arcsec=np.nan)
    df = pd.concat([p, n], ignore_index=True)
    df[f"healpix_{nside}"] = df["healpix"].to_numpy()
    df["split"] = assign_split(df["healpix"].to_numpy(), cfg.splits.seed, scheme.ordered())
    df["cutout_ref"] = cutout_ref(df["ra"].to_numpy(), df["dec"].to_numpy())
    cols = manifest_columns(nside)
    df = df[list(cols)].astype(cols)
    return df.sort_values("id", kind="mergesort").reset_index(drop=True)


def manifest_metadata(cfg: CatalogConfig, scheme: SplitScheme, host_edges: dict | None = None) -> dict:
    """What a reader needs to re-derive the splits and the sample (no engine or path details)."""
    return {"host_match_edges": host_edges or {},"scheme": scheme.name, "fractions": dict(scheme.ordered()), "split_order": [s for s, _ in scheme.ordered()],
            "nside": cfg.splits.nside, "nest": True, "split_seed": cfg.splits.seed,
            "split_hash": "sha256('{pixel}_{seed}')[:4] big-endian / 2^32",
            "sampling": cfg.sampling.model_dump(mode="json"), "cuts": cfg.cuts.model_dump(mode="json"),
            "confusers": cfg.confusers.model_dump(mode="json"), "positives": cfg.positives.model_dump(mode="json")}


def write_manifest(df: pd.DataFrame, path: str | os.PathLike, meta: dict) -> Path:
    """Write a manifest deterministically (fixed schema, no pandas metadata, zstd) and atomically."""
    return write_table(df, path, MANIFEST_META_KEY, meta)
