"""Small pure functions stated exactly: reference vectors, dtypes, defaults, edges, silence.

Each assertion states a behaviour a caller relies on (float64 results whatever the input
dtype, no RuntimeWarning on empty coverage, the published splitmix64 vectors, inclusive bit
ranges, defaults meaning "round, unrotated, centred")."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lensaudit.catalog.spatial import (
    arcsec_of_chord,
    assign_split,
    chord_of_arcsec,
    healpix_nested,
    nearest_within,
    pixel_fraction,
    unit_vectors,
)
from lensaudit.data.preprocess import PreprocessConfig, raw_robust
from lensaudit.lensing.light import knots_profile, sersic
from lensaudit.lensing.mass import (
    convergence_deflection,
    epl_deflection,
    multipole_deflection,
    ray_trace,
    shear_deflection,
    sie_deflection,
)
from lensaudit.survey.geometry import angular_separation_arcsec, cutout_wcs, parse_sweep_filename
from lensaudit.survey.maskbits import MASKBITS, decode_maskbits, has_any_bits, maskbits_mask
from lensaudit.survey.photometry import (
    depth_to_flux5,
    depth_to_mag5,
    ellipticity_modulus,
    flux_to_mag,
    mag_to_flux,
    mw_transmission,
    shape_to_axis_ratio,
)
from lensaudit.utils.hashing import hash64, splitmix64
from lensaudit.utils.stats import MetricError, check_labels_scores, roc_auc_or_nan

X32 = np.array([0.3, -1.7, 2.9], dtype=np.float32)
Y32 = np.array([1.1, 0.4, -0.8], dtype=np.float32)


# ----------------------------------------------------------------------------- hashing
def test_splitmix64_matches_the_published_reference_sequence():
    # SplitMix64 (Steele, Lea & Flood 2014) from state 0: the state advances by the golden gamma before
    # each output, so splitmix64(k * gamma) is the (k+1)-th output of that sequence.
    gamma = 0x9E3779B97F4A7C15
    ref = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, 0xF88BB8A8724C81EC]
    got = splitmix64(np.array([(k * gamma) % 2**64 for k in range(4)], dtype=np.uint64))
    assert [int(v) for v in got] == ref
    assert splitmix64(np.array([0], dtype=np.int64)).dtype == np.uint64


def _py_hash64(*keys: int) -> int:
    mults = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)
    acc = 0
    for k, m in zip(keys, mults, strict=False):
        acc ^= ((k % 2**64) * m) % 2**64

    def mix(v: int) -> int:
        v = (v + 0x9E3779B97F4A7C15) % 2**64
        v = ((v ^ (v >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        v = ((v ^ (v >> 27)) * 0x94D049BB133111EB) % 2**64
        return v ^ (v >> 31)

    return mix(mix(acc))


@pytest.mark.parametrize("keys", [(0,), (1,), (10000, 7, 3, 42), (10002, 123456, -1, 2**31), (5, 6)])
def test_hash64_equals_an_independent_python_implementation(keys):
    assert int(hash64(*keys)) == _py_hash64(*keys)
    assert int(hash64(*[np.array([k]) for k in keys])[0]) == _py_hash64(*keys)  # arrays broadcast the same
    with pytest.raises(ValueError, match="1 to 4 keys"):
        hash64()
    with pytest.raises(ValueError, match="1 to 4 keys"):
        hash64(1, 2, 3, 4, 5)


def test_hashing_is_silent_about_wraparound():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        splitmix64(np.array([2**64 - 1], dtype=np.uint64))
        hash64(np.array([2**62]), np.array([2**62]), 2**40, 3)


# ----------------------------------------------------------------------------- photometry
def test_conversions_are_float64_and_silent_on_zero_negative_and_missing_coverage():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning for log(0), log(-1), 1/sqrt(0)
        m = flux_to_mag(np.array([0.0, -2.0, 1.0], dtype=np.float32))
        f5 = depth_to_flux5(np.array([0.0, -1.0, 0.5, 4.0], dtype=np.float32))
        d5 = depth_to_mag5(np.array([0.0]))
    assert m.dtype == np.float64 and np.isnan(m[:2]).all() and m[2] == 22.5
    assert f5.dtype == np.float64 and np.isnan(f5[:2]).all() and f5[2] == pytest.approx(5 / np.sqrt(0.5)) and f5[3] == 2.5
    assert np.isnan(d5[0])
    # float32 input is computed in float64 (not float32's 7 digits)
    assert mag_to_flux(np.float32(17.3)).dtype == np.float64
    assert mag_to_flux(np.array([17.3], dtype=np.float32))[0] == pytest.approx(10 ** (-0.4 * (float(np.float32(17.3)) - 22.5)), rel=1e-14)
    t = mw_transmission(np.array([0.05], dtype=np.float32), "r")
    assert t.dtype == np.float64 and t[0] == pytest.approx(10 ** (-0.4 * 2.165 * float(np.float32(0.05))), rel=1e-14)


def test_shape_helpers_in_float64():
    e1, e2 = X32 / np.float32(10), Y32 / np.float32(10)
    q, phi = shape_to_axis_ratio(e1, e2)
    assert q.dtype == np.float64 and phi.dtype == np.float64
    e = np.hypot(e1.astype(np.float64), e2.astype(np.float64))
    np.testing.assert_allclose(q, (1 - e) / (1 + e), rtol=1e-14)
    assert ellipticity_modulus(X32, Y32).dtype == np.float64
    np.testing.assert_allclose(ellipticity_modulus(X32, Y32), np.hypot(X32.astype(float), Y32.astype(float)), rtol=1e-15)
    q0, _ = shape_to_axis_ratio(np.array([0.0]), np.array([0.0]))
    assert q0[0] == 1.0


# ----------------------------------------------------------------------------- maskbits
def test_maskbits_mask_bit_range_names_and_decoding():
    assert maskbits_mask([0]) == 1 and maskbits_mask([16]) == 1 << 16
    assert maskbits_mask(["BRIGHT", "galaxy", 13]) == 2 | 4096 | 8192
    for bad in (-1, 17):
        with pytest.raises(ValueError, match="outside 0..16"):
            maskbits_mask([bad])
    with pytest.raises(ValueError, match="unknown MASKBITS name 'SHINY'"):
        maskbits_mask(["SHINY"])
    assert decode_maskbits(2 | 4096) == ["BRIGHT", "GALAXY"] and decode_maskbits(0) == []
    assert decode_maskbits(int(MASKBITS.SUB_BLOB)) == ["SUB_BLOB"]
    np.testing.assert_array_equal(has_any_bits(np.array([0, 1, 2, 4096 + 1]), [1, 12]), [False, False, True, True])


# ----------------------------------------------------------------------------- geometry
def test_sweep_names_parse_both_signs_and_wcs_takes_its_pixel_scale():
    assert parse_sweep_filename("a/b/sweep-150p005-155p010.fits") == (150.0, 155.0, 5.0, 10.0)
    assert parse_sweep_filename("sweep-150m010-155m005-pz.fits") == (150.0, 155.0, -10.0, -5.0)
    w = cutout_wcs(10.0, 0.0, 64, pixscale_arcsec=0.5)
    assert w.wcs.cd[1, 1] == pytest.approx(0.5 / 3600) and w.naxis == 2
    assert angular_separation_arcsec(X32, Y32, X32 + np.float32(1e-4), Y32).dtype == np.float64


# ----------------------------------------------------------------------------- spatial
def test_healpix_of_nothing_and_of_float32_and_pixel_fraction_of_float_pixels():
    empty = healpix_nested([], [], 128)
    assert empty.dtype == np.int64 and empty.shape == (0,)
    p32 = healpix_nested(np.array([150.0001], np.float32), np.array([2.0], np.float32), 2**14)
    p64 = healpix_nested(np.array([float(np.float32(150.0001))]), np.array([2.0]), 2**14)
    assert p32.dtype == np.int64 and p32[0] == p64[0]
    np.testing.assert_array_equal(pixel_fraction(np.array([3.0, 7.0]), 5), pixel_fraction(np.array([3, 7]), 5))
    grid = pixel_fraction(np.array([[1, 2], [3, 1]]), 9)
    assert grid.shape == (2, 2) and grid[0, 0] == grid[1, 1] and grid.dtype == np.float64
    assert pixel_fraction(np.array([], dtype=np.int64), 1).shape == (0,)


def test_a_pixel_exactly_on_a_cumulative_edge_goes_to_the_later_split(monkeypatch):
    import lensaudit.artifacts.identity as sp

    monkeypatch.setattr(sp, "pixel_fraction", lambda pixels, seed: np.array([0.0, 0.5, 0.75, 0.999999]))
    got = assign_split(np.arange(4), 1, [("train", 0.5), ("val", 0.25), ("test", 0.25)])
    assert got.tolist() == ["train", "val", "test", "test"] and got.dtype == object


def test_chords_and_arcsec_round_trip_exactly_and_clip_impossible_chords():
    for th in (0.5, 11.0, 3600.0, 180 * 3600.0):
        assert arcsec_of_chord(chord_of_arcsec(th)) == pytest.approx(th, rel=1e-12)
    assert chord_of_arcsec(3600.0) == pytest.approx(2 * np.sin(np.deg2rad(0.5)), rel=1e-15)
    assert arcsec_of_chord(np.array([2.5]))[0] == pytest.approx(180 * 3600.0)   # clipped: antipodes
    assert arcsec_of_chord(np.array([-1e-9]))[0] == 0.0
    v = unit_vectors(np.float32(90.0), np.float32(0.0))
    assert v.dtype == np.float64 and v[0] == pytest.approx([0.0, 1.0, 0.0], abs=1e-15)


def test_nearest_within_degenerate_inputs():
    from scipy.spatial import cKDTree

    tree = cKDTree(unit_vectors(np.array([10.0]), np.array([0.0])))
    idx, sep = nearest_within(tree, np.array([]), np.array([]), 5.0)
    assert idx.shape == (0, 2) and idx.dtype == np.int64 and sep.shape == (0, 2)
    idx, sep = nearest_within(tree, np.array([10.0, 10.0]), np.array([0.0, 1.0]), 0.0, k=3)
    assert idx.shape == (2, 3) and (idx == 1).all() and np.isinf(sep).all()           # radius 0: nothing
    idx, sep = nearest_within(tree, np.array([10.0]), np.array([0.5 / 3600]), 0.6)    # a sub-arcsec radius works
    assert idx[0, 0] == 0 and sep[0, 0] == pytest.approx(0.5, abs=1e-6) and idx[0, 1] == 1
    none = cKDTree(np.zeros((0, 3)))
    idx, sep = nearest_within(none, np.array([1.0]), np.array([1.0]), 5.0)
    assert (idx == 0).all() and np.isinf(sep).all()


# ----------------------------------------------------------------------------- preprocessing
def _cube():
    rng = np.random.default_rng(1)
    c = rng.normal(0.01, 0.003, (3, 101, 101))
    c[:, 50, 50] = 1.0
    return c


def test_non_finite_pixels_count_as_zero_sky():
    base = _cube()
    for bad in (np.nan, np.inf, -np.inf):
        c = base.copy()
        c[1, 48, 52] = bad
        zero = base.copy()
        zero[1, 48, 52] = 0.0
        np.testing.assert_array_equal(raw_robust(c), raw_robust(zero))


def test_output_is_float32_and_clipped_both_ways_even_with_a_flat_annulus():
    out = raw_robust(_cube())
    assert out.dtype == np.float32
    c = np.zeros((3, 101, 101))
    c[:, 50, 50], c[:, 10, 10] = 1.0, -1.0                   # flat annulus: MAD 0, so only eps normalises
    flat = raw_robust(c)
    assert flat[0, 50, 50] == 10.0 and flat[0, 10, 10] == -10.0 and flat[0, 30, 30] == 0.0


@pytest.mark.parametrize("shape", [(101, 101), (3, 101, 100), (3, 100, 101), (101,)])
def test_non_square_or_flat_input_is_refused(shape):
    with pytest.raises(ValueError, match="square stamps"):
        raw_robust(np.zeros(shape))


def test_presets():
    assert PreprocessConfig.preset("annulus101", crop=48) == PreprocessConfig(r_in_pix=32.5, r_out_pix=45.0, crop=48)
    assert PreprocessConfig.preset("paper") == PreprocessConfig()
    with pytest.raises(ValueError, match="unknown preprocessing preset 'bogus'"):
        PreprocessConfig.preset("bogus")
    assert PreprocessConfig(crop=48).output_size(101) == 48 and PreprocessConfig().output_size(101) == 101


# ----------------------------------------------------------------------------- lensing: dtypes and defaults
@pytest.mark.parametrize("fn", [
    lambda x, y: sie_deflection(x, y, 1.2, 0.7, 0.3, 0.1, -0.2), lambda x, y: sie_deflection(x, y, 1.2, 1.0, 0.0),
    lambda x, y: epl_deflection(x, y, 1.2, 1.8, 0.7, 0.3, 0.1, -0.2),
    lambda x, y: shear_deflection(x, y, 0.05, -0.02, 0.1, -0.2), lambda x, y: convergence_deflection(x, y, 0.1, 0.1, -0.2),
    lambda x, y: multipole_deflection(x, y, 4, 0.02, 0.3, 0.1, -0.2),
])
def test_deflections_are_float64_whatever_the_input(fn):
    a32 = fn(X32, Y32)
    a64 = fn(X32.astype(np.float64), Y32.astype(np.float64))
    for u, v in zip(a32, a64, strict=True):
        assert u.dtype == np.float64
        np.testing.assert_array_equal(u, v)


def test_defaults_mean_round_unrotated_centred_and_no_shear():
    x, y = X32.astype(float), Y32.astype(float)
    np.testing.assert_array_equal(sersic(x, y, 0.5, 1.5), sersic(x, y, 0.5, 1.5, 1.0, 0.0, 0.0))
    np.testing.assert_array_equal(multipole_deflection(x, y, 3, 0.02, 0.1), multipole_deflection(x, y, 3, 0.02, 0.1, 0.0, 0.0))
    np.testing.assert_array_equal(ray_trace(x, y, 1.0, 0.8, 0.2), ray_trace(x, y, 1.0, 0.8, 0.2, 0.0, 0.0))
    bx, by = ray_trace(x, y, 1.0, 0.8, 0.2)
    ax, ay = sie_deflection(x, y, 1.0, 0.8, 0.2)
    np.testing.assert_array_equal(bx, x - ax)
    np.testing.assert_array_equal(by, y - ay)
    assert np.all(sersic(np.zeros(1), np.zeros(1), 0.5, 1.0, soft=0.2) < sersic(np.zeros(1), np.zeros(1), 0.5, 1.0))
    assert knots_profile(np.zeros(2, np.float32), np.zeros(2, np.float32), np.zeros(1), np.zeros(1),
                         np.full(1, 0.1), np.ones(1)).dtype == np.float64
    with pytest.raises(ValueError, match="integer >= 2"):
        multipole_deflection(x, y, 2.5, 0.02, 0.0)
    assert multipole_deflection(x, y, 2, 0.02, 0.0)[0].shape == x.shape   # m = 2 is allowed


def test_epl_series_is_converged_to_the_tolerance():
    """Against scipy's complex hypergeometric function directly (lenstronomy's route), to 1e-11."""
    from scipy.special import hyp2f1

    for q, gamma in ((0.3, 1.7), (0.6, 2.3), (0.95, 2.0)):
        x, y = X32.astype(float) * 1.3, Y32.astype(float) * 1.3
        ax, ay = epl_deflection(x, y, 1.1, gamma, q, 0.0)
        b, t = 1.1 * np.sqrt(q), gamma - 1
        z = q * x + 1j * y
        r = np.abs(z)
        ref = 2 / (1 + q) * (b / r) ** t * z * hyp2f1(1, t / 2, 2 - t / 2, -(1 - q) / (1 + q) * z / z.conj())
        np.testing.assert_allclose(ax, ref.real, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(ay, ref.imag, rtol=1e-11, atol=1e-13)


# ----------------------------------------------------------------------------- stats
def test_check_labels_scores_and_nan_auc():
    y, s = check_labels_scores([0, 1, 1], np.array([1, 2, 3], dtype=np.int64))
    assert y.dtype == bool and s.dtype == np.float64
    with pytest.raises(MetricError, match="1-d and of equal length"):
        check_labels_scores(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(MetricError, match="1-d and of equal length"):
        check_labels_scores([0, 1], [0.1, 0.2, 0.3])
    v = roc_auc_or_nan([1, 1, 1], [0.1, 0.2, 0.3])
    assert isinstance(v, float) and np.isnan(v)
    assert roc_auc_or_nan([0, 1, 1], [0.1, 0.2, 0.05]) == 0.5


def test_asinh_stretch_is_softening_times_asinh_of_the_normalised_pixels_and_survives_overflow():
    from lensaudit.data.preprocess import PreprocessConfig, raw_robust

    rng = np.random.default_rng(2)
    x = rng.normal(0.0, 0.01, (2, 3, 41, 41)).astype(np.float32)
    x[:, :, 20, 20] += 2.0
    lin = raw_robust(x, PreprocessConfig(r_in_pix=12, r_out_pix=19, clip=1e30))        # normalised, unclipped
    got = raw_robust(x, PreprocessConfig(r_in_pix=12, r_out_pix=19, stretch="asinh", softening=2.0))
    np.testing.assert_allclose(got, 2.0 * np.arcsinh(lin / 2.0), rtol=2e-6, atol=1e-6)
    assert not np.allclose(got, np.clip(lin, -10, 10))                                   # not the clip
    # a flat sky (MAD 0) and one enormous pixel: the division overflows, the stretch stays finite
    flat = np.zeros((1, 3, 41, 41), np.float32)
    flat[0, 0, 20, 20] = 3e38
    out = raw_robust(flat, PreprocessConfig(r_in_pix=12, r_out_pix=19, stretch="asinh", softening=3.0))
    assert np.isfinite(out).all() and out[0, 0, 20, 20] == pytest.approx(3.0 * np.arcsinh(1e30 / 3.0), rel=1e-6)


def test_hash64_of_scalars_is_quiet_and_large_keys_stay_exact():
    import warnings

    from lensaudit.utils.hashing import hash64

    with warnings.catch_warnings():
        warnings.simplefilter("error")                # uint64 wrap-around is the point, not a warning
        h = hash64(5, 7)
    assert h == hash64(np.array([5]), np.array([7]))[0]
    big = np.array([2**62, 2**62 + 1], dtype=np.int64)   # equal once rounded to float64: must not collide
    a, b = hash64(big)
    assert a != b


def test_block_bootstraps_defaults_and_empty_replicates_are_quiet():
    import warnings

    from lensaudit.evaluate.bootstrap import bootstrap_auc_blocks, bootstrap_ratio_blocks, weighted_auc

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 60)
    s = rng.normal(size=60) + y
    g = rng.integers(0, 12, 60)
    d = bootstrap_auc_blocks(y, s, g)
    assert d.shape == (1000,) and np.array_equal(d, bootstrap_auc_blocks(y, s, g, 1000, 0))
    r = bootstrap_ratio_blocks(np.array([1, 2, 3]), np.array([4, 4, 4]))
    assert r.shape == (1000,) and np.array_equal(r, bootstrap_ratio_blocks(np.array([1, 2, 3]), np.array([4, 4, 4]), 1000, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # groups with no objects at all: 0/0 is NaN, quietly
        assert np.isnan(bootstrap_ratio_blocks(np.array([0, 0]), np.array([0, 0]), 20, 3)).all()
        # a replicate without negatives has no AUC: NaN, quietly
        w = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
        got = weighted_auc(np.array([True, True, False]), np.array([0.2, 0.9, 0.5]), w)
        assert np.isnan(got[0]) and got[1] == 0.5


def test_run_info_names_the_cpu_model_timings_belong_to(tmp_path):
    """Benchmarks compare only on one CPU model: provenance records it (from /proc/cpuinfo on Linux)."""
    from lensaudit.utils.provenance import cpu_model, run_info

    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t: fpu\n")
    assert cpu_model(f) == "Intel(R) Xeon(R) Processor"
    f.write_text("processor\t: 0\nmodel name\t:   \n")                 # empty: fall back, never an empty name
    assert cpu_model(f) and cpu_model(tmp_path / "absent")
    assert run_info()["cpu"] == cpu_model()
