"""Parameter draws of injections: a population, kept apart from rendering single arcs.

Every number of injection ``i`` is a pure function of (seed, family, i, parameter name) through a
counter-based hash (:func:`lensaudit.utils.hashing.hashed_uniform`), so a draw does not depend on
batch size, order or on which other injections are drawn, and adding a parameter shifts none of
the others.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import ndtri

from lensaudit.inject.config import FamilyConfig, Priors
from lensaudit.inject.params import MAX_KNOTS, check_parameters
from lensaudit.utils.hashing import hashed_uniform
from lensaudit.utils.seeds import derive_seed, stream_id


class Draw:
    """Uniform and normal deviates keyed by (seed, family, index, parameter name)."""

    def __init__(self, seed: int, family: str, index: np.ndarray):
        self.key = derive_seed(int(seed), "inject", family) & 0x7FFFFFFFFFFFFFFF
        self.index = np.asarray(index, dtype=np.int64)

    def u(self, name: str) -> np.ndarray:
        return hashed_uniform(self.key, self.index, stream_id(name))

    def uniform(self, name: str, lo, hi) -> np.ndarray:
        return np.asarray(lo, float) + self.u(name) * (np.asarray(hi, float) - np.asarray(lo, float))

    def log_uniform(self, name: str, lo, hi) -> np.ndarray:
        return np.exp(self.uniform(name, np.log(lo), np.log(hi)))

    def normal(self, name: str, mean, sd) -> np.ndarray:
        return np.asarray(mean, float) + np.asarray(sd, float) * ndtri(self.u(name))

    def integers(self, name: str, lo: int, hi: int) -> np.ndarray:
        """Uniform integers in [lo, hi] inclusive."""
        return np.minimum(lo + np.floor(self.u(name) * (hi - lo + 1)).astype(np.int64), hi)


def draw_parameters(priors: Priors, family: FamilyConfig, seed: int, index, bounds: dict | None = None,
                    n_stamps: int | None = None) -> pd.DataFrame:
    """Parameters of injections ``index`` (integers) of ``family``; ``bounds`` narrows uniform priors per
    injection: ``{"theta_e_arcsec": (lo, hi), "arc_mag_r": (lo, hi)}`` with arrays of len(index) (a grid cell).

    Angles in radians (counter-clockwise from +x), positions and radii in arcsec, magnitudes AB. The columns are
    those :func:`lensaudit.inject.params.param_columns` declares for the family, each inside its valid range.
    """
    d = Draw(seed, family.name, index)
    n = len(d.index)
    b = {k: (np.broadcast_to(np.asarray(v[0], float), (n,)), np.broadcast_to(np.asarray(v[1], float), (n,)))
         for k, v in (bounds or {}).items()}
    for k, (lo, hi) in b.items():
        if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (lo <= hi).all()):
            raise ValueError(f"draw_parameters: bounds for {k} must be finite with lo <= hi")
    te_lo, te_hi = b.get("theta_e_arcsec", priors.theta_e_arcsec)
    if np.any(np.asarray(te_lo) <= 0):
        raise ValueError("draw_parameters: theta_E must be > 0 arcsec")
    out = {"index": d.index, "family": np.full(n, family.name), "seed": np.full(n, int(seed))}
    out["theta_e"] = d.uniform("theta_e", te_lo, te_hi)
    out["q_lens"] = d.uniform("q_lens", *priors.q_lens)
    out["phi_lens"] = d.uniform("phi_lens", 0.0, np.pi)
    g = d.uniform("shear", 0.0, priors.shear_max)
    ga = d.uniform("shear_angle", 0.0, np.pi)
    out["gamma1"], out["gamma2"] = g * np.cos(2 * ga), g * np.sin(2 * ga)
    out["x0"] = d.normal("x0", 0.0, priors.centre_jitter_arcsec)
    out["y0"] = d.normal("y0", 0.0, priors.centre_jitter_arcsec)
    lo, hi = priors.beta_frac
    frac = np.sqrt(d.uniform("beta_frac", lo * lo, hi * hi))          # area-weighted: uniform in beta^2
    ang = d.uniform("beta_angle", 0.0, 2 * np.pi)
    out["beta_frac"] = frac
    out["beta_x"] = out["x0"] + frac * out["theta_e"] * np.cos(ang)
    out["beta_y"] = out["y0"] + frac * out["theta_e"] * np.sin(ang)
    if priors.brightness == "lensed":
        out["arc_mag_r_target"] = d.uniform("arc_mag_r", *b.get("arc_mag_r", priors.arc_mag_r))
    else:
        out["src_mag_r"] = d.uniform("src_mag_r", *b.get("src_mag_r", priors.src_mag_r))
    out["g_r"] = d.normal("g_r", *priors.g_r)
    out["r_z"] = d.normal("r_z", *priors.r_z)
    out["src_phi"] = d.uniform("src_phi", 0.0, np.pi)
    if family.kind in ("sersic", "planted", "clumpy"):
        out["src_re"] = d.log_uniform("src_re", *priors.src_re_arcsec)
        out["src_q"] = d.uniform("src_q", *priors.src_q)
        out["src_n"] = d.uniform("src_n", *priors.src_n) if family.kind != "clumpy" else np.ones(n)
    if family.kind == "clumpy":
        k = d.integers("n_knots", *family.n_knots)
        out["n_knots"] = k
        out["knot_fraction"] = np.where(k > 0, d.uniform("knot_fraction", *family.knot_fraction), 0.0)
        for j in range(MAX_KNOTS):
            on = j < k
            out[f"knot{j}_x"] = np.where(on, d.normal(f"knot{j}_x", 0.0, 1.0) * out["src_re"], 0.0)
            out[f"knot{j}_y"] = np.where(on, d.normal(f"knot{j}_y", 0.0, 1.0) * out["src_re"], 0.0)
            out[f"knot{j}_sigma"] = d.uniform(f"knot{j}_sigma", *family.knot_sigma_arcsec)
            out[f"knot{j}_w"] = np.where(on, -np.log(d.u(f"knot{j}_w")), 0.0)
            off = d.normal(f"knot{j}_colour", *family.knot_colour_offset)
            out[f"knot{j}_g_r"] = out["g_r"] + off
            out[f"knot{j}_r_z"] = out["r_z"] + 0.75 * off
    if family.kind == "stamps":
        if not n_stamps:
            raise ValueError(f"family {family.name!r}: an empty stamp library")
        out["stamp"] = d.integers("stamp", 0, n_stamps - 1)
        out["stamp_flip"] = d.u("stamp_flip") < 0.5
    df = pd.DataFrame(out)
    check_parameters(df, family.kind)
    return df


__all__ = ["Draw", "draw_parameters"]
