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


def test_median_of_finite_is_numpys_median_bit_for_bit():
    """The sky statistics' median (one partition, then the largest value before the middle) equals np.median for
    odd and even sizes, ties, float32 and float64, tiny and large values; an empty array is refused."""
    import pytest

    from lensaudit.cutouts.qa import median_of_finite

    rng = np.random.default_rng(1)
    for n in [*range(1, 30), 7600, 8192, 8193]:
        for dt in (np.float32, np.float64):
            for v in (rng.normal(0, 0.01, n), rng.integers(-3, 3, n), rng.normal(size=n) * 1e-30, rng.normal(size=n) * 1e30):
                v = v.astype(dt)
                got, ref = median_of_finite(v), float(np.median(v))
                assert got == ref and type(got) is float, (n, dt)
    a = np.array([1.0, 2.0, 3.0, 10.0], np.float32)
    assert median_of_finite(a) == 2.5 and median_of_finite(a[:3]) == 2.0
    with pytest.raises(ValueError, match="no values"):
        median_of_finite(np.array([], np.float32))


def test_sky_statistics_equal_the_plain_nan_filtered_medians():
    """With and without NaN in a band, the recorded sky median and MAD are np.median's of its finite outer pixels."""
    from lensaudit.cutouts.qa import _outer_mask

    cube = _cube()
    cube[1, 2:6, 3] = np.nan
    cube[2, 90, 90] = np.nan
    ok, _, qa = assess(cube)
    assert ok
    for i, b in enumerate("grz"):
        sky = cube[i][_outer_mask(101)]
        sky = sky[np.isfinite(sky)]
        med = float(np.median(sky))
        assert qa[f"sky_median_{b}"] == med and qa[f"sky_mad_{b}"] == float(np.median(np.abs(sky - med)))
    assert qa["has_g"] and qa["nan_frac"] == 5 / cube.size
