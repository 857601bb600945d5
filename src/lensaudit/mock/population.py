"""Population sampling for the mock survey (kept apart from rendering single objects).

Returns one flat table of true source parameters: position, Tractor type, true g,r,z fluxes
(nanomaggies, observed, i.e. after Milky Way extinction), half-light radius (arcsec),
ellipticity, Sersic index, and the ``kind`` with its parameters for lenses and confusers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lensaudit.lensing.light import sersic_total
from lensaudit.mock.config import MockConfig
from lensaudit.survey.photometry import mag_to_flux, mw_transmission
from lensaudit.utils.seeds import rng as seed_stream

#: DR10 type fractions among extended sources (spec 1.5 counts: REX, EXP, DEV, SER).
EXT_TYPE_FRAC = {"REX": 1122.6, "EXP": 225.3, "DEV": 84.0, "SER": 48.7}
KINDS = ("normal", "lens", "ring", "spiral", "merger", "edge_on", "blue_clumpy", "star_artefact")
#: Source-plane knot count per lensed source (at most; unused slots have zero weight).
MAX_KNOTS = 10


def _powerlaw_mags(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float = 0.33) -> np.ndarray:
    """Magnitudes with dN/dm proportional to 10^(slope m) on [lo, hi] (inverse-CDF sampling)."""
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.log10(a + rng.random(n) * (b - a)) / slope


def sample_sources(cfg: MockConfig, bricks: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Galaxies and stars per brick (positions uniform within each brick)."""
    rows = []
    area_brick = 0.25 * 0.25 * np.cos(np.deg2rad(bricks["dec"].to_numpy()))
    for i, br in bricks.iterrows():
        n_gal = rng.poisson(br["galaxy_density_per_deg2"] * area_brick[i])
        n_star = rng.poisson(n_gal * cfg.star_fraction)
        n = n_gal + n_star
        ra = br["ra1"] + rng.random(n) * (br["ra2"] - br["ra1"])
        dec = np.rad2deg(np.arcsin(np.sin(np.deg2rad(br["dec1"])) + rng.random(n) *
                                   (np.sin(np.deg2rad(br["dec2"])) - np.sin(np.deg2rad(br["dec1"])))))
        is_star = np.zeros(n, bool)
        is_star[n_gal:] = True
        rows.append(pd.DataFrame({"brick_idx": i, "ra": ra, "dec": dec, "is_star": is_star}))
    src = pd.concat(rows, ignore_index=True)
    n = len(src)
    star = src["is_star"].to_numpy()
    lo, hi = cfg.galaxy_r_mag_range
    rmag = np.where(star, _powerlaw_mags(rng, n, 14.0, 23.5, 0.2), _powerlaw_mags(rng, n, lo, hi))
    # types: faint galaxies are mostly REX (and some unresolved -> PSF); bright ones more DEV/SER
    names = np.array(list(EXT_TYPE_FRAC))
    p = np.array(list(EXT_TYPE_FRAC.values()))
    types = np.empty(n, dtype="U3")
    for k in range(n):
        if star[k]:
            types[k] = "PSF"
            continue
        w = p.copy()
        if rmag[k] < 20.5:
            w = w * np.array([0.35, 1.6, 3.5, 3.0])
        elif rmag[k] > 22.8:
            w = w * np.array([1.3, 0.5, 0.3, 0.2])
        types[k] = "PSF" if (rmag[k] > 23.0 and rng.random() < 0.3) else names[rng.choice(4, p=w / w.sum())]
    red = (types == "DEV") | (types == "SER") | ((types == "EXP") & (rng.random(n) < 0.3))
    gr = np.where(star, rng.uniform(0.2, 1.5, n),
                  np.where(red, rng.normal(1.5, 0.15, n), rng.normal(0.55, 0.2, n)))
    rz = np.where(star, 0.45 * gr + rng.normal(0, 0.05, n),
                  np.where(red, rng.normal(0.95, 0.1, n), rng.normal(0.45, 0.2, n)))
    size_med = {"REX": 0.45, "EXP": 0.9, "DEV": 1.1, "SER": 1.0, "PSF": 0.0}
    r_e = np.array([size_med[t] for t in types]) * 10 ** (-0.12 * (rmag - 20.0)) * 10 ** rng.normal(0, 0.15, n)
    r_e = np.where(types == "PSF", 0.0, np.clip(r_e, 0.2, 8.0))
    emod = np.where((types == "PSF") | (types == "REX"), 0.0, np.clip(rng.beta(1.6, 4.0, n), 0, 0.8))
    pa = rng.uniform(0, np.pi, n)
    sersic = np.select([types == "DEV", types == "SER", types == "EXP"],
                       [4.0, rng.uniform(1.5, 6.0, n), 1.0], default=1.0)
    ebv = bricks["ebv"].to_numpy()[src["brick_idx"].to_numpy()]
    src["type"] = types
    src["rmag"] = rmag
    for band, mag in (("g", rmag + gr), ("r", rmag), ("z", rmag - rz)):
        src[f"flux_{band}"] = mag_to_flux(mag) * mw_transmission(ebv, band)
    src["shape_r"] = r_e
    src["shape_e1"] = emod * np.cos(2 * pa)
    src["shape_e2"] = emod * np.sin(2 * pa)
    src["sersic"] = sersic
    src["red"] = red
    src["kind"] = "normal"
    return src


