"""Grad-CAM saliency maps (Selvaraju et al. 2017) of the last convolution of a checkpoint's model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from lensaudit.artifacts import EvalDir
from lensaudit.data.preprocess import preprocess
from lensaudit.errors import InputError
from lensaudit.evaluate.result import SaliencyInfo
from lensaudit.utils.display import image_grid
from lensaudit.utils.io import atomic_path


def last_conv(model: nn.Module) -> nn.Conv2d:
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise InputError(f"{type(model).__name__} has no Conv2d layer for Grad-CAM")
    return convs[-1]


def grad_cam(model: nn.Module, pre_cfg, cubes: np.ndarray, batch: int = 32) -> np.ndarray:
    """(n, H, W) maps in [0, 1] at the model's input size for raw (n, 3, N, N) cutouts."""
    model.eval()
    layer = last_conv(model)
    store: dict = {}
    h1 = layer.register_forward_hook(lambda m, i, o: store.__setitem__("act", o))
    out = []
    try:
        for lo in range(0, len(cubes), batch):
            x = torch.from_numpy(preprocess(cubes[lo : lo + batch], pre_cfg))
            logit = model(x).squeeze(1)
            act = store["act"]
            grads = torch.autograd.grad(logit.sum(), act)[0]
            cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * act).sum(1, keepdim=True))
            cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            mx = cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
            out.append((cam / mx).detach().numpy())
    finally:
        h1.remove()
    return np.concatenate(out) if out else np.zeros((0, 1, 1))


def saliency_galleries(checkpoint, store, failures: pd.DataFrame, out: Path, per_kind: int = 16) -> SaliencyInfo:
    """Grad-CAM maps of the failure-table cutouts: ``gradcam.npz`` and a gallery PNG per failure kind."""
    from lensaudit.train.checkpoint import load_model

    model, pre, _ = load_model(checkpoint)
    ids = failures["id"].astype(str).tolist()
    cubes = store.get(ids)
    cams = grad_cam(model, pre, cubes)
    with atomic_path(EvalDir(out).gradcam) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, ids=np.array(ids), cams=cams.astype(np.float32))
    galleries = []
    prob = failures["probability"].to_numpy()
    for kind, g in failures.reset_index(drop=True).groupby("failure"):
        rows = g.sort_values("probability", ascending=(kind == "low_scoring_positive")).index[:per_kind]
        galleries.append(image_grid(cubes[rows], [f"{ids[i]} p={prob[i]:.2f}" for i in rows], EvalDir(out).gallery(kind),
                                    overlays=cams[rows], crop=pre.crop))
    return SaliencyInfo(n_maps=int(len(ids)), file=EvalDir(out).gradcam.name, galleries=galleries)
