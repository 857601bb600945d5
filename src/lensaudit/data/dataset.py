"""PyTorch dataset over a training manifest and a cutout store.

Cutouts come from the store's memory-mapped shards by row number (no per-sample file opens);
with ``cache=True`` the split is read and preprocessed once into memory. Missing cutouts (never
fetched, or failed QA) are an error naming them, or a counted skip (``on_missing="skip"``).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from lensaudit.cutouts import CutoutStore
from lensaudit.data.augment import augment
from lensaudit.data.preprocess import PreprocessConfig, preprocess
from lensaudit.errors import LensauditError
from lensaudit.survey.geometry import angular_separation_arcsec
from lensaudit.utils.seeds import rng

log = logging.getLogger(__name__)


class DataError(LensauditError, ValueError):
    """A manifest, store or batch cannot be used for training or scoring."""


def resolve_rows(manifest: pd.DataFrame, store: CutoutStore, on_missing: Literal["error", "skip"] = "error",
                 what: str = "manifest") -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Manifest rows whose cutouts are stored, their store row numbers, and the ids skipped."""
    if "id" not in manifest.columns:
        raise DataError(f"{what}: no 'id' column")
    ids = manifest["id"].astype(str).to_numpy()
    store_ids = pd.Index(store.index["id"].astype(str))
    rows = store_ids.get_indexer(ids)
    missing = ids[rows < 0].tolist()
    if missing:
        failed = set(store.failures()["id"].astype(str)) if len(store.failures()) else set()
        n_failed = sum(m in failed for m in missing)
        msg = (f"{what}: {len(missing)} cutout(s) not in store {store.root} ({n_failed} failed QA or fetch), "
               f"e.g. {missing[:5]}")
        if on_missing == "error":
            raise DataError(msg)
        log.warning("%s; skipped", msg)
    keep = rows >= 0
    _check_positions(manifest[keep], store, rows[keep], what)
    return manifest[keep].reset_index(drop=True), rows[keep], missing


#: Largest difference (arcsec) between a manifest's and the store's coordinates of one id.
POSITION_TOLERANCE_ARCSEC = 0.05


def _check_positions(manifest: pd.DataFrame, store: CutoutStore, rows: np.ndarray, what: str) -> None:
    """A stored stamp cut at other coordinates than the manifest gives is not that object's cutout."""
    if not {"ra", "dec"} <= set(manifest.columns) or not {"ra", "dec"} <= set(store.index.columns) or not len(rows):
        return
    idx = store.index
    sep = angular_separation_arcsec(manifest["ra"].to_numpy(float), manifest["dec"].to_numpy(float),
                                    idx["ra"].to_numpy(float)[rows], idx["dec"].to_numpy(float)[rows])
    bad = sep > POSITION_TOLERANCE_ARCSEC
    if bad.any():
        ex = [f"{i} ({d:.3g} arcsec)" for i, d in zip(manifest["id"].to_numpy()[bad][:5], sep[bad][:5], strict=False)]
        raise DataError(f"{what}: {int(bad.sum())} cutout(s) stored at other coordinates than the manifest gives "
                        f"(more than {POSITION_TOLERANCE_ARCSEC} arcsec) in store {store.root}, e.g. {ex}; re-fetch "
                        f"them (lensaudit cutouts fetch --moved refetch)")


