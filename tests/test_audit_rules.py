"""The audit's decision rules and estimators pinned to answers computed by hand: the gate's verdict direction,
the score shift, brightness matching, the closure's weighted completeness and its power constant, and the band
order of per-band injection inputs. Each fails when its rule is broken (the mutation run checks that)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kstest, norm

from lensaudit.artifacts import OperatingPoint
from lensaudit.realism.gate import _score_shift, verdict_of
from lensaudit.realism.probe import brightness_match
from lensaudit.selection.closure import MDE80_SIGMAS, closure_bootstrap, closure_test
from lensaudit.selection.grid import AxisSpec, Grid, GridConfig


def test_gate_verdict_is_go_at_and_above_alpha_and_no_go_below():
    assert verdict_of(0.05, 0.05) == "GO"
    assert verdict_of(0.0499, 0.05) == "NO-GO"
    assert verdict_of(1.0, 0.05) == "GO" and verdict_of(1 / 201, 0.05) == "NO-GO"


def test_score_shift_is_the_probability_an_injection_outscores_a_real_lens():
    # pairs (injection > real): 0.3 beats 0.1; 0.5 beats 0.1 and ties 0.5 (half); 0.9 beats both -> 4.5 / 6
    s = _score_shift(np.array([0.1, 0.5]), np.array([0.3, 0.5, 0.9]), 200, 0)
    assert s["value"] == pytest.approx(0.75)
    assert s["lo95"] <= s["value"] <= s["hi95"]
    assert _score_shift(np.array([0.9, 0.8]), np.array([0.1, 0.2]), 10, 0)["value"] == 0.0   # injections lower


def test_brightness_match_on_a_hand_built_example():
    real = np.array([20.1, 20.2, 21.3, np.nan])
    inj = np.array([20.0, 20.3, 20.4, 20.45, 20.6, 20.7, 21.1, 21.2, 21.4, np.nan, np.nan, np.nan, 25.0])
    kr, ki = brightness_match(real, inj, 0.5, 3, seed=0)
    # bins from 20.0 in 0.5 mag: real {0: 2, 2: 1, NaN: 1}; injections {0: 4, 1: 2, 2: 3, NaN: 3, 10: 1};
    # injections per real lens: 2, 3, 3 -> ratio 2 -> 2 real + 4 injected in bin 0, 1 + 2 in bin 2 and in NaN
    assert sorted(kr.tolist()) == [0, 1, 2, 3]
    assert len(ki) == 8 and set(ki[:4]) <= {0, 1, 2, 3}
    assert sum(1 for i in ki if i in (0, 1, 2, 3)) == 4 and sum(1 for i in ki if i in (6, 7, 8)) == 2
    assert sum(1 for i in ki if i in (9, 10, 11)) == 2 and not set(ki) & {4, 5, 12}


def test_closure_weighted_completeness_against_a_direct_computation():
    lens_cell, lens_det = np.array([0, 0, 1, 2]), np.array([1, 0, 1, 0])
    inj_cell = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
    inj_det = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0])
    r = closure_bootstrap(lens_cell, lens_det, inj_cell, inj_det, 3, n_boot=0, groups=np.array([0, 0, 1, 1]))
    c_inj = (0.5 + 0.5 + 1 / 3 + 0.0) / 4
    np.testing.assert_allclose(r["point"][0], [c_inj, 0.5, c_inj - 0.5])
    np.testing.assert_allclose(r["point"][1], [0.5, 0.5, 0.0])                  # group 0: lenses in cell 0
    np.testing.assert_allclose(r["point"][2], [1 / 6, 0.5, 1 / 6 - 0.5])        # group 1: cells 1 and 2
    # a replicate with unit weights on everything is the point estimate; weights move it
    b = closure_bootstrap(lens_cell, lens_det, inj_cell, inj_det, 3, n_boot=200, seed=1)["boot"]
    assert b.shape == (200, 1, 3) and np.nanstd(b[:, 0, 2]) > 0
    np.testing.assert_allclose(b[:, 0, 2], b[:, 0, 0] - b[:, 0, 1], equal_nan=True)


def test_the_power_constant_is_two_sided_five_percent_at_eighty_percent_power():
    assert MDE80_SIGMAS == pytest.approx(norm.ppf(0.975) + norm.ppf(0.8)) and 2.80 < MDE80_SIGMAS < 2.81


def test_closure_p_values_are_uniform_under_the_null():
    """A family that is the truth: the primary statistic's p-values over repetitions are uniform (KS test)."""
    grid = Grid(GridConfig(theta_e=AxisSpec(edges=(0.5, 1.5, 3.0)), psf_fwhm=AxisSpec(edges=(0.9, 1.8)),
                           depth=AxisSpec(edges=(23.0, 25.0)), arc_mag=AxisSpec(edges=(19, 20, 21, 22, 23, 24))))
    ps = []
    for k in range(80):
        g = np.random.default_rng(1000 + k)

        def draw(n, g=g):
            te, mag = g.uniform(0.5, 3.0, n), g.uniform(19, 24, n)
            p = 1 / (1 + np.exp(-(2.0 * (22 - mag) + 0.8 * (te - 1.5))))
            return te, mag, np.where(g.random(n) < p, 0.9, 0.1)

        te, mag, prob = draw(400)
        true = pd.DataFrame({"theta_e": te, "arc_mag_r": mag, "psfsize_r": 1.3, "depth_r": 24.0, "probability": prob})
        te, mag, prob = draw(3000)
        inj = pd.DataFrame({"theta_e": te, "arc_mag_r": mag, "host_psfsize_r": 1.3, "host_depth_r": 24.0,
                            "probability": prob})
        inj["cell"] = np.ravel_multi_index((grid.bin_of("theta_e", te), np.zeros(3000, int), np.zeros(3000, int),
                                            grid.bin_of("arc_mag", mag)), grid.shape)
        s = closure_test(true, inj, grid, [OperatingPoint.fixed(0.5)], n_boot=150, seed=k, marginal_bins=False)[1]
        ps.append(float(s["p_value"].iat[0]))
    assert kstest(ps, "uniform").pvalue > 0.01


def test_swapping_two_bands_psfs_changes_those_bands_of_the_injection():
    from lensaudit.inject import EngineConfig, FamilyConfig, InjectionEngine, Priors, build_family, draw_parameters

    fam = FamilyConfig(name="sersic", kind="sersic")
    p = draw_parameters(Priors(), fam, 3, np.arange(4))
    eng = InjectionEngine(build_family(fam), EngineConfig(shot_noise=False))
    hosts = np.zeros((4, 3, 101, 101), np.float32)
    fw = np.column_stack([np.full(4, 1.9), np.full(4, 1.3), np.full(4, 0.9)])
    a, _ = eng.inject(hosts, fw, p)
    b, _ = eng.inject(hosts, fw[:, ::-1].copy(), p)
    np.testing.assert_allclose(a[:, 1], b[:, 1], atol=1e-7)                     # r keeps its PSF
    for band in (0, 2):                                                          # g and z swapped: sharper / blurrier
        assert np.abs(a[:, band] - b[:, band]).max() > 1e-3 * np.abs(a[:, band]).max()
    peak = lambda img, band: img[:, band].max(axis=(1, 2))  # noqa: E731
    assert (peak(b, 0) > peak(a, 0)).all() and (peak(b, 2) < peak(a, 2)).all()


# ---------------------------------------------------------------- closure's building blocks, by hand
def test_merge_bins_on_hand_built_counts():
    from lensaudit.selection.closure import merge_bins

    cases = {((5, 5, 5, 5), 10): [0, 0, 1, 1], ((12, 0, 3, 9), 10): [0, 1, 1, 1],
             ((10, 10, 3), 10): [0, 1, 1],                # a short last group joins the one before it
             ((10, 10, 10), 10): [0, 1, 2], ((9, 1, 9, 1), 10): [0, 0, 1, 1], ((3,), 10): [0], ((10,), 10): [0],
             ((0, 0, 0), 10): [0, 0, 0], ((0, 11, 0, 0, 12), 10): [0, 0, 1, 1, 1], ((4, 4), 1): [0, 1],
             ((), 10): []}
    for (counts, m), want in cases.items():
        got = merge_bins(np.array(counts, np.int64), m)
        assert got.tolist() == want, (counts, m, got)
        assert got.dtype == np.int64


def test_place_lenses_bins_every_axis_and_drops_lenses_outside_the_grid():
    from lensaudit.selection.closure import place_lenses

    grid = Grid(GridConfig(theta_e=AxisSpec(edges=(0.5, 1.0, 2.0)), psf_fwhm=AxisSpec(edges=(0.8, 1.2, 2.0)),
                           depth=AxisSpec(edges=(23.0, 24.0, 25.0)), arc_mag=AxisSpec(edges=(19, 21, 23))))
    true = pd.DataFrame({"id": list("abcde"), "theta_e": [0.7, 1.5, 2.0, 0.4, 1.0],
                         "psfsize_r": [0.9, 1.5, 1.9, 1.0, 1.2], "depth_r": [23.5, 24.5, 23.0, 24.0, np.nan],
                         "arc_mag_r": [20.0, 22.0, 19.5, 20.0, 20.0]})
    t = place_lenses(true, grid)
    assert t["id"].tolist() == ["a", "b", "c"]               # d: theta_E below the grid; e: no depth
    assert t["i_theta_e"].tolist() == [0, 1, 1] and t["i_psf_fwhm"].tolist() == [0, 1, 1]
    assert t["i_depth"].tolist() == [0, 1, 0] and t["i_arc_mag"].tolist() == [0, 1, 0]
    assert t["cell"].tolist() == [0, 15, 1 * 8 + 1 * 4 + 0 * 2 + 0]
    assert t["cell"].tolist() == np.ravel_multi_index(
        (t["i_theta_e"], t["i_psf_fwhm"], t["i_depth"], t["i_arc_mag"]), grid.shape).tolist()
    empty = place_lenses(true.iloc[3:4], grid)
    assert len(empty) == 0 and empty["cell"].dtype == np.int64


