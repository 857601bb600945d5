"""Population sampling for the mock survey (kept apart from rendering single objects).

:func:`sample_sources` draws the catalogued galaxies and stars of every brick (vectorised):
position, Tractor type, true g, r, z fluxes (nanomaggies, after Milky Way extinction),
half-light radius (arcsec), ellipticity, Sersic index, colour class. :func:`add_features`
gives a fraction of galaxies their structure (spiral arms and bars among discs; star-forming
rings, tidal shells and streams, tangentially aligned blue companions among early types;
mergers, edge-on discs, blue clumpy galaxies, bright-star artefacts at stated rates).
:func:`add_lenses` turns a fraction of eligible red galaxies into lenses and draws their
mass models and sources; those parameters go to a separate lens table. Each sub-population
draws from its own seed stream.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import truncnorm

from lensaudit.mock.config import LensPopulation, MockConfig, Prior
from lensaudit.survey.photometry import flux_to_mag, mag_to_flux, mw_transmission
from lensaudit.utils.seeds import rng as seed_stream

#: DR10 type fractions among extended sources (spec 1.5 counts: REX, EXP, DEV, SER).
EXT_TYPE_FRAC = {"REX": 1122.6, "EXP": 225.3, "DEV": 84.0, "SER": 48.7}
FEATURE_KINDS = ("spiral", "bar", "ring", "shell", "companion", "merger", "edge_on", "blue_clumpy", "star_artefact")
KINDS = ("normal", "lens", *FEATURE_KINDS)
#: Source-plane knot count per simple-family source (at most; unused slots have zero weight).
MAX_KNOTS = 10


def powerlaw_mags(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float = 0.33) -> np.ndarray:
    """Magnitudes with dN/dm proportional to 10^(slope m) on [lo, hi] (inverse-CDF sampling)."""
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    return np.log10(a + rng.random(n) * (b - a)) / slope


def truncated_normal(rng: np.random.Generator, prior: Prior, n: int) -> np.ndarray:
    """Draws of a normal prior truncated to [lo, hi] (redrawing what falls outside)."""
    out = rng.normal(prior.mean, prior.sd, n)
    bad = (out < prior.lo) | (out > prior.hi)
    for _ in range(100):
        if not bad.any():
            break
        out[bad] = rng.normal(prior.mean, prior.sd, int(bad.sum()))
        bad = (out < prior.lo) | (out > prior.hi)
    return np.clip(out, prior.lo, prior.hi)


def sample_sources(cfg: MockConfig, bricks: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Catalogued galaxies and stars per brick (positions uniform within each brick), vectorised."""
    area_brick = 0.25 * 0.25 * np.cos(np.deg2rad(bricks["dec"].to_numpy()))
    lo_mag, hi_mag = cfg.galaxy_r_mag_range
    # the real region densities count galaxies to about r = 24; scale to the configured catalog limit
    scale = 10 ** (0.33 * (hi_mag - 24.0))
    n_gal = rng.poisson(bricks["galaxy_density_per_deg2"].to_numpy() * scale * area_brick)
    n_star = rng.poisson(n_gal * cfg.star_fraction)
    nb = n_gal + n_star
    bidx = np.repeat(np.arange(len(bricks)), nb)
    is_star = np.concatenate([np.r_[np.zeros(g, bool), np.ones(s, bool)] for g, s in zip(n_gal, n_star, strict=True)]) \
        if len(nb) else np.zeros(0, bool)
    n = len(bidx)
    b = bricks.iloc[bidx]
    u, v = rng.random(n), rng.random(n)
    ra = b["ra1"].to_numpy() + u * (b["ra2"].to_numpy() - b["ra1"].to_numpy())
    s1, s2 = np.sin(np.deg2rad(b["dec1"].to_numpy())), np.sin(np.deg2rad(b["dec2"].to_numpy()))
    dec = np.rad2deg(np.arcsin(s1 + v * (s2 - s1)))
    rmag = np.where(is_star, powerlaw_mags(rng, n, 14.0, 23.5, 0.2), powerlaw_mags(rng, n, lo_mag, hi_mag))
    # types: faint galaxies mostly REX (and some unresolved -> PSF); bright ones more DEV/SER
    names = np.array(list(EXT_TYPE_FRAC))
    base = np.array(list(EXT_TYPE_FRAC.values()))
    w = np.tile(base, (n, 1))
    w[rmag < 20.5] *= np.array([0.35, 1.6, 3.5, 3.0])
    w[rmag > 22.8] *= np.array([1.3, 0.5, 0.3, 0.2])
    cw = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    types = names[np.minimum((rng.random(n)[:, None] > cw).sum(axis=1), 3)].astype("U3")
    types[(rmag > 23.0) & (rng.random(n) < 0.3)] = "PSF"
    types[is_star] = "PSF"
    red = (types == "DEV") | (types == "SER") | ((types == "EXP") & (rng.random(n) < 0.3))
    red &= ~is_star
    gr = np.where(is_star, rng.uniform(0.2, 1.5, n), np.where(red, rng.normal(1.5, 0.15, n), rng.normal(0.55, 0.2, n)))
    rz = np.where(is_star, 0.45 * gr + rng.normal(0, 0.05, n),
                  np.where(red, rng.normal(0.95, 0.1, n), rng.normal(0.45, 0.2, n)))
    size_med = {"REX": 0.45, "EXP": 0.9, "DEV": 1.1, "SER": 1.0, "PSF": 0.0}
    r_e = np.vectorize(size_med.get)(types) * 10 ** (-0.12 * (rmag - 20.0)) * 10 ** rng.normal(0, 0.15, n)
    r_e = np.where(types == "PSF", 0.0, np.clip(r_e, 0.2, 8.0))
    emod = np.where((types == "PSF") | (types == "REX"), 0.0, np.clip(rng.beta(1.6, 4.0, n), 0, 0.8))
    pa = rng.uniform(0, np.pi, n)
    sersic = np.select([types == "DEV", types == "SER", types == "EXP"], [4.0, rng.uniform(1.5, 6.0, n), 1.0], 1.0)
    ebv = bricks["ebv"].to_numpy()[bidx]
    src = pd.DataFrame({"brick_idx": bidx, "ra": ra, "dec": dec, "is_star": is_star, "type": types, "rmag": rmag})
    for band, mag in (("g", rmag + gr), ("r", rmag), ("z", rmag - rz)):
        src[f"flux_{band}"] = mag_to_flux(mag) * mw_transmission(ebv, band)
    src["shape_r"] = r_e
    src["shape_e1"] = emod * np.cos(2 * pa)
    src["shape_e2"] = emod * np.sin(2 * pa)
    src["sersic"] = sersic
    src["red"] = red
    src["kind"] = "normal"
    return src


