"""The parameters of each injection family, declared once: name, unit, valid range and prior.

:func:`~lensaudit.inject.draws.draw_parameters` writes exactly these columns (tested), the
injection records carry them, :func:`check_parameters` refuses values outside their valid range
before any rendering, and :func:`parameter_table` states every prior with its numbers for a config
(the report's methods section and ``lensaudit inject --describe`` print it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from lensaudit.inject.config import FamilyConfig, Priors

#: Most knots a clumpy source can have (unused ones carry zero weight).
MAX_KNOTS = 16
INF = float("inf")


@dataclass(frozen=True)
class Param:
    """One drawn parameter: its record column, unit, valid (physical) range and prior.

    ``prior`` is a template filled from the config (``{lo}``, ``{hi}``, ``{mean}``, ``{sd}`` of the config field
    ``source``); ``knot``: one column per knot (``knot{j}_...``).
    """

    name: str
    unit: str
    valid: tuple[float, float]
    prior: str
    source: str | None = None
    doc: str = ""
    knot: bool = False
    closed_low: bool = True

    def columns(self) -> list[str]:
        return [self.name.format(j=j) for j in range(MAX_KNOTS)] if self.knot else [self.name]

    def ok(self, v: np.ndarray) -> np.ndarray:
        lo, hi = self.valid
        low = v >= lo if self.closed_low else v > lo
        return np.isfinite(v) & low & (v <= hi) if np.isfinite(hi) else np.isfinite(v) & low


_ANY = (-INF, INF)
LENS = (
    Param("theta_e", "arcsec", (0.0, 10.0), "uniform in [{lo}, {hi}] (a grid cell narrows it)", "priors.theta_e_arcsec",
          "Einstein radius of the SIE", closed_low=False),
    Param("q_lens", "", (0.0, 1.0), "uniform in [{lo}, {hi}]", "priors.q_lens", "SIE minor/major axis ratio",
          closed_low=False),
    Param("phi_lens", "rad", (0.0, np.pi), "uniform in [0, pi)", None, "SIE major-axis angle, counter-clockwise from +x"),
    Param("gamma1", "", (-1.0, 1.0), "modulus uniform in [0, {value}], angle uniform", "priors.shear_max",
          "external shear component 1"),
    Param("gamma2", "", (-1.0, 1.0), "modulus uniform in [0, {value}], angle uniform", "priors.shear_max",
          "external shear component 2"),
    Param("x0", "arcsec", _ANY, "normal, sd {value}", "priors.centre_jitter_arcsec", "lens centre east-west offset"),
    Param("y0", "arcsec", _ANY, "normal, sd {value}", "priors.centre_jitter_arcsec", "lens centre north-south offset"),
    Param("beta_frac", "", (0.0, 2.0), "area-weighted in [{lo}, {hi}] (uniform in beta^2)", "priors.beta_frac",
          "source offset / theta_E"),
    Param("beta_x", "arcsec", _ANY, "beta_frac x theta_E at a uniform angle, from the lens centre", None,
          "source-plane x of the source centre"),
    Param("beta_y", "arcsec", _ANY, "beta_frac x theta_E at a uniform angle, from the lens centre", None,
          "source-plane y of the source centre"),
)
LENSED_MAG = Param("arc_mag_r_target", "AB mag", (10.0, 35.0), "uniform in [{lo}, {hi}] (a grid cell narrows it)",
                   "priors.arc_mag_r", "total lensed r magnitude the arc is scaled to")
SOURCE_MAG = Param("src_mag_r", "AB mag", (10.0, 35.0), "uniform in [{lo}, {hi}]", "priors.src_mag_r",
                   "unlensed source r magnitude")
COLOUR = (
    Param("g_r", "AB mag", _ANY, "normal, mean {mean}, sd {sd}", "priors.g_r", "observer-frame g - r"),
    Param("r_z", "AB mag", _ANY, "normal, mean {mean}, sd {sd}", "priors.r_z", "observer-frame r - z"),
    Param("src_phi", "rad", (0.0, np.pi), "uniform in [0, pi)", None, "source major-axis angle"),
)
PROFILE = (
    Param("src_re", "arcsec", (0.0, 10.0), "log-uniform in [{lo}, {hi}]", "priors.src_re_arcsec",
          "circularised half-light radius", closed_low=False),
    Param("src_q", "", (0.0, 1.0), "uniform in [{lo}, {hi}]", "priors.src_q", "source axis ratio", closed_low=False),
)
SERSIC_N = Param("src_n", "", (0.2, 8.0), "uniform in [{lo}, {hi}]", "priors.src_n", "Sersic index")
DISC_N = Param("src_n", "", (1.0, 1.0), "1 (an exponential disc)", None, "Sersic index of the disc")
KNOTS = (
    Param("n_knots", "", (0, MAX_KNOTS), "uniform integer in [{lo}, {hi}]", "family.n_knots", "star-forming knots"),
    Param("knot_fraction", "", (0.0, 1.0), "uniform in [{lo}, {hi}] (0 without knots)", "family.knot_fraction",
          "fraction of the source light in knots"),
    Param("knot{j}_x", "arcsec", _ANY, "normal, sd src_re (0 when unused)", None, "knot offset x", knot=True),
    Param("knot{j}_y", "arcsec", _ANY, "normal, sd src_re (0 when unused)", None, "knot offset y", knot=True),
    Param("knot{j}_sigma", "arcsec", (0.0, 10.0), "uniform in [{lo}, {hi}]", "family.knot_sigma_arcsec",
          "Gaussian knot width", knot=True, closed_low=False),
    Param("knot{j}_w", "", (0.0, INF), "exponential (relative weights; 0 when unused)", None, "knot weight", knot=True),
    Param("knot{j}_g_r", "AB mag", _ANY, "disc g - r + normal(mean {mean}, sd {sd})", "family.knot_colour_offset",
          "knot g - r", knot=True),
    Param("knot{j}_r_z", "AB mag", _ANY, "disc r - z + 0.75 x the g - r offset", None, "knot r - z", knot=True),
)
STAMP = (
    Param("stamp", "", (0, INF), "uniform integer over the library", None, "stamp library row"),
    Param("stamp_flip", "", (0, 1), "Bernoulli(0.5)", None, "mirror the stamp before rotating"),
)
#: Columns every draw carries besides the parameters: the injection index, family name and seed.
BOOKKEEPING = ("index", "family", "seed")


def family_params(kind: str, brightness: str = "lensed") -> tuple[Param, ...]:
    """The parameters a family of ``kind`` draws (``brightness``: lensed or source magnitude)."""
    mag = (LENSED_MAG,) if brightness == "lensed" else (SOURCE_MAG,)
    base = LENS + mag + COLOUR
    if kind in ("sersic", "planted"):
        return base + PROFILE + (SERSIC_N,)
    if kind == "clumpy":
        return base + PROFILE + (DISC_N,) + KNOTS
    if kind == "stamps":
        return base + STAMP
    raise KeyError(f"no injection family kind {kind!r}")


def param_columns(kind: str, brightness: str = "lensed") -> list[str]:
    """Every column :func:`~lensaudit.inject.draws.draw_parameters` writes for ``kind``, in order (knot columns knot
    by knot)."""
    params = family_params(kind, brightness)
    plain = [c for p in params if not p.knot for c in p.columns()]
    knots = [p for p in params if p.knot]
    return [*BOOKKEEPING, *plain, *(p.name.format(j=j) for j in range(MAX_KNOTS) for p in knots)]


def _resolve(source: str | None, priors: Priors, family: FamilyConfig) -> dict:
    if source is None:
        return {}
    owner, field = source.split(".")
    v = getattr(priors if owner == "priors" else family, field)
    if isinstance(v, tuple):
        return {"lo": v[0], "hi": v[1], "mean": v[0], "sd": v[1]}
    return {"value": v}


def parameter_table(priors: Priors, family: FamilyConfig) -> pd.DataFrame:
    """One row per parameter of ``family`` under ``priors``: name, unit, valid range, the prior with its numbers,
    the config key it comes from, meaning."""
    rows = []
    for p in family_params(family.kind, priors.brightness):
        rows.append({"parameter": p.name, "unit": p.unit, "valid": f"{'[' if p.closed_low else '('}{p.valid[0]:g}, "
                     f"{p.valid[1]:g}]", "prior": p.prior.format(**_resolve(p.source, priors, family)),
                     "config": p.source or "", "meaning": p.doc})
    return pd.DataFrame(rows)


def check_parameters(p: pd.DataFrame, kind: str | None = None) -> None:
    """Raise before any work for a parameter outside its valid range (naming the injection and column); with
    ``kind``, also for a missing column of that family."""
    params = family_params(kind) if kind else LENS + (LENSED_MAG, SOURCE_MAG) + COLOUR + PROFILE + (SERSIC_N,)
    for par in params:
        cols = par.columns()
        if kind and not any(c in p for c in cols) and not (par in (LENSED_MAG,) and SOURCE_MAG.name in p):
            raise ValueError(f"injection parameters: missing column {cols[0]!r} of family kind {kind!r}")
        for col in cols:
            if col not in p:
                continue
            v = p[col].to_numpy(float)
            bad = ~par.ok(v)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(f"injection {p['index'].iat[i] if 'index' in p else i}: {col} = {v[i]} is outside its "
                                 f"valid range {par.valid} ({par.unit or 'dimensionless'})")


__all__ = ["BOOKKEEPING", "MAX_KNOTS", "Param", "check_parameters", "family_params", "param_columns",
           "parameter_table"]
