"""Scores of a manifest's stored cutouts with any model (:func:`score_manifest`)."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pandas as pd

from lensaudit.artifacts import check_manifest
from lensaudit.cutouts import CutoutStore
from lensaudit.scoring.scorers import CheckpointScorer, load_scorer
from lensaudit.utils.progress import progress

log = logging.getLogger(__name__)


def score_manifest(model: str | os.PathLike, manifest: pd.DataFrame, store: CutoutStore, features: bool = False,
                   batch_size: int = 512, device: str = "auto", split: str | None = None, num_workers: int = 0,
                   on_missing: str = "error", amp: bool = True, spec: str | os.PathLike | None = None) -> pd.DataFrame:
    """Scores (``id, logit, probability`` and, with ``features``, the penultimate vectors) of the manifest's cutouts,
    in manifest order (skipped ids dropped), with a lensaudit checkpoint, an ONNX model or a TorchScript file
    (:func:`~lensaudit.scoring.scorers.load_scorer`). A checkpoint takes the data-loader path of
    :func:`lensaudit.train.score.score_manifest` (``num_workers`` worker processes)."""
    from lensaudit.data.dataset import DataError, resolve_rows

    sc = load_scorer(model, device, batch_size, spec)
    if isinstance(sc, CheckpointScorer):
        from lensaudit.train.score import score_manifest as score_checkpoint

        return score_checkpoint(model, manifest, store, features, batch_size, device, split, num_workers, on_missing,
                                amp)
    manifest = check_manifest(manifest, source="manifest", require=("id",))
    if split is not None:
        manifest = manifest[manifest["split"] == split]
    frame, rows, missing = resolve_rows(manifest, store, on_missing, f"split {split}" if split else "manifest")
    if not len(frame):
        raise DataError(f"no cutouts of {'split ' + repr(split) if split else 'the manifest'} are in store {store.root}")
    lgs, fts = [], []
    t0 = time.perf_counter()
    with progress((len(rows) + batch_size - 1) // batch_size, "scoring", "batches") as advance:
        for lo in range(0, len(rows), batch_size):
            lg, ft = sc.score(store.get_rows(rows[lo : lo + batch_size]), features)
            lgs.append(lg)
            fts.append(ft)
            advance()
    log.info("scored %d cutouts with %s in %.1f s", len(rows), sc.name, time.perf_counter() - t0)
    lg = np.concatenate(lgs) if lgs else np.zeros(0)
    out = pd.DataFrame({"id": frame["id"].astype(str).to_numpy(), "logit": lg, "probability": 1 / (1 + np.exp(-lg))})
    if features:
        out["features"] = list(np.concatenate(fts)) if fts else []
    out.attrs["missing"] = missing
    out.attrs["arch"] = sc.name
    return out