def test_delta_summary_from_known_replicates():
    from scipy.stats import beta

    from lensaudit.selection.closure import _delta_summary

    g = np.random.default_rng(3)
    boot = np.column_stack([g.normal(0.3, 0.02, 500), g.normal(0.25, 0.001, 500), np.zeros(500)])
    boot[:, 2] = boot[:, 0] - boot[:, 1]
    boot[7] = np.nan                                          # a replicate that lost every lens
    point = np.array([0.31, 0.25, 0.06])
    s = _delta_summary(point, boot, k=25, n=100)
    ok = np.isfinite(boot[:, 2])
    # the true side's bootstrap variance (tiny here) is raised to the Jeffreys posterior's half-width squared
    half = (beta.ppf(0.84, 25.5, 75.5) - beta.ppf(0.16, 25.5, 75.5)) / 2
    var = np.var(boot[ok, 2], ddof=1) + half**2 - np.var(boot[ok, 1], ddof=1)
    sd = np.sqrt(var)
    assert s["se"] == pytest.approx(sd, rel=1e-9)
    assert (s["c_inj"], s["c_true"], s["diff"]) == (0.31, 0.25, 0.06)
    assert s["lo95"] == pytest.approx(0.06 - norm.ppf(0.975) * sd) and s["hi95"] == pytest.approx(0.06 + 1.959964 * sd)
    assert s["z"] == pytest.approx(0.06 / sd) and s["p_value"] == pytest.approx(2 * norm.sf(0.06 / sd))
    assert s["mde80"] == pytest.approx(MDE80_SIGMAS * sd)
    # a true side whose bootstrap variance exceeds the Jeffreys floor keeps its own variance
    wide = boot.copy()
    wide[:, 1] = g.normal(0.25, 0.2, 500)
    wide[:, 2] = wide[:, 0] - wide[:, 1]
    wide[7] = np.nan
    assert _delta_summary(point, wide, 25, 100)["se"] == pytest.approx(np.std(wide[ok, 2], ddof=1), rel=1e-9)
    # no lenses: no floor; a negative Delta gives a negative z and the same p
    assert _delta_summary(point, boot, 0, 0)["se"] == pytest.approx(np.std(boot[ok, 2], ddof=1), rel=1e-9)
    neg = _delta_summary(-point[[1, 0, 2]] * np.array([-1, -1, 1]), boot, 25, 100)
    assert neg["z"] == pytest.approx(-0.06 / sd) and neg["p_value"] == pytest.approx(s["p_value"])
    # no spread at all: z and p undefined, not infinite
    flat = np.tile([0.5, 0.25, 0.25], (50, 1))
    f = _delta_summary(np.array([0.5, 0.25, 0.25]), flat, 0, 0)
    assert f["se"] == 0.0 and np.isnan(f["z"]) and np.isnan(f["p_value"]) and f["lo95"] == f["hi95"] == 0.25
    one = _delta_summary(point, boot[:1], 25, 100)
    assert np.isnan(one["se"]) and np.isnan(one["p_value"])


def test_closure_bootstrap_resamples_lenses_injections_and_stamps():
    lens_cell, lens_det = np.array([0, 0, 1, 1]), np.array([1, 0, 1, 1])
    inj_cell = np.repeat([0, 1], 6)
    inj_det = np.array([1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 0, 0])
    base = closure_bootstrap(lens_cell, lens_det, inj_cell, inj_det, 2, n_boot=400, seed=5)
    again = closure_bootstrap(lens_cell, lens_det, inj_cell, inj_det, 2, n_boot=400, seed=5)
    np.testing.assert_array_equal(base["boot"], again["boot"])               # seeded
    other = closure_bootstrap(lens_cell, lens_det, inj_cell, inj_det, 2, n_boot=400, seed=6)
    assert not np.array_equal(base["boot"], other["boot"], equal_nan=True)
    # blocks of replicates give the requested number, each a different draw
    blk = closure_bootstrap(lens_cell, lens_det, inj_cell, inj_det, 2, n_boot=250, seed=5, block=100)["boot"]
    assert blk.shape == (250, 1, 3) and not np.allclose(blk[:100, 0, 0], blk[100:200, 0, 0], equal_nan=True)
    # the injection side varies (C_inj), the true side varies (C_true), and their replicate means sit on the point
    b = base["boot"][:, 0]
    assert np.nanstd(b[:, 0]) > 0.02 and np.nanstd(b[:, 1]) > 0.05
    np.testing.assert_allclose(np.nanmean(b, axis=0), base["point"][0], atol=0.05)
    # two stamps for twelve injections: the library bootstrap widens the injection side
    stamps = np.tile([0, 1], 6)
    lib = closure_bootstrap(lens_cell, lens_det, inj_cell, inj_det, 2, n_boot=400, seed=5, stamp_ids=stamps)["boot"]
    assert np.nanstd(lib[:, 0, 0]) > 1.3 * np.nanstd(b[:, 0])
    # groups: one row per group after the overall one
    grp = closure_bootstrap(lens_cell, lens_det, inj_cell, inj_det, 2, n_boot=10, seed=5, groups=np.array([0, 0, 1, 1]))
    assert grp["point"].shape == (3, 3) and grp["boot"].shape == (10, 3, 3)
    np.testing.assert_allclose(grp["point"][2], [4 / 6, 1.0, 4 / 6 - 1.0])
    np.testing.assert_allclose(grp["point"][1], [0.5, 0.5, 0.0])


# ---------------------------------------------------------------- the gate's floors, stability and KS tests
def test_ks_tests_compare_the_finite_values_with_scipy():
    from scipy.stats import ks_2samp

    from lensaudit.realism.gate import _ks

    a = np.array([1.0, 2.0, np.nan, 3.0, 4.0, np.inf])
    b = np.array([2.5, 3.5, 4.5, 5.5, 6.5, np.nan])
    r = _ks(a, b)
    want = ks_2samp([1, 2, 3, 4], [2.5, 3.5, 4.5, 5.5, 6.5])
    assert r["statistic"] == pytest.approx(want.statistic) and r["p"] == pytest.approx(want.pvalue)
    assert (r["n_real"], r["n_injected"], r["median_real"], r["median_injected"]) == (4, 5, 2.5, 4.5)
    few = _ks([1.0, np.nan], [1.0, 2.0, 3.0])
    assert few == {"statistic": None, "p": None, "n_real": 1, "n_injected": 3}
    assert _ks([1.0, 2.0], [3.0])["statistic"] is None
    assert _ks([1.0, 2.0], [3.0, 4.0])["statistic"] == 1.0


def _recording_cv_auc(monkeypatch, value):
    import lensaudit.realism.gate as gate

    calls = []

    def fake(a, b, folds, C, seed):
        calls.append((len(a), len(b), folds, C, seed, a.copy(), b.copy()))
        return value(len(calls)) if callable(value) else value

    monkeypatch.setattr(gate, "cv_auc", fake)
    return calls


def test_floors_put_the_probe_on_one_population_at_the_tests_sizes(monkeypatch):
    from lensaudit.realism.gate import ProbeConfig, _floors

    calls = _recording_cv_auc(monkeypatch, lambda k: 0.5 + k / 100)
    xr = np.arange(30, dtype=float)[:, None]
    xi = 1000 + np.arange(100, dtype=float)[:, None]
    f = _floors(xr, xi, ProbeConfig(folds=3, C=2.0))
    assert f == {"injections": 0.51, "real_halves": 0.52}
    na, nb, fo, c, _, a, b = calls[0]
    assert (na, nb, fo, c) == (30, 70, 3, 2.0)                      # as many injections as real lenses, the rest
    assert a.min() >= 1000 and b.min() >= 1000                      # injections against injections
    assert sorted(np.r_[a[:, 0], b[:, 0]].tolist()) == xi[:, 0].tolist()
    assert (calls[1][0], calls[1][1]) == (15, 15)                   # real halves
    assert calls[1][5].max() < 30 and calls[1][6].max() < 30
    assert sorted(np.r_[calls[1][5][:, 0], calls[1][6][:, 0]].tolist()) == xr[:, 0].tolist()
    # more real lenses than half the injections: the injection floor splits them in half
    calls.clear()
    _floors(np.zeros((80, 1)), xi, ProbeConfig(folds=3))
    assert calls[0][:2] == (50, 50)
    # too few real lenses for the folds: no real floor
    calls.clear()
    f = _floors(np.zeros((5, 1)), xi, ProbeConfig(folds=3))
    assert np.isnan(f["real_halves"]) and len(calls) == 1
    calls.clear()
    assert np.isfinite(_floors(np.zeros((6, 1)), xi, ProbeConfig(folds=3))["real_halves"]) and len(calls) == 2


def test_floors_are_near_chance_for_one_population_and_seeded():
    from lensaudit.realism.gate import ProbeConfig, _floors

    g = np.random.default_rng(0)
    xr, xi = g.normal(size=(120, 4)), g.normal(size=(400, 4)) + 3.0
    f = _floors(xr, xi, ProbeConfig(folds=3))
    assert abs(f["injections"] - 0.5) < 0.12 and abs(f["real_halves"] - 0.5) < 0.15
    assert _floors(xr, xi, ProbeConfig(folds=3)) == f


def test_subsample_stability_counts_subsamples_that_give_the_same_verdict(monkeypatch):
    from lensaudit.realism.gate import ProbeConfig, _subsample_stability

    pc = ProbeConfig(folds=4, C=0.5, seed=7)
    xr, xi = np.arange(50, dtype=float)[:, None], np.zeros((90, 1))
    calls = _recording_cv_auc(monkeypatch, lambda k: [0.6, 0.8, 0.7, 0.9, 0.7][k - 1])
    # critical AUC 0.7: above it is NO-GO (p < alpha); at it is GO
    assert _subsample_stability(xr, xi, pc, 0.7, "NO-GO", 5) == pytest.approx(2 / 5)
    assert [c[:5] for c in calls] == [(40, 90, 4, 0.5, 8 + k) for k in range(5)]   # 80 percent of 50, all injections
    for c in calls:
        assert len(np.unique(c[5])) == 40 and (np.diff(c[5][:, 0]) > 0).all()     # without replacement, in order
    assert not all(np.array_equal(calls[0][5], c[5]) for c in calls[1:])
    calls.clear()
    assert _subsample_stability(xr, xi, pc, 0.7, "GO", 5) == pytest.approx(3 / 5)
    calls.clear()
    _subsample_stability(np.zeros((4, 1)), xi, pc, 0.7, "GO", 2)
    assert calls[0][0] == 4                                            # at least the folds
    assert np.isnan(_subsample_stability(xr, xi, pc, 0.7, "GO", 0))


