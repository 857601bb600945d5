"""Real-data check: mock cutouts against the real DR10 sample cutouts in shared/data.

Each real sample records its z-band exposure count (``meta_nobs_z``); its mock partners are
galaxies of similar type and brightness whose own exposure-map cell has a z exposure count within
15 percent (at least 1, or the nearest there is) of the sample's (depth scales with it). Per band the check compares the empty-sky pixel distribution
(median, unscaled MAD, 5th and 95th percentiles, the skew p95 / |p5| that faint unresolved
galaxies produce), the noise autocorrelation at lags of 1 and 2 pixels (resampled coadds
correlate neighbouring pixels), the density of > 5 sigma pixels, and a central-object FWHM.
Ratios (mock / real) are the median over real samples of the median over their partners.
Pass rules (stated in :class:`CheckTolerances`): sky MAD within a factor 1.25 per band, the skew
ratio within a factor 1.25, and the lag-1 autocorrelation within 0.15 of the real value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from lensaudit.errors import InputError
from lensaudit.mock.request import CutoutRequest
from lensaudit.survey.npz_cutout import read_npz_cutout

MAD_FACTOR = 1.25


@dataclass(frozen=True)
class CheckTolerances:
    mad_factor: float = MAD_FACTOR
    skew_factor: float = 1.25
    acf1_abs: float = 0.15


def _outer_sky(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """(outer mask, clipped-sky mask, median, unscaled MAD) of the empty sky beyond 30 pixels."""
    n = plane.shape[0]
    yy, xx = np.mgrid[0:n, 0:n]
    outer = np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2) > 30
    v = plane[outer & np.isfinite(plane)]
    m = np.median(v)
    d = np.median(np.abs(v - m))
    keep = outer & np.isfinite(plane) & (np.abs(plane - m) < 5 * 1.4826 * d)  # drop neighbours from the sky
    v = plane[keep]
    m = np.median(v)
    return outer, keep, float(m), float(np.median(np.abs(v - m)))


def _acf(plane: np.ndarray, good: np.ndarray, med: float, dx: int, dy: int) -> float:
    d = np.where(good, plane - med, 0.0)
    n0, n1 = d.shape
    a, b = d[: n0 - dy, : n1 - dx], d[dy:, dx:]
    m = good[: n0 - dy, : n1 - dx] & good[dy:, dx:]
    return float((a * b)[m].mean() / (d[good] ** 2).mean())


def sky_stats(cube: np.ndarray) -> dict[str, np.ndarray]:
    """Per-band statistics of the sigma-clipped outer sky (r > 30 pixels) of a (3, N, N) cube."""
    out: dict[str, list] = {k: [] for k in ("median", "mad", "p5", "p95", "skew", "acf1", "acf2", "frac_above_5sigma")}
    for b in range(cube.shape[0]):
        plane = np.asarray(cube[b], dtype=np.float64)
        _, keep, m, mad = _outer_sky(plane)
        v = plane[keep]
        p5, p95 = np.percentile(v, 5) - m, np.percentile(v, 95) - m
        out["median"].append(m)
        out["mad"].append(mad)
        out["p5"].append(p5)
        out["p95"].append(p95)
        out["skew"].append(p95 / abs(p5) if p5 else np.nan)
        # the lag-1 and lag-2 autocorrelation of the clipped sky (x and y averaged)
        out["acf1"].append(0.5 * (_acf(plane, keep, m, 1, 0) + _acf(plane, keep, m, 0, 1)))
        out["acf2"].append(0.5 * (_acf(plane, keep, m, 2, 0) + _acf(plane, keep, m, 0, 2)))
        out["frac_above_5sigma"].append(float((plane > m + 5 * 1.4826 * mad).mean()))
    return {k: np.array(v) for k, v in out.items()}


def _fwhm_pix(plane: np.ndarray) -> float:
    """Rough FWHM (pixels) of the central object: area above half maximum -> equivalent diameter."""
    c = plane.shape[0] // 2
    core = plane[c - 10 : c + 11, c - 10 : c + 11]
    bg = np.median(plane)
    peak = core.max() - bg
    area = float(((core - bg) > peak / 2).sum())
    return 2 * np.sqrt(area / np.pi)


def _nobs_z(render, sources) -> np.ndarray:
    """z exposure count of each source's own exposure-map cell."""
    cells = render.survey.exposure
    return cells[sources["brick_idx"].to_numpy(), 2, sources["cell_y"].to_numpy(), sources["cell_x"].to_numpy()]


def nobs_tolerance(target: float) -> float:
    """Partners' z exposure counts may differ from a real sample's by this much (at least the nearest)."""
    return max(1.0, 0.15 * target)


