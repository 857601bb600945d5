"""Display helpers shared by every stage that draws: colour images of cutouts, image grids,
atomic figure saving (matplotlib with the Agg backend, imported only when drawing)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lensaudit.utils.io import atomic_path


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> str:
    """Write a figure as PNG atomically, close it, and return the file name."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    pyplot().close(fig)
    return path.name


def rgb_asinh(cube: np.ndarray, q: float = 8.0) -> np.ndarray:
    """(3, N, N) g,r,z nanomaggies -> (N, N, 3) RGB in [0, 1] (z->R, r->G, g->B), asinh stretch (Lupton-like)."""
    x = np.nan_to_num(np.asarray(cube, np.float64))
    x = x - np.median(x, axis=(1, 2), keepdims=True)
    scale = np.percentile(np.abs(x), 99.5) + 1e-12
    img = np.arcsinh(q * x / scale) / np.arcsinh(q)
    return np.clip(img[::-1].transpose(1, 2, 0), 0, 1)


def centre_crop(img: np.ndarray, crop: int | None) -> np.ndarray:
    """The central ``crop`` x ``crop`` pixels of an (N, N, ...) image (unchanged when crop is None)."""
    if not crop:
        return img
    lo = (img.shape[0] - crop) // 2
    return img[lo : lo + crop, lo : lo + crop]


def image_grid(cubes: Sequence[np.ndarray], labels: Sequence[str], path: str | os.PathLike, ncol: int = 8,
               overlays: Sequence[np.ndarray] | None = None, crop: int | None = None) -> str:
    """A PNG grid of cutouts with a caption under each; with ``overlays`` (maps at the cropped size) a
    second row per cutout shows the map over the image. Returns the file name."""
    plt = pyplot()
    n = max(len(cubes), 1)
    if overlays is None:
        ncol = min(ncol, n)
        nrow = (n + ncol - 1) // ncol
        fig, axes = plt.subplots(nrow, ncol, figsize=(1.6 * ncol, 1.8 * nrow), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, cube, lab in zip(axes.ravel(), cubes, labels, strict=False):
            ax.imshow(centre_crop(rgb_asinh(cube), crop), origin="lower")
            ax.set_title(lab, fontsize=6)
    else:
        fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.4), squeeze=False)
        for i, (cube, lab, ov) in enumerate(zip(cubes, labels, overlays, strict=True)):
            img = centre_crop(rgb_asinh(cube), crop)
            axes[0, i].imshow(img, origin="lower")
            axes[0, i].set_title(lab, fontsize=5)
            axes[1, i].imshow(img, origin="lower")
            axes[1, i].imshow(ov, origin="lower", cmap="inferno", alpha=0.5)
        for ax in axes.ravel():
            ax.axis("off")
    return save_figure(fig, path, dpi=110)