# ---------------------------------------------------------------- the tables a person reads
def test_the_closure_and_gate_tables_print_each_number_where_its_header_says():
    from lensaudit.realism.gate import format_realism
    from lensaudit.selection.closure import format_closure

    summ = pd.DataFrame([
        {"family": "sersic", "threshold": "p>=0.5", "planted": False, "c_true": 0.2, "c_inj": 0.25, "diff": 0.05,
         "lo95": 0.01, "hi95": 0.09, "z": 2.5, "mde80": 0.056, "chi2": 12.34, "dof": 7, "chi2_p": 0.0899,
         "gate_verdict": "GO"},
        {"family": "planted", "threshold": "p>=0.5", "planted": True, "c_true": 0.2, "c_inj": 0.6, "diff": 0.4,
         "lo95": 0.3, "hi95": 0.5, "z": 8.0, "mde80": 0.14, "chi2": 99.0, "dof": 12, "chi2_p": 0.0,
         "gate_verdict": None},
        {"family": "other_op", "threshold": "fpr=0.01", "planted": False, "c_true": 0.1, "c_inj": 0.1, "diff": 0.0,
         "lo95": -0.1, "hi95": 0.1, "z": 0.0, "mde80": 0.1, "chi2": 1.0, "dof": 1, "chi2_p": 0.5,
         "gate_verdict": "GO"}])
    lines = format_closure(summ).splitlines()
    assert lines[0].startswith("closure at p>=0.5: Delta = injection-predicted minus true")
    assert lines[1].split() == ["family", "true", "inj", "Delta", "[95%]", "z", "MDE80", "chi2/dof", "p", "gate"]
    assert lines[2].split() == ["sersic", "0.200", "0.250", "+0.050", "[+0.010,", "+0.090]", "2.50", "0.056",
                                "12.3/7", "0.090", "GO"]
    assert lines[3].split() == ["planted", "*", "0.200", "0.600", "+0.400", "[+0.300,", "+0.500]", "8.00", "0.140",
                                "99.0/12", "0.000", "-"]
    assert len(lines) == 5 and "MDE80: smallest |Delta|" in lines[4]
    assert lines[4].startswith("interval: bootstrap of true lenses, injections and (stamp families) stamps; MDE80")
    assert format_closure(summ, "fpr=0.01").splitlines()[2].split()[0] == "other_op"

    table = pd.DataFrame([{"family": "clumpy", "planted": False, "probe_auc": 0.8123, "probe_auc_lo95": 0.75,
                           "probe_auc_hi95": 0.87, "permutation_p": 0.005, "null_q95": 0.561, "auc_mde80": 0.62,
                           "floor_injections": 0.51, "floor_real_halves": 0.49, "verdict_stability": 0.8,
                           "score_shift": 0.643, "verdict": "NO-GO", "rule": "GO if p >= 0.05"},
                          {"family": "planted", "planted": True, "probe_auc": 0.95, "probe_auc_lo95": 0.9,
                           "probe_auc_hi95": 0.99, "permutation_p": 0.005, "null_q95": 0.57, "auc_mde80": 0.63,
                           "floor_injections": 0.6, "floor_real_halves": 0.5, "verdict_stability": 1.0,
                           "score_shift": 0.9, "verdict": "NO-GO", "rule": "GO if p >= 0.05"}])
    g = format_realism(table).splitlines()
    assert g[0].split() == ["family", "probe", "AUC", "[95%]", "perm", "p", "null", "q95", "MDE80", "floors",
                            "inj/real", "stable", "shift", "verdict"]
    assert g[1].split() == ["clumpy", "0.812", "[0.750,", "0.870]", "0.005", "0.561", "0.620", "0.510/0.490",
                            "0.80", "0.643", "NO-GO"]
    assert g[2].split()[:2] == ["planted", "*"]
    assert g[3] == "rule: GO if p >= 0.05; matched in measured arc r magnitude"
    assert g[-1] == "* planted: deliberately unrealistic (no PSF, no noise); the gate must say NO-GO" and len(g) == 6
    assert g[4].startswith("floors: the probe on one population (injections vs injections, real halves); stable")
    assert format_realism(table.iloc[1:]).splitlines()[2] == g[3]                 # the rule of a one-family table
    empty = format_realism(table.iloc[:0]).splitlines()
    assert len(empty) == 3 and not any(x.startswith("rule:") for x in empty)


def test_score_shift_bootstrap_draws_every_object_and_caps_its_replicates():
    from lensaudit.realism.gate import _score_shift

    # one low and one high object on each side: resamples reach both ends of [0, 1]
    s = _score_shift(np.array([0.0, 1.0]), np.full(5, 0.5), 400, 0)
    assert s["value"] == 0.5 and s["lo95"] == 0.0 and s["hi95"] == 1.0
    s = _score_shift(np.full(5, 0.5), np.array([0.0, 1.0]), 400, 0)
    assert s["value"] == 0.5 and s["lo95"] == 0.0 and s["hi95"] == 1.0
    # at most 500 replicates: a larger n_boot gives the 500-replicate interval
    g = np.random.default_rng(1)
    pr, pi = g.random(40), g.random(60) ** 0.7
    capped, full = _score_shift(pr, pi, 5000, 3), _score_shift(pr, pi, 500, 3)
    assert capped == full and _score_shift(pr, pi, 499, 3) != full
    none = _score_shift(pr, pi, 0, 3)
    assert np.isnan(none["lo95"]) and np.isnan(none["hi95"]) and none["value"] == full["value"]


# ---------------------------------------------------------------- one family through the gate, every number checked
def _gate_frames(n_real=24, n_inj=90, width=5, seed=3, shift=0.6):
    """Real lenses and injections as the gate reads them: features, scores, measured arcs (AB mag, arcsec)."""
    g = np.random.default_rng(seed)

    def arcs(n, dg_r):
        return {"meas_arc_mag_r": g.uniform(21.0, 22.9, n), "meas_arc_g_r": g.normal(0.8 + dg_r, 0.2, n),
                "meas_arc_snr_r": g.gamma(3.0, 5.0, n), "meas_arc_radius": g.uniform(0.8, 2.5, n),
                "meas_arc_area": g.uniform(1.0, 6.0, n)}

    real = pd.DataFrame({"id": [f"r{k}" for k in range(n_real)], "probability": g.uniform(0.2, 1.0, n_real),
                         "features": list(g.normal(0.0, 1.0, (n_real, width)).astype(np.float32)),
                         **arcs(n_real, 0.0), "sky_sigma_r": g.uniform(0.002, 0.004, n_real)})
    inj = pd.DataFrame({"index": np.arange(n_inj), "probability": g.uniform(0.0, 0.9, n_inj),
                        "features": list(g.normal(shift, 1.0, (n_inj, width)).astype(np.float32)),
                        **arcs(n_inj, 0.3), "host_sigma_r": g.uniform(0.002, 0.005, n_inj)})
    inj["arc_mag_r"] = inj["meas_arc_mag_r"] - 0.4 + g.normal(0, 0.1, n_inj)     # truth: the estimator reads faint
    return real, inj


def _fake_injections(monkeypatch, frames: dict):
    import lensaudit.inject.records as records

    calls = []

    def fake(run, fam, tag, features=False):
        calls.append((str(run), fam, tag, features))
        return frames[fam].copy()

    monkeypatch.setattr(records, "read_injections", fake)
    return calls


def _gate_cfg(tmp_path, **kw):
    from lensaudit.realism.gate import ProbeConfig, RealismConfig

    base = {"selection_run": str(tmp_path / "sel"), "predictions": "p", "manifest": "m", "store": "s",
            "out": str(tmp_path / "out"), "alpha": 0.1, "n_subsamples": 3, "match_bin_mag": 0.5,
            "match_max_ratio": 2, "probe": ProbeConfig(folds=2, C=0.7, n_boot=40, n_permutations=19, seed=7)}
    return RealismConfig(**{**base, **kw})


def test_one_family_through_the_gate_every_number_from_its_own_oracle(monkeypatch, tmp_path):
    from scipy.stats import ks_2samp
    from sklearn.metrics import roc_auc_score

    from lensaudit.realism.gate import _floors, _gate_family, _subsample_stability
    from lensaudit.realism.probe import frechet_distance, probe_auc
    from lensaudit.survey.arcphot import estimator_accuracy
    from lensaudit.utils.seeds import rng

    real, inj = _gate_frames()
    calls = _fake_injections(monkeypatch, {"fam": inj})
    cfg = _gate_cfg(tmp_path, max_injections=60)
    row, det = _gate_family(cfg, "fam", "tagX", real)
    assert calls == [(cfg.selection_run, "fam", "tagX", True)]           # this run's records, with features
    # the injections the probe sees: 60 of 90, drawn by the family's own stream, then matched in brightness
    sub = inj.iloc[np.sort(rng(7, "realism.subsample", "fam").choice(90, 60, replace=False))]
    kr, ki = brightness_match(real["meas_arc_mag_r"].to_numpy(), sub["meas_arc_mag_r"].to_numpy(), 0.5, 2, 7)
    r, i = real.iloc[kr], sub.iloc[ki]
    assert len(i) >= len(r) >= 10
    xr, xi = np.stack(r["features"]), np.stack(i["features"])
    pr = probe_auc(xr, xi, 2, 0.7, 40, 19, 7)
    assert row["family"] == "fam" and row["planted"] is False
    assert (row["n_real"], row["n_injected"], det["n_matched_real"], det["n_matched_injected"]) == (
        len(r), len(i), len(r), len(i))
    assert row["probe_auc"] == pr["auc"] and row["permutation_p"] == pr["permutation_p"]
    assert (row["probe_auc_lo95"], row["probe_auc_hi95"]) == tuple(pr["interval"]["ci95"])
    assert (row["probe_auc_lo68"], row["probe_auc_hi68"]) == tuple(pr["interval"]["ci68"])
    assert row["probe_auc_lo95"] <= row["probe_auc_lo68"] <= row["probe_auc_hi68"] <= row["probe_auc_hi95"]
    assert row["probe_auc_lo95"] < row["probe_auc_hi95"]
    assert (row["null_mean"], row["null_q95"], row["auc_mde80"]) == (pr["null"]["mean"], pr["null"]["q95"],
                                                                      pr["auc_mde80"])
    assert row["n_permutations"] == 19 and det["null_critical_auc"] == pytest.approx(
        np.quantile(pr["null_values"], 0.9))
    assert row["verdict"] == ("GO" if pr["permutation_p"] >= 0.1 else "NO-GO")
    assert row["rule"] == "GO if the permutation p-value >= 0.1 (19 refits on permuted labels)"
    fl = _floors(xr, xi, cfg.probe)
    assert (row["floor_injections"], row["floor_real_halves"]) == (fl["injections"], fl["real_halves"])
    assert row["verdict_stability"] == _subsample_stability(xr, xi, cfg.probe, det["null_critical_auc"],
                                                            row["verdict"], 3)
    y = np.r_[np.zeros(len(r)), np.ones(len(i))]
    assert row["score_shift"] == pytest.approx(roc_auc_score(y, np.r_[r["probability"], i["probability"]]))
    assert row["score_shift_lo95"] < row["score_shift"] < row["score_shift_hi95"]
    assert row["frechet"] == pytest.approx(frechet_distance(xr, xi))
    assert row["median_score_real"] == pytest.approx(np.median(r["probability"]))
    assert row["median_score_injected"] == pytest.approx(np.median(i["probability"]))
    for col, name in {"meas_arc_snr_r": "arc_snr", "meas_arc_g_r": "arc_g_r", "meas_arc_radius": "arc_radius",
                      "meas_arc_area": "arc_area", "sky": "sky_sigma_r"}.items():
        a, b = (r["sky_sigma_r"], i["host_sigma_r"]) if col == "sky" else (r[col], i[col])
        want = ks_2samp(a, b)
        assert row[f"ks_{name}"] == pytest.approx(want.statistic) and row[f"ks_{name}_p"] == pytest.approx(want.pvalue)
        assert det["ks"][name]["n_real"] == len(r) and det["ks"][name]["n_injected"] == len(i)
    # the estimator's accuracy on every injection of the family (before any subsample): its truth is known
    want = estimator_accuracy(inj["arc_mag_r"], inj["meas_arc_mag_r"])
    assert pd.DataFrame(det["estimator_accuracy"]).equals(pd.DataFrame(want))         # NaN where a bin is empty
    assert sum(b["n"] for b in det["estimator_accuracy"]) == 90
    # the same family without a subsample sees other injections; without host noise its sky test is empty
    calls.clear()
    plain, _ = _gate_family(_gate_cfg(tmp_path, max_injections=90), "fam", "tagX", real)
    assert plain["n_injected"] > row["n_injected"]
    _fake_injections(monkeypatch, {"fam": inj.drop(columns=["host_sigma_r"]).assign(planted=True)})
    bare, det2 = _gate_family(cfg, "fam", "tagX", real)
    assert bare["planted"] is True and bare["ks_sky_sigma_r"] is None and bare["ks_sky_sigma_r_p"] is None
    assert det2["ks"]["sky_sigma_r"] == {"statistic": None, "p": None, "n_real": 0, "n_injected": 0}
    assert bare["probe_auc"] == row["probe_auc"]


