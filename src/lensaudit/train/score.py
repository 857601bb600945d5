"""Batch scoring of any manifest with a checkpoint, with the checkpoint's own preprocessing.

Writes one row per cutout: ``id, logit, probability`` (and optionally ``features``: the
penultimate-layer vector, the input of the final Linear layer, which the realism gate uses).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from lensaudit.artifacts import check_manifest, write_artifact_table
from lensaudit.artifacts.kinds import PREDICTIONS
from lensaudit.cutouts import CutoutStore
from lensaudit.data.dataset import CutoutDataset
from lensaudit.models import classifier_layer
from lensaudit.train.checkpoint import load_model
from lensaudit.train.loop import pick_device
from lensaudit.utils.io import sha256_file
from lensaudit.utils.progress import progress

log = logging.getLogger(__name__)


@torch.no_grad()
def score_manifest(checkpoint: str | os.PathLike, manifest: pd.DataFrame, store: CutoutStore,
                   features: bool = False, batch_size: int = 512, device: str = "auto", split: str | None = None,
                   num_workers: int = 0, on_missing: str = "error", amp: bool = True) -> pd.DataFrame:
    """Scores (and optionally features) for the manifest's cutouts, in manifest order (skipped ids dropped)."""
    manifest = check_manifest(manifest, source="manifest", require=("id",))
    model, pre, ck = load_model(checkpoint)
    dev = pick_device(device)
    model.to(dev).eval()
    ds = CutoutDataset(manifest, store, pre, split, cache=False, on_missing=on_missing)
    kw = {"num_workers": num_workers, "persistent_workers": False} if num_workers else {}
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, pin_memory=dev.type == "cuda", **kw)
    t0 = time.perf_counter()
    with progress(len(loader), "scoring", "batches") as advance:
        lg, f = forward(model, _advancing((x for x, *_ in loader), advance), dev, features, amp)
    log.info("scored %d cutouts in %.1f s", len(lg), time.perf_counter() - t0)
    out = pd.DataFrame({"id": ds.frame["id"].astype(str).to_numpy(), "logit": lg, "probability": 1 / (1 + np.exp(-lg))})
    if features:
        out["features"] = list(f.astype(np.float32)) if f is not None else []
    out.attrs["missing"] = ds.missing
    out.attrs["arch"] = ck["arch"]
    return out


@torch.no_grad()
def score_arrays(model: torch.nn.Module, pre, cutouts: np.ndarray, device: str | torch.device = "cpu",
                 batch_size: int = 512, features: bool = False, amp: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits (float64) and optionally penultimate features (float32) of raw cutouts (N, 3, H, W) in
    nanomaggies, preprocessed with ``pre`` (the checkpoint's own :class:`PreprocessConfig`): the path
    injections take, so an injected cutout is fed exactly as a stored one."""
    from lensaudit.data.preprocess import preprocess

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    model.to(dev).eval()
    batches = (torch.from_numpy(preprocess(cutouts[lo : lo + batch_size], pre)) for lo in range(0, len(cutouts), batch_size))
    return forward(model, batches, dev, features, amp)


def _advancing(batches, advance):
    for x in batches:
        yield x
        advance()


@torch.no_grad()
def forward(model: torch.nn.Module, batches, dev: torch.device, features: bool = False,
            amp: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits (float64) and, with ``features``, the penultimate-layer vectors (float32, the input of the final
    Linear layer) of preprocessed batches; bfloat16 autocast on CUDA when ``amp``. The one forward loop of
    every scoring path."""
    feats: list[torch.Tensor] = []
    hook = classifier_layer(model).register_forward_hook(lambda m, i, o: feats.append(i[0].float().cpu())) if features \
        else None
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if (amp and dev.type == "cuda") else torch.autocast("cpu", enabled=False)
    logits = []
    try:
        for x in batches:
            with ctx:
                logits.append(model(x.to(dev, non_blocking=True)).float().squeeze(1).cpu())
    finally:
        if hook is not None:
            hook.remove()
    lg = torch.cat(logits).numpy().astype(np.float64) if logits else np.zeros(0)
    return lg, (torch.cat(feats).numpy() if features and feats else None)


def write_predictions(df: pd.DataFrame, path: str | os.PathLike, checkpoint: str | os.PathLike) -> Path:
    """Parquet with the checkpoint's identity (path, SHA-256, architecture) in the file metadata."""
    meta = {"checkpoint": str(checkpoint), "checkpoint_sha256": sha256_file(checkpoint),
            "arch": df.attrs.get("arch"), "n_missing": len(df.attrs.get("missing", []))}
    return write_artifact_table(df, path, PREDICTIONS, meta)
