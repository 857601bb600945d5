"""The per-cutout ``.npz`` exchange format of earlier DR10 lens studies (reading).

Key ``cutout``: shape (101, 101, 3) float32 nanomaggies in g,r,z order (height, width, band);
scalar ``meta_*`` keys (``meta_galaxy_id``, ``meta_ra``, ``meta_dec``, ``meta_nobs_z``, ...).
Loaded with ``allow_pickle=False``. The real DR10 sample cutouts in ``shared/data`` use it.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from lensaudit.errors import LensauditError


class CutoutFileError(LensauditError, ValueError):
    """A cutout file is unreadable or malformed; the message names the file and the problem."""


def read_npz_cutout(path: str | os.PathLike, size: int = 101) -> tuple[np.ndarray, dict]:
    """Read one legacy ``.npz`` cutout: returns ((3, N, N) float32 g,r,z cube, meta dict)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            if "cutout" not in z.files:
                raise CutoutFileError(f"{path}: no 'cutout' array (keys {z.files[:10]})")
            arr = z["cutout"]
            meta = {}
            for k in z.files:
                if k.startswith("meta_"):
                    v = z[k]
                    if v.ndim == 0:
                        meta[k[5:]] = v.item()
    except CutoutFileError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise CutoutFileError(f"{path}: not a readable npz file ({type(exc).__name__}: {exc})") from exc
    if arr.shape != (size, size, 3):
        raise CutoutFileError(f"{path}: 'cutout' has shape {arr.shape}, expected ({size}, {size}, 3) (H, W, g/r/z)")
    if arr.dtype.kind != "f":
        raise CutoutFileError(f"{path}: 'cutout' dtype {arr.dtype} is not floating point")
    return np.ascontiguousarray(np.moveaxis(arr.astype(np.float32), -1, 0)), meta