def test_the_gate_needs_features_arcs_one_width_and_enough_matched_objects(monkeypatch, tmp_path):
    from lensaudit.artifacts.manifest import ManifestError
    from lensaudit.errors import InputError
    from lensaudit.realism.gate import _gate_family

    real, inj = _gate_frames(n_real=12, n_inj=40)
    cfg = _gate_cfg(tmp_path)
    for bad, err, match in [(inj.drop(columns=["features"]), InputError, "without features"),
                            (inj.drop(columns=["meas_arc_area"]), InputError, "meas_arc_area"),
                            (inj.assign(features=list(np.zeros((40, 4), np.float32))), ManifestError, "width than 5")]:
        _fake_injections(monkeypatch, {"fam": bad})
        with pytest.raises(err, match=match):
            _gate_family(cfg, "fam", "t", real)
    # folds = 2: at least 4 brightness-matched objects on each side, counted exactly
    one_bin = {"meas_arc_mag_r": 21.1}
    for n_real, n_inj, runs in [(4, 40, True), (3, 40, False), (4, 4, True), (8, 3, False), (2, 2, False)]:
        _fake_injections(monkeypatch, {"fam": inj.iloc[:n_inj].assign(**one_bin)})
        got = _gate_family(cfg, "fam", "t", real.iloc[:n_real].assign(**one_bin))
        assert (got is not None) == runs, (n_real, n_inj)
        if runs:
            assert got[0]["n_real"] == min(n_real, n_inj) and got[0]["n_injected"] >= got[0]["n_real"]


def test_real_lenses_are_the_catalogued_tiers_of_the_audited_splits_with_arcs_measured_from_their_pixels(tmp_path):
    from lensaudit.artifacts.manifest import ManifestError
    from lensaudit.cutouts import CutoutStore
    from lensaudit.errors import InputError
    from lensaudit.realism.gate import real_lenses
    from lensaudit.survey.arcphot import measure_arcs

    rows = [("a0", "val", 1, "A"), ("a1", "val", 1, "A"), ("a2", "test", 1, "A"), ("a3", "test", 1, "A"),
            ("a4", "val", 1, "A"), ("a5", "val", 1, "A"), ("a6", "val", 1, "A"),
            ("tr", "train", 1, "A"),          # another split
            ("neg", "val", 0, "A"),           # not a lens
            ("tb", "val", 1, "B"),            # another tier
            ("nocut", "val", 1, "A"),         # features but no cutout: counted, left out
            ("nofeat", "val", 1, "A")]        # a cutout but no score: left out
    m = pd.DataFrame(rows, columns=["id", "split", "label", "tier"]).assign(ra=150.0, dec=2.0)
    m.to_parquet(tmp_path / "m.parquet")
    g = np.random.default_rng(1)
    scored = [r[0] for r in rows if r[0] != "nofeat"]
    pd.DataFrame({"id": scored, "probability": g.uniform(0, 1, len(scored)),
                  "features": list(g.normal(size=(len(scored), 3)))}).to_parquet(tmp_path / "p.parquet")
    store = CutoutStore(tmp_path / "store", create=True)
    yy, xx = np.mgrid[0:101, 0:101]
    ring = np.exp(-((np.hypot(xx - 50, yy - 50) - 8) ** 2) / 2.0)
    with store.writer() as w:
        for cid in [r[0] for r in rows if r[0] != "nocut"]:
            noise = g.normal(0, 1, (3, 101, 101)) * np.array([0.002, 0.01, 0.03])[:, None, None]  # g, r, z sky
            w.add(cid, (0.2 * ring[None] + noise).astype(np.float32), 150.0, 2.0)
    cfg = _gate_cfg(tmp_path, manifest=str(tmp_path / "m.parquet"), predictions=str(tmp_path / "p.parquet"),
                    store=str(tmp_path / "store"), probe={"folds": 3})
    r = real_lenses(cfg)
    assert r["id"].tolist() == [f"a{k}" for k in range(7)] and r.index.tolist() == list(range(7))
    assert "index" not in r.columns and r.attrs["n_without_cutout"] == 1
    cubes = store.get(r["id"].tolist()).astype(np.float64)
    for col, v in measure_arcs(cubes).items():
        np.testing.assert_array_equal(r[col].to_numpy(), v)
    assert np.allclose(r["sky_sigma_r"], 0.01, rtol=0.1)                 # the r band's sky, not g's or z's
    # the probe's three folds need six real lenses (two halves for the floor): six run, five do not
    six = tmp_path / "six.parquet"
    m[m["id"] != "a6"].to_parquet(six)
    assert len(real_lenses(cfg.model_copy(update={"manifest": str(six)}))) == 6
    five = tmp_path / "five.parquet"
    m[~m["id"].isin(["a5", "a6"])].to_parquet(five)
    with pytest.raises(InputError, match="only 5 real lenses"):
        real_lenses(cfg.model_copy(update={"manifest": str(five)}))
    m.drop(columns=["tier"]).to_parquet(tmp_path / "notier.parquet")
    with pytest.raises(ManifestError, match="tier"):
        real_lenses(cfg.model_copy(update={"manifest": str(tmp_path / "notier.parquet")}))


def test_the_gate_over_a_selection_run_writes_its_table_lenses_and_report(monkeypatch, tmp_path):
    import lensaudit.realism.gate as gate
    from lensaudit.artifacts import RealismDir, SelectionRunDir, read_doc, write_doc
    from lensaudit.artifacts.kinds import REALISM_DOC, SELECTION_SUMMARY
    from lensaudit.errors import InputError

    real, inj = _gate_frames()
    real.loc[[0, 5], "meas_arc_mag_r"] = np.nan                       # two arcs not measured
    real.attrs["n_without_cutout"] = 2
    monkeypatch.setattr(gate, "real_lenses", lambda cfg, features_from=None: real.copy())
    calls = _fake_injections(monkeypatch, {"a": inj, "b": inj.assign(planted=True), "tiny": inj.iloc[:1]})
    write_doc(SelectionRunDir(tmp_path / "sel").summary, SELECTION_SUMMARY,
              {"families": ["a", "b", "tiny"], "n_hosts": 0, "cells": [], "config_tag": "tagX"})
    out = tmp_path / "deep" / "er" / "real"
    cfg = _gate_cfg(tmp_path, out=str(out))
    table = gate.run_realism(cfg)
    assert {c[2] for c in calls} == {"tagX"}
    assert table["family"].tolist() == ["a", "b"] and table["planted"].tolist() == [False, True]  # tiny: too few
    rd = RealismDir(out)
    pd.testing.assert_frame_equal(pd.read_parquet(rd.table), table)
    pd.testing.assert_frame_equal(pd.read_csv(rd.csv), table, check_dtype=False)
    lenses = pd.read_parquet(rd.real_lenses)
    assert "features" not in lenses and len(lenses) == len(real)
    doc = read_doc(rd.report, REALISM_DOC)
    assert doc["config"] == cfg.model_dump(mode="json") and doc["n_real_lenses"] == len(real)
    assert doc["n_real_without_cutout"] == 2 and doc["real_measured_fraction"] == pytest.approx(22 / 24)
    assert set(doc["details"]) == {"a", "b"} and doc["details"]["a"]["n_matched_real"] == table["n_real"].iat[0]
    assert [f["family"] for f in doc["families"]] == ["a", "b"]
    own = "the audited model's own penultimate features"      # the summary names no reference network
    assert table["features_from"].tolist() == [own, own] and doc["features_from"] == {"source": "model", "note": own}
    # again into the same folder, one family by name; an unknown family, or none with enough objects, is an error
    assert gate.run_realism(cfg.model_copy(update={"families": ("b",)}))["family"].tolist() == ["b"]
    with pytest.raises(InputError, match=r"\['zzz'\]"):
        gate.run_realism(cfg.model_copy(update={"families": ("a", "zzz")}))
    with pytest.raises(InputError, match="no family"):
        gate.run_realism(cfg.model_copy(update={"families": ("tiny",)}))
    real.attrs.clear()
    gate.run_realism(cfg.model_copy(update={"families": ("a",)}))
    assert read_doc(rd.report, REALISM_DOC)["n_real_without_cutout"] == 0


# ---------------------------------------------------------------- closure: edge cases that change what it reports
def test_merge_bins_restarts_its_count_at_each_group_and_folds_a_short_second_group_back():
    from lensaudit.selection.closure import merge_bins

    assert merge_bins(np.array([3, 2, 1, 3]), 3).tolist() == [0, 1, 1, 2]     # each group counts from zero
    assert merge_bins(np.array([5, 1]), 3).tolist() == [0, 0]                 # short group 1 joins group 0
    assert merge_bins(np.array([5, 1, 0]), 3).tolist() == [0, 0, 0]


