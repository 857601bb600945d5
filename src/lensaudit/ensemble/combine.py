"""Combination rules of member scores (arrays in, arrays out).

- ``average``: the mean of the members' probabilities.
- ``domain_gate``: each object scored mainly by the model of its own domain: weight ``w`` on that
  member and ``1 - w`` shared equally by the others; an object in no domain gets the plain average.
- the meta-learner (:mod:`lensaudit.train.meta`) stacks the members' logits; :mod:`.run` fits it out of
  fold on one split and applies it to the audited one.
"""

from __future__ import annotations

import numpy as np

from lensaudit.errors import InputError


def _check(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 1:
        raise InputError(f"member probabilities must be (objects, members), got shape {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise InputError("member probabilities must be finite and within [0, 1]")
    return p


def average(probs: np.ndarray) -> np.ndarray:
    """Mean probability over the members, per object."""
    return _check(probs).mean(axis=1)


def domain_gate(probs: np.ndarray, own: np.ndarray, weight: float) -> np.ndarray:
    """``weight`` x the own-domain member + ``(1 - weight)`` x the mean of the other members; ``own`` is each
    object's member column (-1: in no domain, which gets the plain average). One member: its score."""
    p = _check(probs)
    own = np.asarray(own, dtype=np.int64)
    n, m = p.shape
    if own.shape != (n,) or (own < -1).any() or (own >= m).any():
        raise InputError(f"domain gate: 'own' must be {n} member indices in [-1, {m - 1}]")
    if not 0 < weight <= 1:
        raise InputError(f"domain gate: weight {weight} must lie in (0, 1]")
    out = p.mean(axis=1)
    has = own >= 0
    if m == 1:
        return p[:, 0].copy()
    own_p = p[np.flatnonzero(has), own[has]]
    others = (p[has].sum(axis=1) - own_p) / (m - 1)
    out[has] = weight * own_p + (1 - weight) * others
    return out


def member_spread(probs: np.ndarray) -> np.ndarray:
    """Per-object variance of the members' probabilities (population variance): the uncertainty score."""
    return _check(probs).var(axis=1)


__all__ = ["average", "domain_gate", "member_spread"]
