"""DR10 bitmasks: MASKBITS (int32), FITBITS (int16), ANYMASK/ALLMASK (int16), WISEMASK (uint8).

Source: ``docs/dr10_formats.md`` section 2 (legacysurvey.org bitmasks page and
legacypipe ``bits.py``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike, NDArray


class MASKBITS(enum.IntFlag):
    """DR10 ``MASKBITS`` (catalog column and per-brick image), value = 1 << bit."""

    NPRIMARY = 1 << 0
    BRIGHT = 1 << 1
    SATUR_G = 1 << 2
    SATUR_R = 1 << 3
    SATUR_Z = 1 << 4
    ALLMASK_G = 1 << 5
    ALLMASK_R = 1 << 6
    ALLMASK_Z = 1 << 7
    WISEM1 = 1 << 8
    WISEM2 = 1 << 9
    BAILOUT = 1 << 10
    MEDIUM = 1 << 11
    GALAXY = 1 << 12
    CLUSTER = 1 << 13
    SATUR_I = 1 << 14
    ALLMASK_I = 1 << 15
    SUB_BLOB = 1 << 16


class FITBITS(enum.IntFlag):
    """DR10 ``FITBITS`` (int16)."""

    FORCED_POINTSOURCE = 1 << 0
    FIT_BACKGROUND = 1 << 1
    HIT_RADIUS_LIMIT = 1 << 2
    HIT_SERSIC_LIMIT = 1 << 3
    FROZEN = 1 << 4
    BRIGHT = 1 << 5
    MEDIUM = 1 << 6
    GAIA = 1 << 7
    TYCHO2 = 1 << 8
    LARGEGALAXY = 1 << 9
    WALKER = 1 << 10
    RUNNER = 1 << 11
    GAIA_POINTSOURCE = 1 << 12
    ITERATIVE = 1 << 13


class DQBITS(enum.IntFlag):
    """Per-exposure data-quality bits used by ``ANYMASK_X``/``ALLMASK_X`` (int16)."""

    BADPIX = 1 << 0
    SATUR = 1 << 1
    INTERP = 1 << 2
    CR = 1 << 4
    BLEED = 1 << 6
    TRANS = 1 << 7
    EDGE = 1 << 8
    EDGE2 = 1 << 9
    OUTLIER = 1 << 11


class WISEMASK(enum.IntFlag):
    """``WISEMASK_W1``/``WISEMASK_W2`` bits (uint8)."""

    BRIGHT = 1 << 0
    SPIKE = 1 << 1
    GHOST = 1 << 2
    LATENT = 1 << 3
    LATENT2 = 1 << 4
    HALO = 1 << 5
    SATUR = 1 << 6
    SPIKE2 = 1 << 7


#: Bits excluded from lens-finder negative pools by default (Inchausti et al. 2025 protocol).
DEFAULT_EXCLUDED_MASKBITS: tuple[int, ...] = (1, 5, 6, 7, 11, 12, 13)


def maskbits_mask(bits: Iterable[int | str]) -> int:
    """Integer mask of MASKBITS given as bit numbers (0-16) or names (e.g. ``"BRIGHT"``)."""
    mask = 0
    for b in bits:
        if isinstance(b, str):
            try:
                mask |= int(MASKBITS[b.upper()])
            except KeyError:
                raise ValueError(f"maskbits_mask: unknown MASKBITS name {b!r}") from None
        else:
            b = int(b)
            if not 0 <= b <= 16:
                raise ValueError(f"maskbits_mask: MASKBITS bit {b} outside 0..16")
            mask |= 1 << b
    return mask


def has_any_bits(maskbits: ArrayLike, bits: Iterable[int | str]) -> NDArray[np.bool_]:
    """True where any of ``bits`` is set in the integer ``maskbits`` array."""
    return (np.asarray(maskbits).astype(np.int64) & maskbits_mask(bits)) != 0


def decode_maskbits(value: int) -> list[str]:
    """Names of the MASKBITS set in one integer value."""
    return [m.name for m in MASKBITS if int(value) & int(m)]  # type: ignore[misc]