def _disc(src: pd.DataFrame) -> np.ndarray:
    t = src["type"].to_numpy()
    return (~src["is_star"].to_numpy() & (src["rmag"].to_numpy() < 20.5) & ~src["red"].to_numpy()
            & (np.isin(t, ["EXP", "REX"]) | ((t == "SER") & (src["sersic"].to_numpy() < 2.5))))


def _early(src: pd.DataFrame) -> np.ndarray:
    return (~src["is_star"].to_numpy() & (src["rmag"].to_numpy() < 20.5) & src["red"].to_numpy()
            & np.isin(src["type"].to_numpy(), ["DEV", "SER"]))


def eligible_red(src: pd.DataFrame, max_mag_z: float) -> np.ndarray:
    """Red DEV/SER galaxies brighter than ``max_mag_z`` (z band, AB): the pool lens hosts come from."""
    with np.errstate(divide="ignore", invalid="ignore"):
        zmag = flux_to_mag(src["flux_z"].to_numpy())
    return (src["red"].to_numpy() & np.isin(src["type"].to_numpy(), ["DEV", "SER"]) & (zmag < max_mag_z)
            & ~src["is_star"].to_numpy())


# ----------------------------------------------------------------------------- lenses
THETA_E_SCATTER_DEX = 0.2


def draw_theta_e(rmag_host: np.ndarray, lp: LensPopulation, rng: np.random.Generator) -> np.ndarray:
    """Einstein radii (arcsec) from the hosts' r magnitudes (AB): log-normal about ``theta_e_at_r19`` x
    10^(-theta_e_mag_scaling (r - 19)) with 0.2 dex scatter, truncated to ``theta_e_arcsec`` (drawn inside the
    range, not clipped: clipping would pile the brightest hosts' lenses up at the upper edge)."""
    lo, hi = lp.theta_e_arcsec
    mu = np.log10(lp.theta_e_at_r19) - lp.theta_e_mag_scaling * (np.asarray(rmag_host, float) - 19.0)
    s = THETA_E_SCATTER_DEX
    return 10 ** truncnorm.rvs((np.log10(lo) - mu) / s, (np.log10(hi) - mu) / s, loc=mu, scale=s, size=len(mu),
                               random_state=rng)


