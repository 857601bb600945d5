"""Two-pass negative cleaning: list first-pass high-scoring negatives, preview them, and write a
cleaned manifest for the second pass (unlabelled lenses among the negatives are the usual cause)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.cutouts import CutoutStore
from lensaudit.utils.io import atomic_path, atomic_write_json


def rgb_asinh(cube: np.ndarray, q: float = 8.0) -> np.ndarray:
    """(3, N, N) g,r,z nanomaggies -> (N, N, 3) RGB in [0, 1] (z->R, r->G, g->B), asinh stretch (Lupton-like)."""
    x = np.nan_to_num(np.asarray(cube, np.float64))
    x = x - np.median(x, axis=(1, 2), keepdims=True)
    scale = np.percentile(np.abs(x), 99.5) + 1e-12
    img = np.arcsinh(q * x / scale) / np.arcsinh(q)
    return np.clip(img[::-1].transpose(1, 2, 0), 0, 1)


def preview_grid(store: CutoutStore, ids: list[str], labels: list[str], path: str | os.PathLike, ncol: int = 8) -> Path:
    """A PNG grid of cutouts with a caption under each (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(ids), 1)
    nrow = (n + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.6 * ncol, 1.8 * nrow), squeeze=False)
    cubes = store.get(ids) if ids else []
    for ax in axes.ravel():
        ax.axis("off")
    for ax, cube, lab in zip(axes.ravel(), cubes, labels, strict=False):
        ax.imshow(rgb_asinh(cube), origin="lower")
        ax.set_title(lab, fontsize=6)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def clean_negatives(preds: pd.DataFrame, manifest_path: str | os.PathLike, out_dir: str | os.PathLike,
                    threshold: float = 0.4, store: CutoutStore | None = None, max_previews: int = 64) -> dict:
    """Flag negatives with first-pass probability > ``threshold``; write flagged.csv, previews.png, a cleaned manifest."""
    from lensaudit.catalog.manifest import read_manifest_metadata, write_manifest

    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = pd.read_parquet(manifest_path)
    p = preds[["id", "probability"]].astype({"id": str})
    if p["probability"].isna().any() or not p["probability"].between(0, 1).all():
        raise ValueError("predictions: probabilities must be finite and in [0, 1]")
    neg = m[m["label"] == 0].merge(p, on="id", how="left")
    unscored = int(neg["probability"].isna().sum())
    flagged = neg[neg["probability"] > threshold].sort_values(["probability", "id"], ascending=[False, True])
    cols = [c for c in ("id", "probability", "ra", "dec", "tier", "confuser_category", "type", "split") if c in flagged]
    flagged[cols].to_csv(out / "flagged_negatives.csv", index=False)
    if store is not None and len(flagged):
        show = flagged.head(max_previews)
        preview_grid(store, show["id"].tolist(), [f"{i} p={q:.2f}" for i, q in zip(show["id"], show["probability"],
                                                                                       strict=True)],
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
