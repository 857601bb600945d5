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


def hashed_normal_block(key: np.ndarray | int, counter: np.ndarray) -> np.ndarray:
    """Standard normal deviates of shape key.shape + counter.shape: Box-Muller on two hashed uniforms of
    (key, counter); for noise images keyed by an injection's own seed, whatever the batch."""
    k = np.asarray(key, dtype=np.int64).reshape(np.shape(key) + (1,) * np.ndim(counter))
    c = np.asarray(counter, dtype=np.int64)
    u1 = hashed_uniform(k, c, 1)
    u2 = hashed_uniform(k, c, 2)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2)
