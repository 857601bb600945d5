"""A synthetic cutout store for smoke tests and benchmarks (not a sky model: use the mock survey for that)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_tiny_store(root: Path, n: int = 96, seed: int = 0):
    """A store of ``n`` synthetic 101x101 g,r,z cutouts (noise + a central galaxy; odd ones carry a
    ring, the 'lens') and its manifest (first 2/3 train, rest val). Returns (store, manifest)."""
    import pandas as pd

    from lensaudit.cutouts import CutoutStore

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:101, 0:101] - 50.0
    r = np.hypot(xx, yy)
    galaxy = np.exp(-0.5 * (r / 3.0) ** 2) * 2.0
    ring = np.exp(-0.5 * ((r - 10.0) / 1.2) ** 2) * 0.8
    store = CutoutStore(root, create=True)
    rows = []
    with store.writer() as w:
        for i in range(n):
            label = i % 2
            cube = np.stack([rng.normal(0, 0.1, (101, 101)) + galaxy * f + label * ring * c
                             for f, c in ((0.5, 1.5), (1.0, 1.0), (1.5, 0.6))]).astype(np.float32)
            cid = f"t{i:03d}"
            w.add(cid, cube, 150.0 + i * 0.01, 2.0)
            rows.append({"id": cid, "ra": 150.0 + i * 0.01, "dec": 2.0, "label": label,
                         "tier": "A" if label else "N1", "split": "train" if i < 2 * n // 3 else "val",
                         "sample_weight": 1.0, "healpix_128": i // 8})
    return CutoutStore(root), pd.DataFrame(rows)