def test_closure_bootstrap_on_float_cells_sparse_grids_and_uncovered_lenses_without_warnings():
    import warnings

    lens_cell, lens_det = np.array([0, 0, 1, 1, 2]), np.array([1, 0, 1, 1, 1])
    inj_cell, inj_det = np.repeat([0, 1], 4), np.array([1, 1, 0, 0, 1, 0, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                        # 0/0 in an empty cell is expected
        base = closure_bootstrap(lens_cell, lens_det, inj_cell, inj_det, 6, n_boot=50, seed=2,
                                 groups=np.array([0, 0, 0, 0, 1]))
    # the lens in cell 2 has no injection: it leaves both sides (3 of the 4 others detected; cells 0.5 and 0.75)
    np.testing.assert_allclose(base["point"][0], [0.625, 0.75, -0.125])
    assert np.isnan(base["point"][2]).all() and np.isnan(base["boot"][:, 2]).all()   # a group of uncovered lenses
    floats = closure_bootstrap(lens_cell.astype(float), lens_det.astype(bool), inj_cell.astype(float),
                               inj_det.astype(bool), 6, n_boot=50, seed=2, groups=np.array([0, 0, 0, 0, 1.0]))
    for k in ("point", "boot"):
        np.testing.assert_array_equal(floats[k], base[k])
    none = closure_bootstrap(lens_cell, lens_det, inj_cell, inj_det, 6, n_boot=0)
    assert none["boot"].shape == (0, 1, 3) and none["point"].shape == (1, 3)
    default = closure_bootstrap(lens_cell, lens_det, inj_cell, inj_det, 6)
    assert default["boot"].shape == (1000, 1, 3)
    np.testing.assert_array_equal(default["boot"], closure_bootstrap(lens_cell, lens_det, inj_cell, inj_det, 6,
                                                                     n_boot=1000, seed=0)["boot"])


def test_closure_bootstrap_spread_is_the_binomial_standard_error_of_each_side():
    """Poisson(1) weights reproduce the sampling sd sqrt(p (1 - p) / n) of a completeness (to 10 percent at 2000
    replicates: the sd of a bootstrap sd is about 1.6 percent); heavier or lighter weights would not."""
    g = np.random.default_rng(11)
    n_l, n_i = 400, 4000
    ld, idt = g.random(n_l) < 0.3, g.random(n_i) < 0.6
    b = closure_bootstrap(np.zeros(n_l, int), ld, np.zeros(n_i, int), idt, 1, n_boot=2000, seed=4)["boot"][:, 0]
    pl, pi = ld.mean(), idt.mean()
    assert np.std(b[:, 1]) == pytest.approx(np.sqrt(pl * (1 - pl) / n_l), rel=0.1)
    assert np.std(b[:, 0]) == pytest.approx(np.sqrt(pi * (1 - pi) / n_i), rel=0.1)
    assert np.std(b[:, 2]) == pytest.approx(np.hypot(np.std(b[:, 0]), np.std(b[:, 1])), rel=0.1)   # independent


def test_delta_summary_with_two_one_or_no_replicates_and_the_jeffreys_floor_from_one_lens():
    import warnings

    from scipy.stats import beta

    from lensaudit.selection.closure import _delta_summary

    point = np.array([0.6, 1.0, -0.4])
    two = np.array([[0.5, 1.0, -0.5], [0.7, 1.0, -0.3]])                 # the true side never varies
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s2 = _delta_summary(point, two, 5, 5)
        half = (1.0 - beta.ppf(0.16, 5.5, 0.5)) / 2                     # every lens detected: upper limit 1
        assert s2["se"] == pytest.approx(np.sqrt(np.var(two[:, 2], ddof=1) + half**2))
        s1 = _delta_summary(point, two[:1], 5, 5)
        s0 = _delta_summary(point, two[:0], 5, 5)
        assert np.isnan(s1["se"]) and np.isnan(s0["se"]) and np.isnan(s0["p_value"])
        lone = _delta_summary(point, two, 1, 1)                           # one lens, detected
        half1 = (1.0 - beta.ppf(0.16, 1.5, 0.5)) / 2
        assert lone["se"] == pytest.approx(np.sqrt(np.var(two[:, 2], ddof=1) + half1**2))
        assert _delta_summary(point, two, 0, 0)["se"] == pytest.approx(np.std(two[:, 2], ddof=1))


def test_closure_test_counts_covered_cells_at_the_minimum_merges_bins_and_keeps_its_defaults():
    """Cells (theta_E, arc mag) of a 2 x 1 x 1 x 2 grid: cell 0 holds exactly min_count = 10 injections
    (covered), cell 1 nine (not), cell 2 thirty, cell 3 none at all; lenses sit in every cell and outside."""
    from scipy.stats import beta

    from lensaudit.selection.intervals import jeffreys_interval

    grid = Grid(GridConfig(theta_e=AxisSpec(edges=(0.5, 1.0, 2.0)), psf_fwhm=AxisSpec(edges=(0.8, 2.0)),
                           depth=AxisSpec(edges=(23.0, 25.0)), arc_mag=AxisSpec(edges=(19.0, 21.0, 23.0))))
    g = np.random.default_rng(8)
    centre = {0: (0.7, 20.0), 1: (0.7, 22.0), 2: (1.5, 20.0), 3: (1.5, 22.0)}
    n_inj, n_true = {0: 10, 1: 9, 2: 30, 3: 0}, {0: 10, 1: 4, 2: 12, 3: 3}
    inj = pd.DataFrame({"cell": np.repeat(list(n_inj), list(n_inj.values())),
                        "probability": g.uniform(0, 1, sum(n_inj.values()))})
    rows = [{"theta_e": centre[c][0], "arc_mag_r": centre[c][1], "psfsize_r": 1.2, "depth_r": 24.0,
             "probability": g.uniform()} for c in n_true for _ in range(n_true[c])]
    rows += [{"theta_e": 3.0, "arc_mag_r": 20.0, "psfsize_r": 1.2, "depth_r": 24.0, "probability": 0.9}] * 2
    true = pd.DataFrame(rows)
    true.loc[true["theta_e"].eq(1.5) & true["arc_mag_r"].eq(20.0), "probability"] = 0.9   # cell 2: all found,
    inj.loc[inj["cell"] == 2, "probability"] = 0.9                                         # truth and injections
    ops = [OperatingPoint.fixed(0.5)]
    bins, s = closure_test(true, inj, grid, ops)
    row = s.iloc[0]
    assert (row["n_true_in_grid"], row["n_true_covered"], row["n_boot"]) == (29, 22, 1000)
    merged = bins[bins["quantity"] == "theta_e x arc_mag"]
    assert merged["n_true"].tolist() == [10, 12] and row["dof"] == 2     # min_true 10: two merged bins
    k0 = int((true["probability"].iloc[:10] >= 0.5).sum())
    want = pd.DataFrame({"bin": [0, 1], "threshold": ["p>=0.5"] * 2, "theta_e_lo": [0.5, 1.0], "theta_e_hi": [1.0, 2.0],
                         "arc_mag_lo": [19.0, 19.0], "arc_mag_hi": [21.0, 21.0], "n_true": [10, 12], "k_true": [k0, 12]})
    pd.testing.assert_frame_equal(merged[list(want.columns)].reset_index(drop=True), want, check_dtype=False)
    for (_, r), k, n in zip(merged.iterrows(), (k0, 12), (10, 12), strict=True):
        lo, hi = jeffreys_interval(k, n, 0.68)
        assert (r["true_lo68"], r["true_hi68"]) == pytest.approx((float(lo), float(hi)))
        assert r["c_true"] == pytest.approx(k / n)
    # bin 1: every lens and every injection detected, no bootstrap spread: its sd is the Jeffreys floor alone
    assert merged["se"].iat[1] == pytest.approx((1 - beta.ppf(0.16, 12.5, 0.5)) / 2)
    assert merged["diff"].iat[1] == 0.0
    # the primary statistic: chi^2 = sum of the merged bins' z^2 on as many degrees of freedom as finite z
    from scipy.stats import chi2 as chi2_dist
    z = merged["z"].to_numpy(float)
    z = z[np.isfinite(z)]
    assert len(z) == row["dof"] and np.abs(z).max() > 0.1 and not np.isin(np.abs(z), (0.0, 1.0)).all()
    assert row["chi2"] == pytest.approx(float((z**2).sum()), rel=1e-12)
    assert row["chi2_p"] == pytest.approx(float(chi2_dist.sf((z**2).sum(), len(z))), rel=1e-12)
    # marginal bins of every axis, each with its centre, counts, Jeffreys limits and (all found) floor
    for axis, want_n in {"theta_e": {0: 10, 1: 12}, "arc_mag": {0: 22}, "psf_fwhm": {0: 22}, "depth": {0: 22}}.items():
        m = bins[bins["quantity"] == axis]
        assert dict(zip(m["bin"], m["n_true"], strict=True)) == want_n, axis
        np.testing.assert_allclose(m[f"{axis}_centre"], grid.centres(axis)[m["bin"].to_numpy()])
        assert (m["threshold"] == "p>=0.5").all()
        for _, r in m.iterrows():
            lo, hi = jeffreys_interval(int(r["k_true"]), int(r["n_true"]), 0.68)
            assert (r["true_lo68"], r["true_hi68"]) == pytest.approx((float(lo), float(hi)))
    t1 = bins[(bins["quantity"] == "theta_e") & (bins["bin"] == 1)].iloc[0]
    assert t1["k_true"] == 12 and t1["se"] == pytest.approx((1 - beta.ppf(0.16, 12.5, 0.5)) / 2)
    explicit = closure_test(true, inj, grid, ops, min_count=10, min_true=10, n_boot=1000, seed=0)
    pd.testing.assert_frame_equal(explicit[1], s)
    pd.testing.assert_frame_equal(explicit[0], bins)
    # without the marginal rows (repeated tests): the same summary and merged-bin rows, no marginal row
    lean_bins, lean = closure_test(true, inj, grid, ops, marginal_bins=False)
    pd.testing.assert_frame_equal(lean, s)
    pd.testing.assert_frame_equal(lean_bins, bins[bins["quantity"] == "theta_e x arc_mag"].dropna(axis=1, how="all")
                                  .reset_index(drop=True), check_like=True)
    assert closure_test(true, inj, grid, ops, min_count=11, n_boot=50)[1]["n_true_covered"].iat[0] == 12
    assert closure_test(true, inj, grid, ops, min_true=11, n_boot=50)[1]["dof"].iat[0] == 1
    assert closure_test(true, inj, grid, ops, seed=1)[1]["se"].iat[0] != row["se"]
    # no true lens inside the grid: an empty comparison, not an error
    outside = true.assign(theta_e=3.0)
    eb, es = closure_test(outside, inj, grid, ops, n_boot=50)
    assert (es["n_true_in_grid"].iat[0], es["n_true_covered"].iat[0], es["dof"].iat[0]) == (0, 0, 0)
    assert np.isnan(es["c_true"].iat[0]) and np.isnan(es["chi2_p"].iat[0]) and len(eb) == 0


def _hand_built_mock_survey(root):
    """A survey directory holding only what the closure's truth readers use: a truth table (6 lenses, a host and
    an artefact) and two sweep files; lens L5 is missing from the sweeps. Returns (truth lenses, sweep rows)."""
    from lensaudit.artifacts import MockSurveyDir
    from lensaudit.survey.sweepio import synthetic_sweep_rows, write_sweep_fits

    md = MockSurveyDir(root)
    md.truth.parent.mkdir(parents=True)
    md.sweeps.mkdir(parents=True)
    ra = np.array([10.1, 10.2, 10.3, 10.4, 10.5, 10.6, 10.7, 10.8])
    dec = np.array([-1.1, -1.2, -1.3, -1.4, -1.5, -1.6, -1.7, -1.8])
    kinds = ["lens", "host", "lens", "lens", "artefact", "lens", "lens", "lens"]
    ids = [f"b{i % 2}_{i}" for i in range(8)]
    truth = pd.DataFrame({
        "id": ids, "kind": kinds, "ra": ra, "dec": dec,
        "tier": ["A", None, "B", None, None, "C", "A", "B"],
        "theta_e": [1.0, 0.0, 1.5, 2.0, 0.0, 2.5, 0.8, 1.2], "arc_mag_r": [21.0, np.nan, 22.0, 23.0, np.nan, 21.5, 20.5, 22.5],
        "arc_mag_g": [21.8, np.nan, 22.4, 23.9, np.nan, 21.6, 21.5, 22.6], "arc_snr": [30.0, 0, 12.0, 5.0, 0, 40.0, 55.0, 9.0],
        "src_x": [0.3, 0, -0.6, 0.0, 0, 1.5, 0.24, -0.3], "src_y": [0.4, 0, 0.8, -1.0, 0, 2.0, 0.0, 0.4],
        "rmag": [18.0, 19.0, 18.5, 19.5, 20.0, 17.5, 18.2, 19.1]})
    truth.to_parquet(md.truth)
    rows = []
    for b in (0, 1):
        keep = [i for i in range(8) if i % 2 == b and i != 5]           # L5 (id b1_5) is not in the sweeps
        arr = synthetic_sweep_rows(len(keep) + 2, (10.0, 11.0, -2.0, -1.0), seed=b, objid_start=100)
        arr["BRICKNAME"][: len(keep)] = f"b{b}".encode()
        arr["OBJID"][: len(keep)] = keep
        arr["PSFSIZE_R"][: len(keep)] = [1.0 + 0.1 * i for i in keep]
        arr["PSFDEPTH_R"][: len(keep)] = [400.0 * (i + 1) for i in keep]
        write_sweep_fits(arr, md.sweeps / f"sweep-{b}.fits", (10.0, 11.0, -2.0, -1.0))
        rows.append(arr)
    return truth[truth["kind"] == "lens"].reset_index(drop=True)


def test_mock_true_lenses_reads_the_truth_the_sweeps_and_the_split_rule(tmp_path, caplog):
    from lensaudit.artifacts.identity import SplitRule
    from lensaudit.selection.closure import mock_true_lenses

    lenses = _hand_built_mock_survey(tmp_path / "survey")
    rule = SplitRule(nside=1024, seed=1, fractions=(("train", 0.4), ("val", 0.3), ("test", 0.3)))
    split = rule.split_of(lenses["ra"].to_numpy(), lenses["dec"].to_numpy())
    assert set(split) == {"train", "val", "test"}    # the hand-built positions span several splits
    for splits in (("val", "test"), ("train",), ("train", "val", "test")):
        with caplog.at_level("WARNING"):
            caplog.clear()
            t = mock_true_lenses(tmp_path / "survey", rule, splits) if splits != ("val", "test") \
                else mock_true_lenses(tmp_path / "survey", rule)     # the default: the splits outside training
        sel = lenses[np.isin(split, splits)]
        want = sel[sel["id"] != "b1_5"]
        assert t["id"].tolist() == want["id"].tolist()
        assert t["split"].tolist() == list(split[want.index])
        i = np.array([int(s.split("_")[1]) for s in want["id"]])
        np.testing.assert_allclose(t["psfsize_r"], 1.0 + 0.1 * i, rtol=1e-6)
        np.testing.assert_allclose(t["depth_r"], 22.5 - 2.5 * np.log10(5.0 / np.sqrt(400.0 * (i + 1))), rtol=1e-12)
        np.testing.assert_allclose(t["beta_frac"], np.hypot(want["src_x"], want["src_y"]) / want["theta_e"])
        np.testing.assert_allclose(t["arc_g_r"], want["arc_mag_g"] - want["arc_mag_r"])
        for a, b in (("theta_e", "theta_e"), ("arc_mag_r", "arc_mag_r"), ("arc_mag_g", "arc_mag_g"),
                     ("arc_snr", "arc_snr"), ("host_mag_r", "rmag"), ("ra", "ra"), ("dec", "dec")):
            np.testing.assert_array_equal(t[a].to_numpy(), want[b].to_numpy(), err_msg=a)
        assert t["tier"].tolist() == want["tier"].fillna("").tolist()
        assert t.index.tolist() == list(range(len(t)))
        assert t.columns.tolist() == ["id", "ra", "dec", "split", "tier", "theta_e", "arc_mag_r", "arc_mag_g", "arc_snr",
                                      "psfsize_r", "depth_r", "beta_frac", "arc_g_r", "host_mag_r"]
        missing = int((np.isin(split, splits) & (lenses["id"] == "b1_5").to_numpy()).sum())
        assert t.attrs == {"n_true_lenses": 6, "n_in_splits": int(np.isin(split, splits).sum()),
                           "excluded": {"not in the sweeps": missing}}
        assert ("not in the mock's sweeps" in caplog.text) == bool(missing)
    from lensaudit.artifacts import MockSurveyDir
    from lensaudit.artifacts.tables import ArtifactError

    MockSurveyDir(tmp_path / "survey").truth.unlink()
    with pytest.raises(ArtifactError, match="^truth table .*truth.parquet: file not found"):
        mock_true_lenses(tmp_path / "survey", rule)


def test_score_mock_true_lenses_fetches_what_is_missing_scores_and_counts_exclusions(tmp_path, monkeypatch):
    """The fetch and the scorer are stand-ins (the loopback service and a CNN are tested elsewhere): the fetch
    cannot deliver lens b0_2; the scorer's logit is a known function of the id. A second call fetches nothing."""
    import lensaudit.cutouts.mockfetch as mockfetch
    import lensaudit.scoring as score
    from lensaudit.artifacts import TrueLensesDir, read_artifact_meta, read_artifact_table
    from lensaudit.artifacts.kinds import TRUE_LENSES
    from lensaudit.artifacts.manifest import MANIFEST_META_KEY
    from lensaudit.artifacts.tables import write_table
    from lensaudit.cutouts import CutoutStore
    from lensaudit.selection.closure import score_mock_true_lenses

    _hand_built_mock_survey(tmp_path / "survey")
    write_table(pd.DataFrame({"id": ["x"]}), tmp_path / "manifest.parquet", MANIFEST_META_KEY,
                {"nside": 1024, "split_seed": 1, "split_order": ["train", "val", "test"],
                 "fractions": {"train": 0.4, "val": 0.3, "test": 0.3}})
    fetched, scored = [], []

    def fetch(m, store, survey_dir):
        assert str(survey_dir) == str(tmp_path / "survey")
        fetched.append(m["id"].tolist())
        with store.writer() as w:
            for r in m.itertuples():
                if r.id != "b0_2":
                    w.add(r.id, np.zeros((3, 101, 101), np.float32), r.ra, r.dec)

    def scorer(checkpoint, manifest, store, on_missing="error"):
        assert checkpoint == "ck.pt" and on_missing == "skip"
        scored.append(manifest["id"].tolist())
        have = set(store.ids().astype(str))
        ids = [i for i in manifest["id"] if i in have]
        lg = np.array([float(i.split("_")[1]) - 3.0 for i in ids])
        return pd.DataFrame({"id": ids, "logit": lg, "probability": 1 / (1 + np.exp(-lg)), "other": 0})

    monkeypatch.setattr(mockfetch, "fetch_from_mock", fetch)
    monkeypatch.setattr(score, "score_manifest", scorer)
    out = tmp_path / "true"
    t = score_mock_true_lenses(tmp_path / "survey", tmp_path / "manifest.parquet", "ck.pt", out)
    # seed 1 at nside 1024: lenses b0_0 val, b0_2 train, b1_3 test, b1_5 val (not in sweeps), b0_6 train, b1_7 val
    assert fetched == [["b0_0", "b1_3", "b1_7"]] and scored == [["b0_0", "b1_3", "b1_7"]]
    assert t["id"].tolist() == ["b0_0", "b1_3", "b1_7"]
    np.testing.assert_allclose(t["logit"], [-3.0, 0.0, 4.0])
    np.testing.assert_allclose(t["probability"], 1 / (1 + np.exp(-np.array([-3.0, 0.0, 4.0]))))
    assert "other" not in t
    attrs = {"n_true_lenses": 6, "n_in_splits": 4, "excluded": {"not in the sweeps": 1, "no cutout": 0}}
    assert t.attrs == attrs
    td = TrueLensesDir(out)
    disk = read_artifact_table(td.table, TRUE_LENSES)
    pd.testing.assert_frame_equal(disk, pd.DataFrame(t).reset_index(drop=True))
    assert read_artifact_meta(td.table, TRUE_LENSES) == {"splits": ["val", "test"], **attrs}
    assert sorted(CutoutStore(td.store).ids().astype(str)) == ["b0_0", "b1_3", "b1_7"]

    # the training split too: b0_2 cannot be fetched (an exclusion), b0_6 is new, the rest are already stored
    t2 = score_mock_true_lenses(tmp_path / "survey", tmp_path / "manifest.parquet", "ck.pt", out,
                                splits=("train", "val", "test"))
    assert fetched[1] == ["b0_2", "b0_6"]
    assert t2["id"].tolist() == ["b0_0", "b1_3", "b0_6", "b1_7"]
    assert t2.attrs["excluded"] == {"not in the sweeps": 1, "no cutout": 1}
    assert read_artifact_meta(td.table, TRUE_LENSES)["splits"] == ["train", "val", "test"]
    # a manifest whose metadata holds no split rule is refused, naming the manifest
    from lensaudit.artifacts.tables import ArtifactError

    write_table(pd.DataFrame({"id": ["x"]}), tmp_path / "norule.parquet", MANIFEST_META_KEY, {"seed": 1})
    with pytest.raises(ArtifactError, match=r"^manifest .*norule\.parquet: its metadata has no split rule"):
        score_mock_true_lenses(tmp_path / "survey", tmp_path / "norule.parquet", "ck.pt", tmp_path / "t2")
    # nothing left to fetch: the store is reused
    score_mock_true_lenses(tmp_path / "survey", tmp_path / "manifest.parquet", "ck.pt", out, splits=("val", "test"))
    assert len(fetched) == 2


def test_closure_figure_plots_each_familys_prediction_and_the_truth_at_the_headline_threshold(tmp_path, monkeypatch):
    import lensaudit.selection.figures  # noqa: F401  (imported before the patch: it binds save_figure on import)
    import lensaudit.utils.display as display
    from lensaudit.selection.closure import closure_figure
    from lensaudit.selection.figures import LABELS

    rows = []
    for th, shift in (("p>=0.5", 0.0), ("other", 0.3)):
        for q, cen in (("theta_e", [0.75, 1.25, 1.75]), ("arc_mag", [20.0, 22.0]), ("psf_fwhm", [1.0]),
                       ("depth", [23.0, 24.0])):
            for fam, off in (("f1", 0.0), ("f2", 0.05)):
                for j, c in enumerate(cen):
                    t_off = 0.0 if fam == "f1" else 0.02        # the truth is read from the first family's rows
                    rows.append({"threshold": th, "quantity": q, "family": fam, f"{q}_centre": c,
                                 "c_inj": 0.1 * j + off + shift, "se": 0.01, "c_true": 0.2 + 0.1 * j + shift + t_off,
                                 "true_lo68": 0.15 + 0.1 * j + shift + t_off, "true_hi68": 0.3 + 0.1 * j + shift + t_off})
    per_bin = pd.DataFrame(rows)
    figs = []
    monkeypatch.setattr(display, "save_figure", lambda fig, path: figs.append(fig) or str(path))
    assert closure_figure(per_bin, tmp_path / "c.png", "p>=0.5") == str(tmp_path / "c.png")
    axes = figs[0].axes
    assert len(axes) == 4
    for ax, (_q, cen) in zip(axes, (("theta_e", [0.75, 1.25, 1.75]), ("arc_mag", [20.0, 22.0]), ("psf_fwhm", [1.0]),
                                    ("depth", [23.0, 24.0])), strict=True):
        step = float(np.min(np.diff(cen))) if len(cen) > 1 else 1.0
        f1, f2, true = (c.lines[0] for c in ax.containers)
        np.testing.assert_allclose(f1.get_xdata(), np.array(cen) + 0.04 * step)
        np.testing.assert_allclose(f2.get_xdata(), np.array(cen) + 0.08 * step)
        np.testing.assert_allclose(f1.get_ydata(), 0.1 * np.arange(len(cen)))
        np.testing.assert_allclose(f2.get_ydata(), 0.1 * np.arange(len(cen)) + 0.05)
        np.testing.assert_allclose(true.get_xdata(), cen)
        np.testing.assert_allclose(true.get_ydata(), 0.2 + 0.1 * np.arange(len(cen)))
        assert ax.get_ylim() == (0.0, 1.0) and ax.get_xlabel() == LABELS[_q]
        # error bars: each family's bootstrap sd either side; the truth's 68 percent Jeffreys limits
        c1, c2, ct = ax.containers
        for c, off in ((c1, 0.0), (c2, 0.05)):
            seg = np.array(c.lines[2][0].get_segments())
            np.testing.assert_allclose(seg[:, :, 1], np.c_[0.1 * np.arange(len(cen)) + off - 0.01,
                                                             0.1 * np.arange(len(cen)) + off + 0.01])
            assert f1.get_marker() == "o" and f1.get_linestyle() == "-"
        seg = np.array(ct.lines[2][0].get_segments())
        np.testing.assert_allclose(seg[:, :, 1], np.c_[0.15 + 0.1 * np.arange(len(cen)), 0.3 + 0.1 * np.arange(len(cen))])
        assert true.get_marker() == "s" and true.get_linestyle() == "None" and true.get_color() == "k"
    assert figs[0]._suptitle.get_text().startswith("Closure: true completeness of the mock's lenses (black)")
    assert figs[0]._suptitle.get_text().endswith("(error bars: bootstrap sd)")
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["f1", "f2", "true (mock lenses)"]
    assert axes[0].get_ylabel() == "completeness (p>=0.5)"


def test_probe_auc_against_scikit_learn_cross_validation_permutations_and_bootstrap():
    """Every number of probe_auc rebuilt from scikit-learn (folds, pipeline, roc_auc_score) and numpy: the AUC,
    the permutation p-value (1 + #{null >= AUC}) / (1 + n), the null's mean, sd and 95th percentile, the 80 percent
    power MDE (null q95 + 0.84 bootstrap sd), the counts and folds; cv_auc is the same AUC."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from lensaudit.evaluate.bootstrap import bootstrap_auc, percentile_interval
    from lensaudit.realism.probe import cv_auc, probe_auc
    from lensaudit.utils.seeds import derive_seed, rng

    g = np.random.default_rng(4)
    real, inj = g.normal(0.4, 1, (14, 3)), g.normal(0, 1, (25, 3))
    x, y = np.vstack([real, inj]), np.r_[np.ones(14, int), np.zeros(25, int)]

    def oof(labels, seed, k=3, c=0.5):
        out = np.zeros(len(labels))
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=derive_seed(seed, "realism.folds") % 2**32)
        for tr, te in skf.split(x, labels):
            # scikit-learn solved to its optimum (its default lbfgs stops at tol 1e-4, which can swap near-tied ranks)
            lr = LogisticRegression(C=c, solver="newton-cholesky", tol=1e-12, max_iter=1000)
            out[te] = make_pipeline(StandardScaler(), lr).fit(x[tr], labels[tr]).decision_function(x[te])
        return out

    r = probe_auc(real, inj, folds=3, c=0.5, n_boot=60, n_permutations=9, seed=5)
    s = oof(y, 5)
    auc = roc_auc_score(y, s)
    perm = []
    gen = rng(5, "realism.permutation")
    for i in range(9):
        yp = gen.permutation(y)
        perm.append(roc_auc_score(yp, oof(yp, 5 + i + 1)))
    perm = np.array(perm)
    boot = bootstrap_auc(y, s, n_boot=60, seed=derive_seed(5, "realism.boot") % 2**32)
    assert r["auc"] == pytest.approx(auc, abs=1e-12)
    np.testing.assert_allclose(r["null_values"], perm, atol=1e-12)
    assert r["permutation_p"] == (1 + int((perm >= auc).sum())) / 10
    assert r["null"] == pytest.approx({"mean": perm.mean(), "sd": perm.std(), "q95": np.quantile(perm, 0.95)})
    assert r["auc_mde80"] == pytest.approx(np.quantile(perm, 0.95) + 0.84 * np.std(boot))
    assert r["interval"] == percentile_interval(boot)
    assert (r["n_real"], r["n_injected"], r["folds"], r["n_permutations"]) == (14, 25, 3, 9)
    assert cv_auc(real, inj, folds=3, c=0.5, seed=5) == pytest.approx(auc, abs=1e-12)
    # the refits shared out over processes: the same null, value for value, in the same order
    par = probe_auc(real, inj, folds=3, c=0.5, n_boot=60, n_permutations=9, seed=5, n_jobs=2)
    assert par["null_values"].tolist() == r["null_values"].tolist() and par["permutation_p"] == r["permutation_p"]
    from lensaudit.realism import ProbeConfig

    assert ProbeConfig().n_jobs == 1 and ProbeConfig(n_jobs=-1).n_jobs == -1 and ProbeConfig(n_jobs=1).n_jobs == 1
    for bad in (0, -2):
        with pytest.raises(ValueError, match="every core"):
            ProbeConfig(n_jobs=bad)
    # defaults: 5 folds, C = 1, seed 0
    assert cv_auc(real, inj) == pytest.approx(roc_auc_score(y, oof(y, 0, 5, 1.0)), abs=1e-12)
    # folds are capped by the smaller class; no permutations: the null is undefined, not an error
    few = probe_auc(real[:3], inj, folds=5, n_boot=20, n_permutations=0)
    assert few["folds"] == 3 and np.isnan(few["permutation_p"]) and np.isnan(few["null"]["q95"])
    assert np.isnan(few["auc_mde80"]) and np.isnan(few["null"]["mean"]) and np.isnan(few["null"]["sd"])
    for bad_r, bad_i, msg in ((real[:, :2], inj, "same d"), (real[0], inj, "must be"), (real[:1], inj, "at least 2"),
                              (real, inj[:1], "at least 2")):
        with pytest.raises(ValueError, match=msg):
            probe_auc(bad_r, bad_i, n_permutations=0)


def test_frechet_distance_of_diagonal_covariances_is_the_closed_form():
    """Features on a 2x2 factorial design have exactly diagonal sample covariances, for which the Frechet distance
    is |mu_a - mu_b|^2 + sum_i (sd_a,i - sd_b,i)^2."""
    from lensaudit.realism.probe import frechet_distance

    design = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], float)
    a = design * [0.5, 2.0] + [1.0, -1.0]
    b = np.vstack([design, design]) * [1.5, 0.25] + [0.0, 2.0]
    va, vb = np.diag(np.cov(a, rowvar=False)), np.diag(np.cov(b, rowvar=False))
    want = (1.0 - 0.0) ** 2 + (-1.0 - 2.0) ** 2 + np.sum((np.sqrt(va) - np.sqrt(vb)) ** 2)
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    one = frechet_distance(a[:, :1], b[:, :1])                        # one feature: (mu diff)^2 + (sd diff)^2
    assert one == pytest.approx(1.0 + (np.sqrt(va[0]) - np.sqrt(vb[0])) ** 2, rel=1e-9)


def test_probe_edge_cases_ties_defaults_and_error_names():
    """A null AUC equal to the observed one counts against the injections (p uses >=); folds are capped by the
    smaller class whichever it is; without bootstrap replicates the power MDE is undefined, not an error; the
    functions' defaults are the gate's configuration defaults; errors name the function; rank-deficient feature
    sets (more features than rows, where scipy's sqrtm turns complex) still give a real Frechet distance."""
    import inspect

    from lensaudit.realism.gate import ProbeConfig, RealismConfig
    from lensaudit.realism.probe import cv_auc, frechet_distance, probe_auc

    real, inj = np.array([[0.0], [0.1]]), np.array([[1.0], [1.1]])      # separable: many nulls tie at AUC 1
    r = probe_auc(real, inj, folds=2, n_boot=10, n_permutations=40, seed=3)
    ties = int((r["null_values"] == r["auc"]).sum())
    assert r["auc"] == 1.0 and ties > 0
    assert r["permutation_p"] == (1 + int((r["null_values"] >= r["auc"]).sum())) / 41
    g = np.random.default_rng(0)
    few_inj = probe_auc(g.normal(0, 1, (12, 2)), g.normal(0, 1, (3, 2)), folds=5, n_boot=0, n_permutations=2)
    assert few_inj["folds"] == 3 and np.isnan(few_inj["auc_mde80"])
    pc, rc = ProbeConfig(), RealismConfig(selection_run="s", predictions="p", manifest="m", store="x", out="o")
    d = {k: v.default for k, v in inspect.signature(probe_auc).parameters.items()}
    assert (d["folds"], d["c"], d["n_boot"], d["n_permutations"], d["seed"]) == (pc.folds, pc.C, pc.n_boot,
                                                                                 pc.n_permutations, pc.seed)
    m = {k: v.default for k, v in inspect.signature(brightness_match).parameters.items()}
    assert (m["bin_width"], m["max_ratio"], m["seed"]) == (rc.match_bin_mag, rc.match_max_ratio, pc.seed)
    # called with its defaults, each function does what the gate's configuration asks for
    xr, xi = g.normal(0.3, 1, (14, 6)), g.normal(0, 1, (16, 6))
    dflt, conf = probe_auc(xr, xi), probe_auc(xr, xi, pc.folds, pc.C, pc.n_boot, pc.n_permutations, pc.seed)
    np.testing.assert_array_equal(dflt["null_values"], conf["null_values"])
    assert dflt["interval"] == conf["interval"] and dflt["auc"] == conf["auc"] and dflt["folds"] == pc.folds
    mr, mi = g.uniform(20, 23, 30), g.uniform(20, 23, 400)
    for a, b in zip(brightness_match(mr, mi), brightness_match(mr, mi, rc.match_bin_mag, rc.match_max_ratio, pc.seed),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="^cv_auc: need"):
        cv_auc(real[:1], inj)
    with pytest.raises(ValueError, match="^probe_auc: need"):
        probe_auc(real[:1], inj)
    a, b = g.normal(0, 1, (3, 5)), g.normal(0.5, 1, (3, 5))
    fd = frechet_distance(a, b)
    assert isinstance(fd, float) and np.isfinite(fd)


def test_brightness_match_rules_by_hand():
    """The ratio is the smallest injections-per-real over bins with at least as many injections as lenses (a bin
    with fewer keeps as many lenses as it has injections), 1 when no bin has enough; rows are drawn without
    replacement; bins are aligned to multiples of the bin width; no usable bin gives empty integer index arrays;
    magnitudes that are all NaN are matched as one bin."""
    # bin A (20.0-20.5): 2 real, 2 inj (ratio 1); bin B (21.0-21.5): 1 real, 3 inj -> ratio 1
    kr, ki = brightness_match(np.array([20.1, 20.2, 21.1]), np.array([20.1, 20.3, 21.1, 21.2, 21.3]), 0.5, 3)
    assert kr.tolist() == [0, 1, 2] and len(ki) == 3 and set(ki[:2]) == {0, 1}
    # bin C: 3 real, 1 inj (left out of the ratio); bin D: 1 real, 3 inj -> ratio 3, C gives nothing
    kr, ki = brightness_match(np.array([20.1, 20.2, 20.3, 21.1]), np.array([20.1, 21.1, 21.2, 21.3]), 0.5, 3)
    assert kr.tolist() == [3] and ki.tolist() == [1, 2, 3]
    # no bin has as many injections as lenses: ratio 1, each bin keeps min(real, injected) of both
    kr, ki = brightness_match(np.array([20.1, 20.2, 20.3]), np.array([20.1, 20.2]), 0.5, 3)
    assert len(kr) == 2 and ki.tolist() == [0, 1]
    # without replacement: every kept row once
    g = np.random.default_rng(1)
    kr, ki = brightness_match(g.uniform(20, 21, 30), g.uniform(20, 21, 200), 0.5, 3, seed=2)
    assert len(set(kr)) == len(kr) == 30 and len(set(ki)) == len(ki) == 90
    # bins at multiples of 0.4 mag: 20.1 and 20.3 share [20.0, 20.4) -> 2 real, 8 inj, ratio 3 (a grid shifted by
    # half a bin would split them and give ratio 2)
    kr, ki = brightness_match(np.array([20.1, 20.3]), np.array([20.1] * 6 + [20.3] * 2), 0.4, 3)
    assert len(kr) == 2 and len(ki) == 6
    kr, ki = brightness_match(np.array([20.1]), np.array([25.0]), 0.5, 3)
    assert kr.shape == ki.shape == (0,) and kr.dtype.kind == ki.dtype.kind == "i"
    kr, ki = brightness_match(np.full(2, np.nan), np.full(4, np.nan), 0.5, 3)
    assert kr.tolist() == [0, 1] and len(ki) == 4


def test_fit_logistic_l2_is_scikit_learns_optimum_fit_by_fit_in_any_batch():
    """The probe's batched fits against scikit-learn's LogisticRegression (newton-cholesky, solved to tol 1e-12) on
    the same rows: coefficients and intercept within 1e-7 for well-posed, high-dimensional (d = 40 of n = 90) and
    nearly separable sets, within 1e-6 of the largest coefficient for separable ones under weak regularisation
    (C up to 1e4) and on a set where Newton's full step fails (the line search at work), with sample weights selecting each fit's rows (a weight-0 row changes nothing, whatever
    its label); a fit's numbers do not depend on the batch it is solved in; one class among a fit's rows is refused; the regularisation is C's (a larger C
    gives larger coefficients, as scikit-learn's); malformed shapes and non-finite features are refused by name."""
    from sklearn.linear_model import LogisticRegression

    from lensaudit.realism.probe import fit_logistic_l2

    g = np.random.default_rng(11)
    for n, d, sep, c in ((90, 4, 0.8, 1.0), (90, 40, 0.5, 1.0), (80, 3, 4.0, 2.0), (90, 4, 0.8, 0.05)):
        x = g.normal(size=(4, n, d))
        y = (g.random((4, n)) < 0.35).astype(float)
        x[..., :2] += sep * y[..., None]
        w = (g.random((4, n)) < 0.75).astype(float)
        y_noise = np.where(w > 0, y, 1 - y)                     # rows out of the fit carry flipped labels
        beta, b = fit_logistic_l2(x, y_noise, w, c)
        for f in range(4):
            m = w[f] > 0
            sk = LogisticRegression(C=c, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(x[f][m], y[f][m])
            np.testing.assert_allclose(beta[f], sk.coef_[0], atol=1e-7, err_msg=f"n={n} d={d} C={c} fit {f}")
            assert b[f] == pytest.approx(sk.intercept_[0], abs=1e-7)
        one, one_b = fit_logistic_l2(x[2:3], y_noise[2:3], w[2:3], c)
        assert np.array_equal(one[0], beta[2]) and one_b[0] == b[2]
    # separable classes under weak regularisation: a long damped phase (the line search at work), then the
    # gradient's rounding floor, where the fit stops instead of running out of steps
    x = g.normal(size=(3, 60, 2))
    y = (g.random((3, 60)) < 0.5).astype(float)
    x[..., 0] += 5 * (2 * y - 1)
    for c in (1e2, 1e4):
        beta, b = fit_logistic_l2(x, y, np.ones_like(y), c)
        for f in range(3):
            sk = LogisticRegression(C=c, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(x[f], y[f])
            scale = np.abs(sk.coef_[0]).max()
            np.testing.assert_allclose(np.r_[beta[f], b[f]], np.r_[sk.coef_[0], sk.intercept_[0]], rtol=0,
                                       atol=1e-6 * scale, err_msg=f"C={c} fit {f}")
    # a set where Newton's full step fails (a singular Hessian after an overshoot): the line search keeps it on course
    x = np.array([[[232.6438, 60.9579], [36.5985, -109.3772], [-26.0732, -22.4843], [3663.2698, -111.9133]]])
    y = np.array([[0.0, 1.0, 0.0, 1.0]])
    beta, b = fit_logistic_l2(x, y, np.ones_like(y), 635.0)
    sk = LogisticRegression(C=635.0, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(x[0], y[0])
    np.testing.assert_allclose(np.r_[beta[0], b[0]], np.r_[sk.coef_[0], sk.intercept_[0]], rtol=1e-5)
    x = g.normal(size=(1, 60, 3))
    y = (x[..., 0] + 0.5 * g.normal(size=(1, 60)) > 0).astype(float)
    small, _ = fit_logistic_l2(x, y, np.ones_like(y), 0.1)
    large, _ = fit_logistic_l2(x, y, np.ones_like(y), 10.0)
    assert 0 < small[0, 0] < large[0, 0]
    with pytest.raises(ValueError, match="^fit_logistic_l2: need x"):
        fit_logistic_l2(x[0], y, y, 1.0)
    with pytest.raises(ValueError, match="^fit_logistic_l2: need x"):
        fit_logistic_l2(x, y[:, :5], y[:, :5], 1.0)
    one_class = np.ones_like(y)
    with pytest.raises(ValueError, match="^fit_logistic_l2: every fit needs both labels"):
        fit_logistic_l2(x, one_class, np.ones_like(y), 1.0)
    with pytest.raises(ValueError, match="both labels"):                # the zeros carry no weight
        fit_logistic_l2(x, y, y.copy(), 1.0)
    with pytest.raises(ValueError, match="both labels"):                # the ones carry no weight
        fit_logistic_l2(x, y, 1 - y, 1.0)
    for w2 in (1 - y, y):                                               # the second fit of two has one class
        with pytest.raises(ValueError, match="both labels"):
            fit_logistic_l2(np.concatenate([x, x]), np.concatenate([y, y]), np.concatenate([np.ones_like(y), w2]), 1.0)
    bad = x.copy()
    bad[0, 3, 1] = np.nan
    with pytest.raises(ValueError, match="^fit_logistic_l2: features, labels and weights must be finite"):
        fit_logistic_l2(bad, y, np.ones_like(y), 1.0)
    with pytest.raises(ValueError, match="must be finite"):
        fit_logistic_l2(x, y * np.nan, np.ones_like(y), 1.0)
    with pytest.raises(ValueError, match="must be finite"):
        fit_logistic_l2(x, y, np.full_like(y, np.inf), 1.0)
    with pytest.raises(FloatingPointError, match="did not converge in 1 Newton steps"):
        fit_logistic_l2(x, y, np.ones_like(y), 1.0, max_iter=1)


def test_probe_standardises_each_training_fold_as_scikit_learns_standard_scaler():
    """The probe scales every feature by the mean and population sd of the training rows (scikit-learn's
    StandardScaler, within 1e-12), applied to all rows; a constant feature (zero, or any value) and a feature
    constant up to rounding (a few ulps around 1e8: variance below (n mean eps)^2, scikit-learn's bound) keep scale
    1 instead of dividing by a rounding-size sd, while a narrow but real spread (sd 3e-7 around 1e3) is scaled."""
    from sklearn.preprocessing import StandardScaler

    from lensaudit.realism.probe import _standardise

    g = np.random.default_rng(21)
    n = 40
    ulp8 = np.spacing(1e8)
    x = np.c_[g.normal(3, 2, n), g.normal(-1, 0.1, n), np.full(n, 5.0), np.zeros(n),
              1e8 + ulp8 * g.integers(-3, 4, n), 1e3 + 3e-7 * g.normal(size=n)]
    rows = np.arange(0, n, 2)
    out = _standardise(x, rows)
    want = StandardScaler().fit(x[rows]).transform(x)
    np.testing.assert_allclose(out[:, :4], want[:, :4], rtol=1e-12, atol=1e-12)
    assert np.all(out[:, 2:4] == 0.0)                              # constants: scale 1, x minus its mean
    np.testing.assert_allclose(out[:, 4], x[:, 4] - x[rows, 4].mean(), rtol=1e-6, atol=1e-15)   # scale 1, not 1e-8
    assert np.std(out[rows, 5]) == pytest.approx(1.0, rel=1e-6)    # a real spread is standardised
    np.testing.assert_allclose(out[:, 5], want[:, 5], rtol=1e-6, atol=1e-6)


def test_the_probes_fits_are_batched_within_a_memory_budget_with_the_same_numbers(monkeypatch):
    """Wide features solve fewer fits at a time: with a budget of three fits' arrays each batch holds three, with
    one byte one (never none); the null distribution and the observed AUC are the same value for value."""
    import lensaudit.realism.probe as probe

    g = np.random.default_rng(8)
    real, inj = g.normal(0.5, 1, (12, 4)), g.normal(0, 1, (24, 4))
    ref = probe.probe_auc(real, inj, folds=3, n_boot=10, n_permutations=5, seed=4)
    sizes = []
    real_fit = probe.fit_logistic_l2

    def recording(x, *a, **kw):
        sizes.append(len(x))
        return real_fit(x, *a, **kw)

    monkeypatch.setattr(probe, "fit_logistic_l2", recording)
    for budget, most in ((3 * 8 * 36 * 5, 3), (1, 1)):
        monkeypatch.setattr(probe, "FIT_BATCH_BYTES", budget)
        sizes.clear()
        got = probe.probe_auc(real, inj, folds=3, n_boot=10, n_permutations=5, seed=4)
        assert max(sizes) == most and sum(sizes) == 3 * (1 + 5)
        assert got["auc"] == ref["auc"] and got["null_values"].tolist() == ref["null_values"].tolist()
