"""Request types of the loopback cutout service, shared by the server and the renderers.

A renderer is any callable ``render(CutoutRequest) -> (cube, invvar | None) | None``: the mock
survey's :class:`~lensaudit.mock.render.Renderer`, or the simple fields used in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CutoutRequest:
    """A parsed, validated service request."""

    ra: float
    dec: float
    width: int
    height: int
    pixscale: float
    bands: str
    layer: str
    invvar: bool


#: render(request) -> (cube (n_bands, H, W) float32 nanomaggies, invvar or None), or None for no overlap.
Renderer = Callable[[CutoutRequest], "tuple[np.ndarray, np.ndarray | None] | None"]


class NoOverlapError(Exception):
    """Raised (or signalled by returning None) when a request misses the footprint."""
