"""Counter-based 64-bit hashing (splitmix64), vectorised over numpy arrays.

Written by hand because no library offers a *vectorised, platform-stable* integer hash:
Python's ``hash()`` is salted per process and Spark's built-ins differ from pandas'. The mock
renderer uses it for noise that is a pure function of the pixel, and the catalog stage for a
stable row order that both engines share.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MULTS = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9),
          np.uint64(0xD6E8FEB86659FD93))


def splitmix64(v: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of uint64 values (bijective, well mixed)."""
    with np.errstate(over="ignore"):
        v = np.asarray(v, dtype=np.uint64) + _GOLDEN
        v = (v ^ (v >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        v = (v ^ (v >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return v ^ (v >> np.uint64(31))


def hash64(*keys: np.ndarray | int) -> np.ndarray:
    """uint64 hash of up to four integer keys (arrays broadcast), e.g. (release, brickid, objid, seed)."""
    if not 1 <= len(keys) <= len(_MULTS):
        raise ValueError(f"hash64 takes 1 to {len(_MULTS)} keys, got {len(keys)}")
    with np.errstate(over="ignore"):
        acc = np.uint64(0)
        for k, m in zip(keys, _MULTS, strict=False):
            acc = acc ^ (np.asarray(k).astype(np.int64).astype(np.uint64) * m)
        return splitmix64(splitmix64(acc))


def hashed_uniform(*keys: np.ndarray | int) -> np.ndarray:
    """Uniform deviates in (0, 1), a pure function of up to four integer keys (53-bit resolution).

    Used where a draw must not depend on how work is batched: the injection engine keys each
    parameter of each injection by (stream, injection index, parameter slot, seed).
    """
    return ((hash64(*keys) >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53

