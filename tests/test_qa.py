"""Cutout validation rules: NaN in the core and centre, all-zero (off-footprint) bands."""

from __future__ import annotations

import numpy as np

from lensaudit.cutouts.qa import QAConfig, assess


def _cube():
    return np.random.default_rng(1).normal(0, 0.01, (3, 101, 101)).astype(np.float32)


def test_clean_cutout_passes_and_reports_sky():
    ok, reason, qa = assess(_cube())
    assert ok and reason == ""
    assert 0.005 < qa["sky_mad_r"] < 0.009  # unscaled MAD of N(0, 0.01) is 0.00674
    assert qa["nan_frac"] == 0.0


def test_single_nan_in_core_rejects():
    c = _cube()
    c[1, 50, 50] = np.nan
    ok, reason, qa = assess(c)
    assert not ok and reason.startswith("core_nan") and qa["core_nan_count"] == 1


def test_central_nan_fraction_threshold():
    c = _cube()
    c[0, 25:27, 25:75] = np.nan  # 100 of 2500 central pixels = 4 % (outside the 16x16 core)
    ok, reason, _ = assess(c)
    assert not ok and reason.startswith("central_nan")
    c = _cube()
    c[0, 25, 25:75] = np.nan  # 50 / 2500 = 2 %: allowed (limit is "over 2 percent")
    assert assess(c)[0]


def test_all_zero_band_counts_as_missing():
    c = _cube()
    c[2] = 0.0
    ok, reason, qa = assess(c)
    assert not ok and reason.startswith("missing_band: z") and qa["has_z"] is False


def test_all_nan_band_and_wrong_shape():
    c = _cube()
    c[0] = np.nan
    assert assess(c)[1].startswith("missing_band: g")
    assert assess(np.zeros((3, 64, 65), np.float32))[1].startswith("wrong_shape")


def test_outer_nan_fraction_limit():
    c = _cube()
    c[:, :24, :] = np.nan  # 48 of 101 rows NaN, none in the central 50x50 (rows 25-74)
    c[:, 77:, :] = np.nan
    ok, reason, _ = assess(c, QAConfig(max_nan_frac=0.25))
    assert not ok and reason.startswith("nan_frac")
