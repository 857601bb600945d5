"""Array-library dispatch for the lensing functions: one implementation for NumPy and PyTorch.

Each profile is written once on the array API (``array_api_compat`` gives NumPy and PyTorch the
same namespace), so the mock survey (NumPy, one lens at a time) and the injection engine
(PyTorch, a batch of lenses on a CPU or GPU) run the same formulas. Parameters are scalars or,
for a batch, arrays of shape (B,) that broadcast against positions of shape (B, ...).
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace, is_torch_array


def namespace(x):
    """The array namespace of ``x`` (NumPy for anything that is not a torch tensor)."""
    return array_namespace(x) if is_torch_array(x) else array_namespace(np.empty(0))


def as_positions(x, xp):
    """Positions as a floating array of their own library (NumPy: float64, as ``np.asarray(x, float)``)."""
    return x if is_torch_array(x) else np.asarray(x, float)


def per_lens(v, like, xp):
    """A parameter (scalar or shape (B,)) as an array of ``like``'s library, dtype and device, shaped
    (B, 1, ..., 1) to broadcast against positions ``like`` of shape (B, ...)."""
    if is_torch_array(like):
        import torch

        t = torch.as_tensor(v, dtype=like.dtype, device=like.device)
    else:
        t = np.asarray(v, dtype=like.dtype)
    return xp.reshape(t, tuple(t.shape) + (1,) * (like.ndim - t.ndim)) if t.ndim else t


def to_numpy(v) -> np.ndarray:
    """A parameter as a float64 NumPy array (per-lens constants computed with SciPy)."""
    if is_torch_array(v):
        return v.detach().cpu().double().numpy()
    return np.asarray(v, float)
