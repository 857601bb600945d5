"""Training-time augmentation: flips and 90-degree rotations, deterministic per (seed, index, epoch)."""

from __future__ import annotations

import numpy as np

from lensaudit.utils.seeds import rng


def augment_params(seed: int, index: int, epoch: int) -> tuple[bool, bool, int]:
    """(horizontal flip, vertical flip, k quarter turns) for one sample of one epoch (each flip p = 0.5)."""
    r = rng(seed, "train.augment", index, epoch).random(3)
    return bool(r[0] < 0.5), bool(r[1] < 0.5), int(r[2] * 4)


def augment(x: np.ndarray, seed: int, index: int, epoch: int) -> np.ndarray:
    """Apply the sample's flips and rotation to a (bands, H, W) array (a new contiguous array)."""
    hflip, vflip, k = augment_params(seed, index, epoch)
    if hflip:
        x = x[..., :, ::-1]
    if vflip:
        x = x[..., ::-1, :]
    if k:
        x = np.rot90(x, k, axes=(-2, -1))
    return np.ascontiguousarray(x)
