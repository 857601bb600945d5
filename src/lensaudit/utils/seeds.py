"""Named seed streams: one independent random stream per purpose, derived from one seed.

``rng(seed, "mock.lenses")`` is ``numpy.random.default_rng([seed, stream_id("mock.lenses")])``:
a stream depends only on the seed and its name, so drawing more (or fewer) numbers in one
stream never shifts another, and adding a stream changes nothing that exists. Extra integer
keys (an index, an epoch) give per-item sub-streams: ``rng(seed, "augment", index, epoch)``.

``stream_id`` is the first 4 bytes of SHA-256 of the name (big-endian), so stream identities
are stable across processes, machines and Python versions (unlike ``hash()``).
"""

from __future__ import annotations

import hashlib

import numpy as np


def stream_id(name: str) -> int:
    """Stable 32-bit identity of a stream name."""
    if not name:
        raise ValueError("seed stream names must be non-empty")
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big")


def _entropy(seed: int, keys: tuple[str | int, ...]) -> list[int]:
    if int(seed) < 0:
        raise ValueError(f"seeds must be non-negative, got {seed}")
    out = [int(seed)]
    for k in keys:
        if isinstance(k, str):
            out.append(stream_id(k))
        else:
            k = int(k)
            if k < 0:
                raise ValueError(f"seed stream keys must be non-negative, got {k}")
            out.append(k)
    return out


def rng(seed: int, *keys: str | int) -> np.random.Generator:
    """The generator of stream ``keys`` (names and non-negative integers) under ``seed``."""
    return np.random.default_rng(_entropy(seed, keys))


def derive_seed(seed: int, *keys: str | int) -> int:
    """A 63-bit integer seed for stream ``keys`` (for torch, scikit-learn or counter-based hashes)."""
    lo, hi = (int(v) for v in np.random.SeedSequence(_entropy(seed, keys)).generate_state(2, dtype=np.uint32))
    return (lo | hi << 32) >> 1