class CutoutDataset(Dataset):
    """Items ``(x float32 (3, N, N), label float32, weight float32, index int64)``.

    ``augment_seed`` enables training augmentation (flips, quarter turns) seeded per
    (seed, sample index, epoch); call :meth:`set_epoch` each epoch.
    """

    def __init__(self, manifest: pd.DataFrame, store: CutoutStore, preprocess_cfg: PreprocessConfig,
                 split: str | None = None, augment_seed: int | None = None, cache: bool = True,
                 on_missing: Literal["error", "skip"] = "error", max_samples: int | None = None):
        m = manifest if split is None else manifest[manifest["split"] == split]
        if max_samples is not None and len(m) > max_samples:
            m = m.sort_values("id", kind="mergesort").head(max_samples)
        if not len(m):
            raise DataError(f"manifest has no rows{'' if split is None else f' in split {split!r}'}")
        self.frame, self.rows, self.missing = resolve_rows(m, store, on_missing, f"split {split}" if split else "manifest")
        if not len(self.frame):
            raise DataError(f"no cutouts of split {split!r} are in store {store.root}")
        self.store, self.cfg, self.augment_seed, self.epoch = store, preprocess_cfg, augment_seed, 0
        self.labels = self.frame["label"].to_numpy(np.float32) if "label" in self.frame else np.zeros(len(self.frame), np.float32)
        self.weights = (self.frame["sample_weight"].to_numpy(np.float32) if "sample_weight" in self.frame
                        else np.ones(len(self.frame), np.float32))
        if not np.isfinite(self.weights).all() or (self.weights < 0).any():
            raise DataError("sample_weight must be finite and non-negative")
        self._cache = None
        if cache:
            self._cache = np.empty((len(self.rows), 3, *[preprocess_cfg.output_size(store.size)] * 2), np.float32)
            for lo in range(0, len(self.rows), 512):
                self._cache[lo : lo + 512] = preprocess(store.get_rows(self.rows[lo : lo + 512]), preprocess_cfg)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, item):
        # samplers may pass (index, epoch): the epoch then travels with the index, which is what keeps
        # augmentation right in persistent DataLoader workers (their copy of the dataset never sees set_epoch)
        i, epoch = item if isinstance(item, tuple) else (item, self.epoch)
        if self._cache is not None:
            x = self._cache[i]
        else:
            x = preprocess(self.store.get_rows(self.rows[i : i + 1]), self.cfg)[0]
        if self.augment_seed is not None:
            x = augment(x, self.augment_seed, i, epoch)
        return torch.from_numpy(np.array(x, copy=True)), self.labels[i], self.weights[i], i


def step_plan(order, batch_size: int, accum: int, world: int = 1, rank: int = 0) -> list[list[list[int]]]:
    """Which samples rank ``rank`` of ``world`` processes at every optimiser step of an epoch.

    ``order`` (the epoch's sample order) is cut into micro-batches of ``batch_size`` consecutive
    samples (the last may be shorter) and those into optimiser steps of ``accum`` micro-batches (the
    last may have fewer). Micro-batch j of a step goes to rank j mod world, so each micro-batch is
    exactly the one a single process would see (batch statistics included) and the ranks together
    cover every sample once. Returns, per step, this rank's micro-batches (lists of sample indices;
    a rank may have none in a short last step)."""
    if batch_size < 1 or accum < 1 or world < 1 or not 0 <= rank < world:
        raise ValueError(f"step_plan: bad batch_size {batch_size}, accum {accum}, world {world} or rank {rank}")
    order = list(order)
    micro = [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]
    steps = [micro[lo : lo + accum] for lo in range(0, len(micro), accum)]
    return [[mb for j, mb in enumerate(step) if j % world == rank] for step in steps]


class StepBatchSampler(Sampler):
    """Batch sampler over :func:`step_plan` for an epoch: a permutation drawn from (seed, epoch) (the same
    order on every resume), this rank's micro-batches in step order, items ``(index, epoch)`` (the epoch
    travels with the index so that persistent DataLoader workers augment with the right one)."""

    def __init__(self, n: int, seed: int, batch_size: int, accum: int = 1, world: int = 1, rank: int = 0,
                 shuffle: bool = True):
        self.n, self.seed, self.batch_size, self.accum = n, seed, batch_size, accum
        self.world, self.rank, self.shuffle, self.epoch = world, rank, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def plan(self) -> list[list[list[int]]]:
        order = (rng(self.seed, "train.order", self.epoch).permutation(self.n).tolist() if self.shuffle
                 else range(self.n))
        return step_plan(order, self.batch_size, self.accum, self.world, self.rank)

    def __iter__(self):
        return iter([[(i, self.epoch) for i in mb] for step in self.plan() for mb in step])

    def __len__(self) -> int:
        return sum(len(step) for step in self.plan())
