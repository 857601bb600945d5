"""Behaviour stated as properties and exact equalities: preprocessing (crop, batch, invariance),
intervals (contain their estimate, shrink with n), the block bootstrap against brute-force block
resampling, photometric conversions, the store's CRC on batch reads, QA thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import roc_auc_score

from lensaudit.cutouts.qa import QAConfig, assess
from lensaudit.cutouts.store import CutoutStore, StoreCorruptError
from lensaudit.data.preprocess import PreprocessConfig, _median_last, annulus_mask, raw_robust
from lensaudit.evaluate.bootstrap import (
    bootstrap_auc_blocks,
    bootstrap_precision,
    bootstrap_proportion,
    bootstrap_ratio_blocks,
    percentile_interval,
)
from lensaudit.evaluate.metrics import wilson_interval
from lensaudit.survey.photometry import (
    depth_to_flux5,
    depth_to_mag5,
    ellipticity_modulus,
    flux_to_mag,
    mag5_to_depth,
    mag_to_flux,
    mw_transmission,
    shape_to_axis_ratio,
)

RNG = np.random.default_rng(11)
CUBE = RNG.normal(0.01, 0.003, (3, 101, 101)).astype(np.float32)
CUBE[:, 45:56, 45:56] += 0.2


# ----------------------------------------------------------------------------- preprocessing
@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 40)),
              elements=st.floats(-1e6, 1e6, width=32) | st.sampled_from([0.0, 1.0, -1.0])))
def test_median_helper_is_numpys_median_bit_for_bit(v):
    """The preprocessing median (partition, no NaN scan) equals np.median for odd and even lengths and ties."""
    got, ref = _median_last(v), np.median(v, axis=-1, keepdims=True)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("crop", [48, 64, 101, 9])
def test_crop_equals_the_centre_slice_it_names(crop):
    full = raw_robust(CUBE, PreprocessConfig(r_in_pix=32.5, r_out_pix=45.0))
    got = raw_robust(CUBE, PreprocessConfig(r_in_pix=32.5, r_out_pix=45.0, crop=crop))
    lo = (101 - crop) // 2
    np.testing.assert_array_equal(got, full[:, lo : lo + crop, lo : lo + crop])
    assert got.shape == (3, crop, crop) and got.flags["C_CONTIGUOUS"]


def test_batch_equals_one_at_a_time_on_different_cutouts():
    other = RNG.normal(0.5, 0.05, (3, 101, 101)).astype(np.float32)
    batch = raw_robust(np.stack([CUBE, other]))
    np.testing.assert_array_equal(batch[0], raw_robust(CUBE))
    np.testing.assert_array_equal(batch[1], raw_robust(other))
    assert not np.array_equal(batch[0], batch[1])


def test_annulus_geometry_and_normalisation():
    m = annulus_mask(101, 20.0, 32.0)
    yy, xx = np.mgrid[0:101, 0:101] - 50.0
    r = np.hypot(xx, yy)
    np.testing.assert_array_equal(m, (r >= 20) & (r < 32))
    out = raw_robust(CUBE)
    ann = out[:, m]
    np.testing.assert_allclose(np.median(ann, axis=1), 0.0, atol=1e-5)            # median 0 in the annulus
    np.testing.assert_allclose(np.median(np.abs(ann), axis=1), 1.0, rtol=1e-4)     # unscaled MAD 1
    assert out.max() <= 10 and out.min() >= -10 and (out == 10).any()             # the bright core is clipped


@settings(max_examples=40, deadline=None)
@given(offsets=arrays(np.float64, 3, elements=st.floats(-0.2, 0.2)), scale=st.floats(0.2, 5))
def test_raw_robust_is_invariant_to_a_constant_per_band_and_to_scale(offsets, scale):
    # sky offsets of +-0.2 nanomaggies (tens of sigma): exact up to float32 rounding of the input
    base = raw_robust(CUBE.astype(np.float64))
    shifted = raw_robust(CUBE.astype(np.float64) * scale + offsets[:, None, None])
    np.testing.assert_allclose(shifted, base, atol=1e-3)


def test_nan_pixels_become_zero_before_and_after():
    c = CUBE.copy()
    c[0, :, :] = np.nan  # a whole band missing
    out = raw_robust(c)
    assert np.isfinite(out).all() and (out[0] == 0).all()
    c = CUBE.copy()
    c[2, 10, 10] = np.inf
    assert np.isfinite(raw_robust(c)).all()


# ----------------------------------------------------------------------------- intervals
@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 5000), frac=st.floats(0, 1))
def test_wilson_intervals_contain_their_estimate_and_shrink_with_n(n, frac):
    k = int(round(frac * n))
    lo, hi = wilson_interval(k, n)
    assert 0 <= lo <= k / n <= hi <= 1
    lo4, hi4 = wilson_interval(4 * k, 4 * n)
    assert hi4 - lo4 < hi - lo or (hi - lo) == 0


def test_wilson_matches_its_closed_form():
    from scipy.stats import norm

    k, n, z = 13, 57, norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(k, n) == pytest.approx((centre - half, centre + half), abs=1e-12)


def test_percentile_interval_levels():
    s = np.arange(1001, dtype=float)
    iv = percentile_interval(s)
    assert iv["ci95"] == pytest.approx([25.0, 975.0]) and iv["ci68"] == pytest.approx([160.0, 840.0])
    assert percentile_interval(np.array([np.nan, np.nan]))["ci95"] == [pytest.approx(np.nan, nan_ok=True)] * 2


def test_block_auc_bootstrap_equals_brute_force_resampling_of_pixel_blocks():
    """Same random draws, two ways: the weighted AUC of the group multiplicities, and scikit-learn on
    the explicitly concatenated resample. They must agree replicate by replicate."""
    rng = np.random.default_rng(3)
    n, groups = 300, rng.integers(0, 12, 300)
    y = (rng.random(n) < 0.3).astype(int)
    s = np.round(rng.normal(y * 0.8, 1), 1)
    got = bootstrap_auc_blocks(y, s, groups, n_boot=40, seed=9, chunk=40)
    g_uni, g_idx = np.unique(groups, return_inverse=True)
    draws = np.random.default_rng(9).integers(0, g_uni.size, size=(40, g_uni.size))
    for r in range(40):
        rows = np.concatenate([np.flatnonzero(g_idx == g) for g in draws[r]])
        yy, ss = y[rows], s[rows]
        want = roc_auc_score(yy, ss) if 0 < yy.sum() < len(yy) else np.nan
        assert got[r] == pytest.approx(want, abs=1e-12, nan_ok=True)


def test_block_ratio_bootstrap_equals_brute_force():
    rng = np.random.default_rng(4)
    k, n = rng.integers(0, 5, 20), rng.integers(5, 10, 20)
    got = bootstrap_ratio_blocks(k, n, n_boot=30, seed=2)
    w = np.random.default_rng(2).multinomial(20, np.full(20, 1 / 20), size=30)
    for r in range(30):
        picks = np.repeat(np.arange(20), w[r])
        assert got[r] == pytest.approx(k[picks].sum() / n[picks].sum(), abs=1e-12)


def test_proportion_and_precision_bootstraps_centre_on_the_estimate():
    b = bootstrap_proportion(30, 200, 20000, seed=1)
    assert b.mean() == pytest.approx(0.15, abs=0.002) and b.std() == pytest.approx(np.sqrt(0.15 * 0.85 / 200), rel=0.05)
    assert np.isnan(bootstrap_proportion(0, 0, 10, seed=1)).all()
    p = bootstrap_precision(40, 50, 10, 1000, 20000, seed=2)
    assert np.median(p) == pytest.approx(0.8, abs=0.01)


# ----------------------------------------------------------------------------- photometry
def test_photometric_conversions_round_trip_and_are_float64():
    f = np.array([1e-3, 1.0, 10.0, 1e4], dtype=np.float32)
    m = flux_to_mag(f)
    assert m.dtype == np.float64 and m[2] == pytest.approx(20.0, abs=1e-12) and m[1] == 22.5
    np.testing.assert_allclose(mag_to_flux(m), f.astype(np.float64), rtol=1e-6)
    assert mag_to_flux(np.array([20], dtype=np.int64)).dtype == np.float64 and mag_to_flux(20.0) == pytest.approx(10.0)
    bad = flux_to_mag(np.array([0.0, -1.0, np.nan]))
    assert bad.dtype == np.float64 and np.isnan(bad).all()
    # 5-sigma depth: flux 5/sqrt(ivar); 24.0 mag -> ivar (5 / 10^(-0.4 * 1.5))^2
    d = mag5_to_depth(np.array([24.0]))
    assert d[0] == pytest.approx((5 / 10 ** (-0.6)) ** 2, rel=1e-12)
    assert depth_to_mag5(d)[0] == pytest.approx(24.0, abs=1e-12)
    f5 = depth_to_flux5(np.array([100.0, 0.0, -4.0], dtype=np.float32))
    assert f5.dtype == np.float64 and f5[0] == pytest.approx(0.5) and np.isnan(f5[1:]).all()


def test_extinction_and_shapes():
    assert mw_transmission(0.1, "g") == pytest.approx(10 ** (-0.4 * 3.214 * 0.1))
    assert mw_transmission(np.array([0.0]), "z")[0] == 1.0
    with pytest.raises(ValueError, match="unknown band 'y'"):
        mw_transmission(0.1, "y")
    q, phi = shape_to_axis_ratio(np.array([0.2, 0.0, 0.0]), np.array([0.0, 0.5, 0.0]))
    np.testing.assert_allclose(q, [0.8 / 1.2, 0.5 / 1.5, 1.0])
    np.testing.assert_allclose(phi, [0.0, np.pi / 4, 0.0])
    q2, _ = shape_to_axis_ratio(np.array([2.0]), np.array([0.0]))  # |e| clipped below 1: q stays positive
    assert 0 < q2[0] < 0.001
    assert ellipticity_modulus(np.array([0.3], np.float32), np.array([0.4], np.float32))[0] == pytest.approx(0.5)
    assert ellipticity_modulus(np.array([0.3], np.float32), np.array([0.4], np.float32)).dtype == np.float64


# ----------------------------------------------------------------------------- store and QA
def test_a_corrupt_cutout_in_the_middle_of_a_batch_is_named(tmp_path):
    store = CutoutStore(tmp_path / "s", create=True)
    cubes = RNG.normal(0, 0.01, (6, 3, 101, 101)).astype(np.float32)
    with store.writer() as w:
        for i, c in enumerate(cubes):
            w.add(f"c{i}", c, 1.0 + i * 0.01, 0.0)
    import h5py

    shard = next((tmp_path / "s" / "shards").glob("*.h5"))
    with h5py.File(shard, "r") as h:
        off = h["images"].id.get_offset()
    with open(shard, "r+b") as fh:  # flip bytes inside cutout 3
        fh.seek(off + 3 * cubes[0].nbytes + 1000)
        fh.write(b"\x13\x37\x13\x37")
    s = CutoutStore(tmp_path / "s")
    np.testing.assert_array_equal(s.get(["c0", "c1", "c5"]), cubes[[0, 1, 5]])   # a batch without it reads
    with pytest.raises(StoreCorruptError, match=r"offset 3 \(cutout 'c3'\) failed its CRC-32"):
        s.get(["c1", "c2", "c3", "c4"])
    with pytest.raises(StoreCorruptError, match="'c3' at offset 3 failed its CRC-32"):
        s.verify()
    s.check_crc = False  # the switch really switches it off
    assert s.get(["c3"]).shape == (1, 3, 101, 101)


@pytest.mark.parametrize("where, n, ok, reason", [
    ("core", 1, False, "core_nan"), ("central", 50, True, ""), ("central", 51, False, "central_nan"),
    ("outer", 2020, True, ""), ("band", 0, False, "missing_band"),
])
def test_qa_thresholds(where, n, ok, reason):
    c = RNG.normal(0, 0.01, (3, 101, 101)).astype(np.float32)
    if where == "core":
        c[1, 50, 50] = np.nan
    elif where == "central":  # the central 50x50 (rows/columns 25-74) holds 2500 pixels: 50 NaN are 2 percent
        ys, xs = np.unravel_index(np.arange(n), (50, 2))
        c[0, 25 + ys, 25 + xs] = np.nan
    elif where == "outer":
        c[2, :20, :] = np.nan
    else:
        c[1] = 0.0
    got_ok, got_reason, qa = assess(c, QAConfig())
    assert got_ok == ok and got_reason.startswith(reason)
    if where == "outer":
        assert qa["nan_frac"] == pytest.approx(2020 / (3 * 101 * 101)) and qa["central_nan_frac"] == 0


def test_every_bootstrap_is_deterministic_per_seed_and_moves_with_it():
    from lensaudit.evaluate.bootstrap import bootstrap_ap, bootstrap_auc, bootstrap_recall_at_fpr

    rng = np.random.default_rng(12)
    y = (rng.random(800) < 0.2).astype(int)
    s = np.round(rng.normal(y * 1.2, 1), 2)
    g = rng.integers(0, 30, 800)
    for fn in (lambda sd: bootstrap_auc(y, s, 300, sd), lambda sd: bootstrap_ap(y, s, 300, sd),
               lambda sd: bootstrap_auc_blocks(y, s, g, 120, sd),
               lambda sd: bootstrap_recall_at_fpr(y, s, 0.05, 300, sd)[0],
               lambda sd: bootstrap_proportion(30, 200, 300, sd), lambda sd: bootstrap_ratio_blocks(g, g + 1, 300, sd),
               lambda sd: bootstrap_precision(10, 40, 5, 100, 300, sd)):
        a, b, c = fn(7), fn(7), fn(8)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


@pytest.mark.parametrize("fpr", [0.0, 0.001, 0.05, 0.3])
def test_recall_at_fpr_without_resampling_noise_equals_the_direct_computation(fpr):
    """With every score distinct and the replicate forced to the data (one cell per score, all
    counts fixed), the re-derived threshold and recall equal threshold_at_fpr's."""
    from lensaudit.evaluate.bootstrap import bootstrap_recall_at_fpr
    from lensaudit.evaluate.metrics import threshold_at_fpr

    rng = np.random.default_rng(3)
    y = np.r_[np.ones(200, int), np.zeros(2000, int)]
    s = rng.permutation(np.linspace(0, 1, 2200)) + y * 0.3
    rec, thr = bootstrap_recall_at_fpr(y, s, fpr, 4000, seed=1)
    t = threshold_at_fpr(s[y == 0], fpr)
    want = float((s[y == 1] >= t).mean())
    assert not np.isnan(rec).any()
    assert np.median(rec) == pytest.approx(want, abs=0.03)
    assert np.median(thr) == pytest.approx(np.nextafter(t, -np.inf) if fpr else t, abs=0.02)
    with pytest.raises(Exception, match="both classes"):
        bootstrap_recall_at_fpr(np.ones(5, int), np.arange(5.0), 0.1, 10)
    with pytest.raises(Exception, match="both classes"):
        bootstrap_recall_at_fpr(np.zeros(5, int), np.arange(5.0), 0.1, 10)
