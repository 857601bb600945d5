"""Meta-learner: feature-weighted stacking of several models' scores.

A one-hidden-layer network (300 units) takes the models' logits (and optional catalog
meta-features such as PSF size or depth, standardised) and predicts the label. It is trained
on validation predictions with k-fold cross-validation: every out-of-fold prediction comes from
a network that never saw that row. Folds are drawn per HEALPix pixel (when the manifest has
one), so neighbouring objects share a fold. The final network is fitted on all rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from lensaudit.artifacts import healpix_column
from lensaudit.catalog.spatial import pixel_fraction
from lensaudit.errors import InputError
from lensaudit.train.checkpoint import read_checkpoint, save_checkpoint
from lensaudit.utils.seeds import derive_seed, rng
from lensaudit.utils.stats import roc_auc_or_nan


@dataclass
class MetaConfig:
    hidden: int = 300
    folds: int = 5
    epochs: int = 300
    lr: float = 1e-2
    weight_decay: float = 1e-4
    seed: int = 42


def _mlp(n_in: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def _fit(x: np.ndarray, y: np.ndarray, cfg: MetaConfig, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = _mlp(x.shape[1], cfg.hidden)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))
    for _ in range(cfg.epochs):
        opt.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(net(xt).squeeze(1), yt)
        loss.backward()
        opt.step()
    return net


@torch.no_grad()
def _predict(net: nn.Module, x: np.ndarray) -> np.ndarray:
    return torch.sigmoid(net(torch.from_numpy(x.astype(np.float32))).squeeze(1)).numpy().astype(np.float64)


def stack_inputs(preds: dict[str, pd.DataFrame], manifest: pd.DataFrame, meta_features: tuple[str, ...] = ()):
    """Join the models' logits (by id) with the manifest; errors name missing ids."""
    hp = healpix_column(manifest.columns)
    df = manifest[["id", "label", *([hp] if hp else []), *meta_features]].copy()
    df["id"] = df["id"].astype(str)
    for name, p in preds.items():
        s = p[["id", "logit"]].astype({"id": str}).rename(columns={"logit": f"logit_{name}"})
        missing = sorted(set(df["id"]) - set(s["id"]))
        if missing:
            raise InputError(f"predictions {name!r}: {len(missing)} manifest id(s) have no score, e.g. {missing[:5]}")
        df = df.merge(s, on="id", how="left", validate="one_to_one")
    return df


def fit_meta_learner(preds: dict[str, pd.DataFrame], manifest: pd.DataFrame, cfg: MetaConfig = MetaConfig(),
                     meta_features: tuple[str, ...] = ()) -> tuple[pd.DataFrame, dict, dict]:
    """Returns (out-of-fold predictions, final-model state, report with per-model and meta AUCs)."""
    if len(preds) < 2:
        raise InputError("the meta-learner stacks two or more models' scores")
    df = stack_inputs(preds, manifest, meta_features)
    cols = [f"logit_{n}" for n in preds] + list(meta_features)
    x = df[cols].to_numpy(np.float64)
    if not np.isfinite(x).all():
        raise InputError(f"meta-learner inputs contain NaN or inf in {cols}")
    mu, sd = x.mean(0), x.std(0) + 1e-12
    xs = (x - mu) / sd
    y = df["label"].to_numpy(np.float64)
    hp = healpix_column(df.columns)
    if hp:
        # a stream of its own: with the split rule's hash (pixel_fraction(pixel, split seed)) the
        # validation pixels, whose hash lies in one narrow band, would all fall into one or two folds
        fold = np.floor(pixel_fraction(df[hp].to_numpy(), derive_seed(cfg.seed, "meta.folds")) * cfg.folds).astype(int)
    else:
        fold = rng(cfg.seed, "meta.folds").permutation(len(df)) % cfg.folds
    oof = np.full(len(df), np.nan)
    for k in range(cfg.folds):
        test = fold == k
        if not test.any():
            continue
        train = ~test
        if len(np.unique(y[train])) < 2:
            raise InputError(f"meta-learner fold {k}: training part has a single class")
        net = _fit(xs[train], y[train], cfg, derive_seed(cfg.seed, "meta.fit", k))
        oof[test] = _predict(net, xs[test])
    final = _fit(xs, y, cfg, derive_seed(cfg.seed, "meta.final"))
    out = pd.DataFrame({"id": df["id"], "label": y.astype(int), "fold": fold, "probability": oof})
    report = {"n": int(len(df)), "folds": cfg.folds, "inputs": cols,
              "auc_per_model": {n: roc_auc_or_nan(y, df[f"logit_{n}"].to_numpy()) for n in preds},
              "auc_meta_out_of_fold": roc_auc_or_nan(y, oof)}
    state = {"inputs": cols, "mean": torch.from_numpy(mu), "std": torch.from_numpy(sd), "hidden": cfg.hidden,
             "model": final.state_dict()}
    return out, state, report


def save_meta(state: dict, path: str | os.PathLike) -> Path:
    return save_checkpoint(path, arch="meta_mlp", **state)


def apply_meta(path: str | os.PathLike, preds: dict[str, pd.DataFrame], manifest: pd.DataFrame) -> pd.DataFrame:
    """Meta-learner probabilities for new predictions (same model names and meta-features as when fitted)."""
    ck = read_checkpoint(path)
    feats = tuple(c for c in ck["inputs"] if not c.startswith("logit_"))
    df = stack_inputs(preds, manifest, feats)
    if [f"logit_{n}" for n in preds] + list(feats) != list(ck["inputs"]):
        raise InputError(f"meta-learner {path}: expects inputs {ck['inputs']}, got models {list(preds)}")
    x = (df[ck["inputs"]].to_numpy(np.float64) - ck["mean"].numpy()) / ck["std"].numpy()
    net = _mlp(x.shape[1], int(ck["hidden"]))
    net.load_state_dict(ck["model"])
    return pd.DataFrame({"id": df["id"], "probability": _predict(net, x)})