def add_lenses(cfg: MockConfig, src: pd.DataFrame, seed: int, library=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn a fraction ``rate_per_eligible_red`` of eligible red galaxies into lenses (``library``: the stamp library
    half the lensed sources come from, when ``lenses.sources`` names one).

    Returns (sources with ``kind = lens``, the lens table: one row per lens with its mass model
    and source parameters, keyed by row number ``src_row`` into ``src``)."""
    lp = cfg.lenses
    rng = seed_stream(seed, "mock.lenses")
    hosts = np.flatnonzero(eligible_red(src, lp.host_max_mag_z) & (src["kind"].to_numpy() == "normal"))
    # exactly floor(rate x eligible) hosts: the rate is a ceiling that holds in every realisation
    pick = np.sort(rng.choice(hosts, int(np.floor(lp.rate_per_eligible_red * len(hosts))), replace=False))
    n = len(pick)
    rmag_h = src["rmag"].to_numpy()[pick]
    theta = draw_theta_e(rmag_h, lp, rng)
    e1, e2 = src["shape_e1"].to_numpy()[pick], src["shape_e2"].to_numpy()[pick]
    phi_light = 0.5 * np.arctan2(e2, e1)
    rich = lp.family == "rich"
    lens = pd.DataFrame({"src_row": pick, "theta_e": theta, "family": lp.family})
    if rich:
        lens["gamma"] = truncated_normal(rng, lp.slope, n)
        lens["lens_q"] = truncated_normal(rng, lp.axis_ratio, n)
        lens["lens_phi"] = phi_light + np.deg2rad(rng.normal(0, lp.misalignment_deg, n))
        a3, a4 = rng.normal(0, lp.multipole_sd, n) * theta, rng.normal(0, lp.multipole_sd, n) * theta
        lens["a3"], lens["phi3"] = a3, rng.uniform(0, 2 * np.pi / 3, n)
        lens["a4"], lens["phi4"] = a4, lens["lens_phi"] + rng.choice([0.0, np.pi / 4], n)  # disky or boxy
        has_sat = rng.random(n) < lp.satellite_fraction
        lens["sat_theta_e"] = np.where(has_sat, rng.uniform(*lp.satellite_theta_e_frac, n) * theta, 0.0)
        ang, dist = rng.uniform(0, 2 * np.pi, n), rng.uniform(1.0, 2.5, n) * theta
        lens["sat_x"], lens["sat_y"] = np.where(has_sat, dist * np.cos(ang), 0.0), np.where(has_sat, dist * np.sin(ang), 0.0)
        lens["kappa_ext"] = np.where(rng.random(n) < lp.group_fraction, rng.uniform(*lp.group_kappa, n), 0.0)
    else:  # simple: SIE + shear, the mass axis ratio from the light
        lens["gamma"] = 2.0
        q_l = (1 - np.clip(np.hypot(e1, e2), 0, 0.95)) / (1 + np.clip(np.hypot(e1, e2), 0, 0.95))
        lens["lens_q"] = np.clip(q_l + rng.normal(0, 0.08, n), 0.45, 1.0)
        lens["lens_phi"] = phi_light
        for c in ("a3", "phi3", "a4", "phi4", "sat_theta_e", "sat_x", "sat_y", "kappa_ext"):
            lens[c] = 0.0
    g = np.abs(rng.normal(0, lp.shear_sd, n))
    gphi = rng.uniform(0, np.pi, n)
    lens["shear_g1"], lens["shear_g2"] = g * np.cos(2 * gphi), g * np.sin(2 * gphi)
    lens["z_lens"] = np.clip(0.25 + 0.12 * (rmag_h - 17.5) + rng.normal(0, 0.05, n), 0.1, 1.0)
    lens = pd.concat([lens, draw_sources(cfg, theta, seed, rich)], axis=1)
    if library is not None:
        lens = library_sources(lens, library, lp, seed)
    src = src.copy()
    src.loc[pick, "kind"] = "lens"
    return src, lens


def draw_sources(cfg: MockConfig, theta: np.ndarray, seed: int, rich: bool) -> pd.DataFrame:
    """Source parameters of each lens (position area-weighted within beta_max x theta_E, magnitudes from
    number counts, redshifts, morphology and colours)."""
    lp = cfg.lenses
    rng = seed_stream(seed, "mock.lens_sources")
    n = len(theta)
    beta_r = theta * lp.beta_max * np.sqrt(rng.random(n))
    beta_a = rng.uniform(0, 2 * np.pi, n)
    red = rng.random(n) < lp.red_source_fraction if rich else np.zeros(n, bool)
    out = {"src_x": beta_r * np.cos(beta_a), "src_y": beta_r * np.sin(beta_a),
           "src_rmag": powerlaw_mags(rng, n, *lp.source_mag_r, lp.source_counts_slope),
           "z_source": rng.uniform(*lp.source_z, n),
           "src_re": np.exp(rng.uniform(*np.log(lp.source_re_arcsec), n)),
           "src_q": rng.uniform(0.35, 1.0, n), "src_phi": rng.uniform(0, np.pi, n), "src_red": red,
           "src_seed": rng.integers(0, 2**31, n)}
    out["src_gr"] = np.where(red, rng.normal(1.3, 0.25, n), rng.normal(0.45, 0.2, n)) + lp.source_colour_shift[0]
    out["src_rz"] = np.where(red, rng.normal(0.9, 0.2, n), rng.normal(0.35, 0.2, n)) + lp.source_colour_shift[1]
    if rich:
        out["src_n"] = np.where(red, rng.uniform(2.0, 4.0, n), 1.0)
        out["src_texture"] = np.where(red, 0.0, rng.uniform(0.2, 0.8, n))
        out["src_arms"] = ~red & (rng.random(n) < 0.3)
        out["src_arm_phase"] = rng.uniform(0, 2 * np.pi, n)
        out["src_bar"] = ~red & (rng.random(n) < 0.15)
        out["src_bar_angle"] = rng.uniform(0, np.pi, n)
        out["src_bulge_frac"] = np.where(red | (rng.random(n) < 0.6), 0.0, rng.uniform(0.05, 0.35, n))
        out["src_n_components"] = np.where(red, 0, rng.choice([0, 0, 0, 1, 2], n))
        out["src_offset_max"] = np.where(out["src_n_components"] > 0, rng.uniform(0.1, 0.5, n), 0.0)
        out["src_n_knots"] = np.where(red, 0, rng.integers(3, 16, n))
        out["src_knot_frac"] = np.where(red, 0.0, rng.uniform(0.1, 0.4, n))
        out["src_dust_tau"] = np.where(red | (rng.random(n) < 0.5), 0.0, rng.uniform(0.2, 1.0, n))
        out["src_gradient"] = np.where(red, 0.0, rng.uniform(0.0, 0.3, n))
    else:
        out["src_n"] = rng.uniform(0.7, 1.5, n)
        out["src_n_knots"] = np.minimum(rng.poisson(5, n) + 2, MAX_KNOTS)
        out["src_knot_frac"] = rng.uniform(0.25, 0.6, n)
        for k in range(MAX_KNOTS):
            inside = k < out["src_n_knots"]
            out[f"knot{k}_x"] = np.where(inside, rng.normal(0, 1, n) * out["src_re"], 0.0)
            out[f"knot{k}_y"] = np.where(inside, rng.normal(0, 1, n) * out["src_re"], 0.0)
            out[f"knot{k}_sig"] = np.where(inside, rng.uniform(0.03, 0.09, n), 0.05)
            out[f"knot{k}_w"] = np.where(inside, rng.exponential(1.0, n), 0.0)
    return pd.DataFrame(out)


def library_sources(lens: pd.DataFrame, library, lp, seed: int) -> pd.DataFrame:
    """Give each lens a stamp of the library as its source: the source's half-light radius from the
    size-luminosity relation of ``lp.size_luminosity`` at its drawn magnitude, a stamp among the five nearest in
    size (uniformly), rescaled to that radius (within ``lp.stamp_scale_range``), turned by a uniform angle and
    mirrored half the time. Colours are the stamp's own. Draws from their own stream (``mock.lens_sources.library``),
    so the procedural draws, positions and magnitudes are those of the procedural universe."""
    rng = seed_stream(seed, "mock.lens_sources.library")
    n = len(lens)
    r0, m0, beta, sd = lp.size_luminosity
    re = r0 * 10 ** (-0.4 * beta * (lens["src_rmag"].to_numpy(float) - m0)) * 10 ** rng.normal(0, sd, n)
    rh = np.asarray(library.r_half, float)
    ok = np.flatnonzero(np.isfinite(rh) & (rh > 0))
    order = ok[np.argsort(np.log(rh[ok]), kind="stable")]
    pos = np.searchsorted(np.log(rh[order]), np.log(re))
    k = min(5, len(order))
    lo = np.clip(pos - k // 2, 0, len(order) - k)
    stamp = order[lo + rng.integers(0, k, n)]
    scale = np.clip(re / rh[stamp], *lp.stamp_scale_range)
    cr = library.colour_ratios[stamp]
    out = lens.copy()
    out["src_stamp"] = stamp
    out["src_stamp_id"] = library.meta["ID"].to_numpy()[stamp]
    out["src_scale"] = scale
    out["src_re"] = rh[stamp] * scale
    out["src_re_relation"] = re
    out["src_phi"] = rng.uniform(0, 2 * np.pi, n)
    out["src_flip"] = rng.random(n) < 0.5
    out["src_gr"] = -2.5 * np.log10(cr[:, 0])
    out["src_rz"] = 2.5 * np.log10(cr[:, 2])
    out["src_red"] = False
    return out


# ----------------------------------------------------------------------------- features (confusers)
FEATURE_COLOURS = {  # (g - r, r - z) mean and sd of the feature's own light, AB
    "spiral": ((0.55, 0.2), (0.4, 0.15)), "bar": ((1.0, 0.25), (0.7, 0.2)), "ring": ((0.5, 0.25), (0.35, 0.2)),
    "shell": ((1.0, 0.3), (0.7, 0.2)), "companion": ((0.6, 0.35), (0.45, 0.25)), "merger": ((0.9, 0.35), (0.6, 0.25)),
    "edge_on": ((0.8, 0.3), (0.6, 0.2)), "blue_clumpy": ((0.3, 0.2), (0.2, 0.2)),
}


def add_features(cfg: MockConfig, src: pd.DataFrame, area: float, seed: int) -> pd.DataFrame:
    """Give galaxies their structure at the configured fractions and rates (each category its own stream).

    Features have colours of their own drawn from broad distributions that overlap the arcs'
    (blue rings and companions on red hosts, red shells, red and blue arcs), so colour alone
    does not separate them."""
    c = cfg.confusers
    src = src.copy()
    for col in ("conf_frac", "conf_radius", "conf_phase", "conf_gr", "conf_rz", "conf_n", "conf_bar"):
        src[col] = np.nan if col != "conf_bar" else False
    kind = src["kind"].to_numpy().copy()
    free = kind == "normal"
    disc, early = _disc(src) & free, _early(src) & free
    u = seed_stream(seed, "mock.features.assign").random(len(src))
    choice = np.full(len(src), "", dtype=object)
    choice[disc & (u < c.spiral_fraction_of_discs)] = "spiral"
    choice[disc & (u >= c.spiral_fraction_of_discs) & (u < c.spiral_fraction_of_discs + c.bar_fraction_of_discs)] = "bar"
    e_cum = np.cumsum([c.ring_fraction_of_early, c.shell_fraction_of_early, c.companion_fraction_of_early])
    choice[early & (u < e_cum[0])] = "ring"
    choice[early & (u >= e_cum[0]) & (u < e_cum[1])] = "shell"
    choice[early & (u >= e_cum[1]) & (u < e_cum[2])] = "companion"
    rmag, types, red = src["rmag"].to_numpy(), src["type"].to_numpy(), src["red"].to_numpy()
    rate_pools = {
        "merger": (c.merger_per_deg2, ~src["is_star"].to_numpy() & (rmag < 20.5)),
        "edge_on": (c.edge_on_per_deg2, ~src["is_star"].to_numpy() & (rmag < 21.0) & (types == "EXP")),
        "blue_clumpy": (c.blue_clumpy_per_deg2, ~src["is_star"].to_numpy() & (rmag < 21.0) & ~red
                        & np.isin(types, ["EXP", "REX", "SER"])),
    }
    for name, (rate, pool) in rate_pools.items():
        rng = seed_stream(seed, "mock.features", name)
        cand = np.flatnonzero(pool & free & (choice == ""))
        n = min(len(cand), rng.poisson(rate * area))
        choice[rng.choice(cand, n, replace=False) if n else np.array([], int)] = name
    for name in FEATURE_COLOURS:
        rng = seed_stream(seed, "mock.features.params", name)
        idx = np.flatnonzero(choice == name)
        n = len(idx)
        if not n:
            continue
        kind[idx] = name
        (gm, gs), (zm, zs) = FEATURE_COLOURS[name]
        src.loc[idx, "conf_gr"] = rng.normal(gm, gs, n)
        src.loc[idx, "conf_rz"] = rng.normal(zm, zs, n)
        frac = {"spiral": (0.2, 0.45), "bar": (0.08, 0.2), "ring": (0.1, 0.3), "shell": (0.05, 0.15),
                "companion": (0.05, 0.2), "merger": (0.15, 0.4), "edge_on": (0.15, 0.3), "blue_clumpy": (0.3, 0.6)}[name]
        src.loc[idx, "conf_frac"] = rng.uniform(*frac, n)
        r_e = src["shape_r"].to_numpy()[idx]
        src.loc[idx, "conf_radius"] = np.clip(r_e * rng.uniform(1.2, 2.8, n), 1.0, 5.0)
        src.loc[idx, "conf_phase"] = rng.uniform(0, 2 * np.pi, n)
        src.loc[idx, "conf_n"] = rng.integers(2, 5, n)
        if name == "spiral":
            src.loc[idx, "conf_bar"] = rng.random(n) < c.bar_fraction_of_discs
        if name == "edge_on":  # a thin disc
            e, pa = rng.uniform(0.6, 0.8, n), rng.uniform(0, np.pi, n)
            src.loc[idx, "shape_e1"], src.loc[idx, "shape_e2"] = e * np.cos(2 * pa), e * np.sin(2 * pa)
    src["kind"] = kind
    # bright stars with spikes, halos and ghosts: new objects
    rng = seed_stream(seed, "mock.features", "star_artefact")
    n_bright = rng.poisson(c.star_artefact_per_deg2 * area)
    if n_bright:
        base = src.iloc[rng.integers(0, len(src), n_bright)].copy()
        base["ra"] = base["ra"] + rng.normal(0, 0.02, n_bright)
        base["rmag"] = rng.uniform(9.0, 13.5, n_bright)
        base["type"], base["is_star"], base["red"], base["kind"] = "PSF", True, False, "star_artefact"
        gr = rng.uniform(0.3, 1.2, n_bright)
        for band, mag in (("g", base["rmag"] + gr), ("r", base["rmag"]), ("z", base["rmag"] - 0.45 * gr)):
            base[f"flux_{band}"] = mag_to_flux(mag)
        base[["shape_r", "shape_e1", "shape_e2"]] = 0.0
        base["conf_phase"] = rng.uniform(0, np.pi / 2, n_bright)
        src = pd.concat([src, base], ignore_index=True)
    return src
