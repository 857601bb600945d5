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
        s = closure_test(true, inj, grid, [OperatingPoint.fixed(0.5)], n_boot=150, seed=k)[1]
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