def _q_from_e(e1: np.ndarray, e2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e = np.clip(np.hypot(e1, e2), 0, 0.95)
    return (1 - e) / (1 + e), 0.5 * np.arctan2(e2, e1)


def add_lenses(cfg: MockConfig, src: pd.DataFrame, area: float, rng: np.random.Generator) -> pd.DataFrame:
    """Turn massive red galaxies into SIE+shear lenses with clumpy, colour-graded sources."""
    hosts = np.flatnonzero(src["red"].to_numpy() & (src["rmag"].to_numpy() < 19.8) & (src["kind"] == "normal").to_numpy()
                           & np.isin(src["type"].to_numpy(), ["DEV", "SER", "EXP"]))
    n = min(len(hosts), rng.poisson(cfg.lens_rate_per_deg2 * area))
    pick = np.sort(rng.choice(hosts, n, replace=False)) if n else np.array([], int)
    lo, hi = cfg.theta_e_range_arcsec
    rmag_h = src["rmag"].to_numpy()[pick]
    theta = np.clip(1.1 * 10 ** (-0.15 * (rmag_h - 18.5)) * 10 ** rng.normal(0, 0.15, n), lo, hi)
    q_l, phi_l = _q_from_e(src["shape_e1"].to_numpy()[pick], src["shape_e2"].to_numpy()[pick])
    q_l = np.clip(q_l + rng.normal(0, 0.08, n), 0.45, 1.0)
    gam = np.abs(rng.normal(0, 0.05, n))
    gphi = rng.uniform(0, np.pi, n)
    smag = rng.uniform(*cfg.source_r_mag_range, n)
    beta_r = theta * np.sqrt(rng.random(n)) * 0.7
    beta_a = rng.uniform(0, 2 * np.pi, n)
    sre = rng.uniform(0.12, 0.55, n)
    cols: dict[str, np.ndarray] = {
        "theta_e": theta, "lens_q": q_l, "lens_phi": phi_l, "shear_g1": gam * np.cos(2 * gphi),
        "shear_g2": gam * np.sin(2 * gphi), "src_x": beta_r * np.cos(beta_a), "src_y": beta_r * np.sin(beta_a),
        "src_rmag": smag, "src_re": sre, "src_n": rng.uniform(0.7, 1.5, n), "src_q": rng.uniform(0.4, 1.0, n),
        "src_phi": rng.uniform(0, np.pi, n), "src_gr_disc": rng.normal(0.55, 0.1, n), "src_rz_disc": rng.normal(0.35, 0.1, n),
        "src_gr_knot": rng.normal(0.1, 0.1, n), "src_rz_knot": rng.normal(0.0, 0.1, n),
        "src_knot_frac": rng.uniform(0.25, 0.6, n), "src_n_knots": np.minimum(rng.poisson(5, n) + 2, MAX_KNOTS),
        "z_lens": np.clip(0.25 + 0.12 * (rmag_h - 17.5) + rng.normal(0, 0.05, n), 0.1, 1.0),
    }
    for k in range(MAX_KNOTS):
        inside = k < cols["src_n_knots"]
        cols[f"knot{k}_x"] = np.where(inside, rng.normal(0, 1, n) * sre, 0.0)
        cols[f"knot{k}_y"] = np.where(inside, rng.normal(0, 1, n) * sre, 0.0)
        cols[f"knot{k}_sig"] = np.where(inside, rng.uniform(0.03, 0.09, n), 0.05)
        cols[f"knot{k}_w"] = np.where(inside, rng.exponential(1.0, n), 0.0)
    wsum = sum(cols[f"knot{k}_w"] for k in range(MAX_KNOTS))
    for k in range(MAX_KNOTS):
        cols[f"knot{k}_w"] = cols[f"knot{k}_w"] / np.where(wsum > 0, wsum, 1)
    # approximate total magnification (SIS point source 2 theta_E / beta, finite-source capped)
    mu = np.clip(2 * theta / (beta_r + 0.8 * sre), 2.0, 30.0)
    cols["mu_approx"] = mu
    cols["arc_rmag"] = smag - 2.5 * np.log10(mu)
    cols["src_disc_norm"] = np.array([sersic_total(r, nn) for r, nn in zip(sre, cols["src_n"], strict=True)])
    for c, v in cols.items():
        src.loc[pick, c] = v
    src.loc[pick, "kind"] = "lens"
    return src


def add_confusers(cfg: MockConfig, src: pd.DataFrame, area: float, seed: int) -> pd.DataFrame:
    """Paint confuser morphology onto chosen galaxies (and bright stars) at the configured rates.

    Each category draws from its own seed stream (``mock.confusers.<category>``)."""
    kind = src["kind"].to_numpy().copy()
    rmag = src["rmag"].to_numpy()
    types = src["type"].to_numpy()
    red = src["red"].to_numpy()
    eligible = {
        "ring": (~src["is_star"]) & (rmag < 20.0) & np.isin(types, ["DEV", "SER"]),
        "spiral": (~src["is_star"]) & (rmag < 20.0) & np.isin(types, ["EXP", "SER"]) & ~red,
        "merger": (~src["is_star"]) & (rmag < 20.5),
        "edge_on": (~src["is_star"]) & (rmag < 21.0) & (types == "EXP"),
        "blue_clumpy": (~src["is_star"]) & (rmag < 21.0) & ~red & np.isin(types, ["EXP", "REX", "SER"]),
    }
    for name, mask in eligible.items():
        rng = seed_stream(seed, "mock.confusers", name)
        cand = np.flatnonzero(mask.to_numpy() & (kind == "normal"))
        n = min(len(cand), rng.poisson(getattr(cfg.confusers, name) * area))
        pick = rng.choice(cand, n, replace=False) if n else np.array([], int)
        kind[pick] = name
        src.loc[pick, "conf_frac"] = rng.uniform(0.15, 0.4, n)  # fraction of the galaxy's flux in the feature
        src.loc[pick, "conf_radius"] = np.clip(src["shape_r"].to_numpy()[pick] * rng.uniform(1.2, 2.5, n), 1.0, 4.0)
        src.loc[pick, "conf_phase"] = rng.uniform(0, 2 * np.pi, n)
        if name == "edge_on":  # thin disc: high ellipticity
            e = rng.uniform(0.6, 0.8, n)
            pa = rng.uniform(0, np.pi, n)
            src.loc[pick, "shape_e1"] = e * np.cos(2 * pa)
            src.loc[pick, "shape_e2"] = e * np.sin(2 * pa)
        if name == "blue_clumpy":
            src.loc[pick, "conf_frac"] = rng.uniform(0.3, 0.6, n)
    # bright stars with spikes, halos and ghosts: new objects
    rng = seed_stream(seed, "mock.confusers", "star_artefact")
    n_bright = rng.poisson(cfg.confusers.star_artefact * area)
    if n_bright:
        base = src.sample(n_bright, random_state=np.random.RandomState(rng.integers(2**31))).copy()
        base["ra"] = base["ra"] + rng.normal(0, 0.02, n_bright)
        base["rmag"] = rng.uniform(9.0, 13.5, n_bright)
        base["type"], base["is_star"], base["red"] = "PSF", True, False
        gr = rng.uniform(0.3, 1.2, n_bright)
        for band, mag in (("g", base["rmag"] + gr), ("r", base["rmag"]), ("z", base["rmag"] - 0.45 * gr)):
            base[f"flux_{band}"] = mag_to_flux(mag)
        base[["shape_r", "shape_e1", "shape_e2"]] = 0.0
        base["conf_phase"] = rng.uniform(0, np.pi / 2, n_bright)
        kind = np.concatenate([kind, np.full(n_bright, "star_artefact")])
        src = pd.concat([src, base], ignore_index=True)
    src["kind"] = kind
    return src
