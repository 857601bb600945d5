"""Two-pass negative cleaning: list first-pass high-scoring negatives, preview them, and write a
cleaned manifest for the second pass (unlabelled lenses among the negatives are the usual cause)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from lensaudit.artifacts import check_predictions, read_manifest, read_manifest_metadata
from lensaudit.artifacts.operating import at_or_above
from lensaudit.catalog.manifest import write_manifest
from lensaudit.cutouts import CutoutStore
from lensaudit.errors import InputError
from lensaudit.utils.display import image_grid
from lensaudit.utils.io import atomic_write_json, atomic_write_text


def clean_negatives(preds: pd.DataFrame, manifest_path: str | os.PathLike, out_dir: str | os.PathLike,
                    threshold: float = 0.4, store: CutoutStore | None = None, max_previews: int = 64) -> dict:
    """Flag negatives with first-pass probability > ``threshold``; write flagged.csv, previews.png, a cleaned manifest."""
    if not 0 < threshold < 1:
        raise InputError(f"threshold must be in (0, 1), got {threshold}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = read_manifest(manifest_path, require=("id", "label"))
    p = check_predictions(preds[["id", "probability"]])
    neg = m[m["label"] == 0].merge(p, on="id", how="left")
    unscored = int(neg["probability"].isna().sum())
    flagged = neg[at_or_above(neg["probability"].fillna(-1.0), threshold)].sort_values(["probability", "id"], ascending=[False, True])
    cols = [c for c in ("id", "probability", "ra", "dec", "tier", "confuser_category", "type", "split") if c in flagged]
    atomic_write_text(out / "flagged_negatives.csv", flagged[cols].to_csv(index=False))
    if store is not None and len(flagged):
        show = flagged.head(max_previews)
        image_grid(store.get(show["id"].tolist()),
                   [f"{i} p={q:.2f}" for i, q in zip(show["id"], show["probability"], strict=True)],
                   out / "flagged_previews.png")
    cleaned = m[~m["id"].isin(set(flagged["id"]))].reset_index(drop=True)
    meta = read_manifest_metadata(manifest_path)
    meta["cleaned"] = {"threshold": threshold, "n_removed": int(len(flagged)), "source": str(manifest_path)}
    write_manifest(cleaned, out / "manifest_cleaned.parquet", meta)
    rep = {"threshold": threshold, "n_negatives": int(len(neg)), "n_unscored_negatives": unscored,
           "n_flagged": int(len(flagged)), "flagged_by_tier": {k: int(v) for k, v in flagged["tier"].value_counts().items()}
           if "tier" in flagged else {}, "cleaned_manifest": str(out / "manifest_cleaned.parquet")}
    atomic_write_json(out / "cleaning.json", rep)
    return rep