def real_data_check(render, sources, sample_paths: list[Path], n_mock: int = 40, seed: int = 0,
                    tol: CheckTolerances = CheckTolerances()) -> dict:
    """Compare mock cutouts centred on galaxies like the samples with the real cutouts, at matched depth."""
    reals = [read_npz_cutout(p) for p in sample_paths]
    if not reals:
        raise InputError("real-data check: no real sample cutouts given")
    rng = np.random.default_rng(seed)
    like = sources[(sources["type"].isin(["SER", "DEV", "REX"])) & (sources["rmag"].between(18, 21))
                   & (sources["kind"] == "normal")]
    nobs = _nobs_z(render, like)
    per_real = max(1, n_mock // len(reals))
    rs, groups, matched = [], [], []
    for cube, meta in reals:
        target = float(meta.get("nobs_z", np.nan))
        if np.isfinite(target):
            gap = np.abs(nobs - target)
            pool = like[gap <= max(gap.min(), nobs_tolerance(target))]
        else:
            pool = like
        pick = pool.iloc[rng.choice(len(pool), min(per_real * 3, len(pool)), replace=False)]
        mock = []
        for _, s in pick.iterrows():
            out = render(CutoutRequest(float(s.ra), float(s.dec), 101, 101, 0.262, "grz", "ls-dr10", False))
            if out is not None and np.all(out[0] != 0.0):   # wholly inside the footprint
                mock.append(out[0])
            if len(mock) >= per_real:
                break
        if not mock:
            continue
        rs.append(sky_stats(cube))
        groups.append([sky_stats(c) for c in mock])
        matched.append([target, float(np.median(_nobs_z(render, pick)))])
    if not rs:
        raise InputError("real-data check: no mock cutout could be rendered for any real sample")
    res: dict = {"n_real": len(rs), "n_mock": int(sum(len(g) for g in groups)), "bands": "grz",
                 "nobs_z_real_vs_mock": matched, "tolerances": asdict(tol)}
    for key in ("median", "mad", "p5", "p95", "skew", "acf1", "acf2", "frac_above_5sigma"):
        r = np.array([x[key] for x in rs])                                   # (n_real, 3)
        m = np.array([np.median([x[key] for x in g], axis=0) for g in groups])  # (n_real, 3)
        res[f"real_{key}"] = np.median(r, axis=0).tolist()
        res[f"mock_{key}"] = np.median(m, axis=0).tolist()
        if key not in ("median", "acf1", "acf2"):
            with np.errstate(divide="ignore", invalid="ignore"):
                res[f"ratio_{key}"] = np.median(m / np.where(r == 0, np.nan, r), axis=0).tolist()
    res["real_fwhm_r_pix"] = float(np.median([_fwhm_pix(c[1]) for c, _ in reals]))
    res["mock_fwhm_r_pix"] = float(np.median([_fwhm_pix(c[1]) for c in _all_mock(render, like, rng, 10)]))
    res["ratio_fwhm_r"] = res["mock_fwhm_r_pix"] / res["real_fwhm_r_pix"]
    mad = np.array(res["ratio_mad"])
    skew = np.array(res["ratio_skew"])
    acf = np.abs(np.array(res["mock_acf1"]) - np.array(res["real_acf1"]))
    res["checks"] = {
        "mad": bool(np.all((mad < tol.mad_factor) & (mad > 1 / tol.mad_factor))),
        "skew": bool(np.all((skew < tol.skew_factor) & (skew > 1 / tol.skew_factor))),
        "acf1": bool(np.all(acf < tol.acf1_abs)),
    }
    res["mad_within_factor"] = tol.mad_factor
    res["passed"] = all(res["checks"].values())
    return res


def _all_mock(render, like, rng, n: int) -> list[np.ndarray]:
    pick = like.iloc[rng.choice(len(like), min(n, len(like)), replace=False)]
    outs = (render(CutoutRequest(float(s.ra), float(s.dec), 101, 101, 0.262, "grz", "ls-dr10", False))
            for _, s in pick.iterrows())
    return [o[0] for o in outs if o is not None]


def format_check(res: dict) -> str:
    lines = [f"real-data check: {res['n_mock']} mock vs {res['n_real']} real DR10 cutouts, matched in z exposure "
             f"count (ratios mock/real)"]
    for i, b in enumerate("grz"):
        lines.append(f"  {b}: sky MAD mock {res['mock_mad'][i]:.5f} real {res['real_mad'][i]:.5f} nmgy ratio "
                     f"{res['ratio_mad'][i]:.2f}; p5/p95 ratios {res['ratio_p5'][i]:.2f}/{res['ratio_p95'][i]:.2f}; "
                     f"skew p95/|p5| mock {res['mock_skew'][i]:.2f} real {res['real_skew'][i]:.2f}; noise "
                     f"autocorrelation lag 1 mock {res['mock_acf1'][i]:.2f} real {res['real_acf1'][i]:.2f}, lag 2 mock "
                     f"{res['mock_acf2'][i]:.2f} real {res['real_acf2'][i]:.2f}; >5 sigma pixels ratio "
                     f"{res['ratio_frac_above_5sigma'][i]:.2f}")
    lines.append(f"  central-object FWHM (r): mock {res['mock_fwhm_r_pix']:.2f} real {res['real_fwhm_r_pix']:.2f} px "
                 f"ratio {res['ratio_fwhm_r']:.2f}")
    t = res["tolerances"]
    for name, ok in res["checks"].items():
        rule = {"mad": f"sky MAD within a factor {t['mad_factor']}", "skew": f"skew within a factor {t['skew_factor']}",
                "acf1": f"lag-1 autocorrelation within {t['acf1_abs']}"}[name]
        lines.append(f"  {'PASS' if ok else 'FAIL'}: {rule}")
    return "\n".join(lines)
