"""The XDF library's measuring steps one at a time, each against a hand computation or a field of known answer
(the whole build, about 15 s, is checked in test_sources.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from astropy.stats import sigma_clipped_stats

from lensaudit.sources import library_half, write_stamp_library
from lensaudit.sources import xdf as X


def test_destretch_undoes_a_power_stretch_about_each_channels_own_sky():
    display = np.array([[[12, 30, 5], [20, 30, 9]], [[10, 14, 40], [16, 22, 2]]], np.uint8)
    sky = np.array([10.0, 20.0, 5.0])
    got = X.destretch(display, sky, 2.5)
    d = display.astype(float) - sky
    want = np.array([[[np.sign(v) * abs(v) ** 2.5 for v in px] for px in row] for row in d])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[1, 0, 1] < 0 and got.dtype == np.float64            # below the sky: negative light kept negative


def test_sky_levels_are_each_channels_clipped_median_and_noise_in_channel_order():
    rng = np.random.default_rng(3)
    img = np.stack([rng.normal(m, s, (200, 200)) for m, s in ((10.0, 2.0), (30.0, 3.0), (60.0, 4.0))], axis=-1)
    img[50:60, 50:60] += 150.0                                      # a bright source the clipping must ignore
    level, sd = X.sky_levels(img)
    np.testing.assert_allclose(level, [10.0, 30.0, 60.0], atol=0.1)
    np.testing.assert_allclose(sd, [2.0, 3.0, 4.0], rtol=0.03)
    for c in range(3):                                              # the stated estimator: 3 sigma, 10 iterations
        _, med, s = sigma_clipped_stats(img[..., c], sigma=3.0, maxiters=10)
        assert (level[c], sd[c]) == (med, s)


def test_segment_fluxes_sum_the_linearised_pixels_of_each_present_label_in_label_order():
    d = np.array([[1.0, -2.0, 3.0], [4.0, 0.5, 2.0]])
    seg = np.array([[1, 1, 4], [0, 4, 4]])                          # labels 2 and 3 absent, 0 the sky
    got = X.segment_fluxes(d, seg, 2.0)
    np.testing.assert_allclose(got, [1.0 - 4.0, 9.0 + 0.25 + 4.0])


def test_counts_slope_is_the_maximum_likelihood_power_law_of_the_brightest_third():
    f = np.array([100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.0, -3.0])  # 7 positive: a third is 2, at least 5 kept
    top = np.array([100.0, 50.0, 20.0, 10.0, 5.0])
    assert X.counts_slope(f) == pytest.approx(0.4 * 5 / np.log(top / 5.0).sum(), rel=1e-12)
    many = np.random.default_rng(0).permutation(np.linspace(1, 600, 600))
    top = np.sort(many)[::-1][:200]
    assert X.counts_slope(many) == pytest.approx(0.4 * 200 / np.log(top / top[-1]).sum(), rel=1e-12)
    assert X.counts_slope(many, complete_fraction=0.5) != X.counts_slope(many)
    a = 0.7                                                          # N(>F) ~ F^-a exactly: slope 0.4 a
    pareto = (1 - (np.arange(30000) + 0.5) / 30000) ** (-1 / a)
    assert X.counts_slope(pareto) == pytest.approx(0.4 * a, rel=0.03)


def test_measure_gamma_finds_the_stretch_whose_counts_have_the_target_slope_and_clamps_to_its_range():
    base = (1 - (np.arange(3000) + 0.5) / 3000) ** (-1 / 1.35)      # counts slope about 0.54 at gamma 1
    s0 = X.counts_slope(base)

    def fluxes_of(g):                                               # the slope of F^g is exactly s0 / g
        return base ** g

    got = X.measure_gamma(fluxes_of, target=0.27)
    assert got == pytest.approx(s0 / 0.27, abs=1e-3) and abs(got - 2.0) < 0.1
    assert X.measure_gamma(fluxes_of, target=0.27, tol=1e-6) == pytest.approx(s0 / 0.27, abs=1e-6)
    assert X.measure_gamma(fluxes_of, target=s0 * 2) == 1.0        # would need gamma 0.5: the lower end
    assert X.measure_gamma(fluxes_of, target=s0 / 10) == 6.0       # would need gamma 10: the upper end
    assert X.measure_gamma(fluxes_of, target=s0 / 3, lo=2.0, hi=2.5) == 2.5
    assert X.measure_gamma(fluxes_of, target=s0 / 3, lo=3.5, hi=5.0) == 3.5


def test_calibrated_gamma_reads_the_true_stretch_off_the_calibration_linearly_and_clamps():
    truth, est = np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 4.0])
    assert X.calibrated_gamma(3.0, truth, est) == pytest.approx(2.5)
    assert X.calibrated_gamma(1.75, truth, est) == pytest.approx(1.5)
    assert X.calibrated_gamma(0.0, truth, est) == 1.0 and X.calibrated_gamma(9.0, truth, est) == 3.0


def _psf_field(gamma: float, extended: bool = True):
    """Display-minus-sky image of point sources of one Gaussian PSF (sigma 1.5 px) and 2 to 2000 flux units,
    shown as L^(1 / gamma); and its segmentation (a disc of 3 sigma per source). With ``extended``, a broad
    source (sigma 4 px) is added under the next label."""
    fluxes = np.geomspace(2.0, 2000.0, 16)
    lin = np.zeros((40, 40 * len(fluxes) + 40))
    seg = np.zeros(lin.shape, int)
    yy, xx = np.mgrid[0:40, 0:40]
    for k, f in enumerate([*fluxes, 500.0] if extended else fluxes):
        s = 4.0 if k == len(fluxes) else 1.5
        lin[:, 40 * k : 40 * k + 40] += f / (2 * np.pi * s * s) * np.exp(-((xx - 20) ** 2 + (yy - 20) ** 2) / (2 * s * s))
        seg[:, 40 * k : 40 * k + 40][(xx - 20) ** 2 + (yy - 20) ** 2 <= (3 * s) ** 2] = k + 1
    return lin ** (1 / gamma), seg, np.arange(1, len(fluxes) + 1)


def _ratio_field(slope: float):
    """Display-minus-sky of 12 sources (3 x 3 pixel squares, labels 1-12) of totals 10-1000 whose peak / total
    goes as total^slope, a 13th (label 13) of the opposite trend, and label 20 a negative-total patch."""
    tot = np.geomspace(10.0, 1000.0, 12)
    d, seg = np.zeros((5, 5 * 14)), np.zeros((5, 5 * 14), int)
    for k, (t, s) in enumerate([*((t, slope) for t in tot), (5000.0, -slope)]):
        peak = t * 0.5 * (t / 10.0) ** s
        d[1:4, 5 * k + 1 : 5 * k + 4] = (t - peak) / 8
        d[2, 5 * k + 2] = peak
        seg[1:4, 5 * k + 1 : 5 * k + 4] = k + 1
    d[1:4, 66:69], seg[1:4, 66:69] = -1.0, 20
    return d, seg


def test_stretch_slope_fits_log_peak_over_total_against_log_total_of_the_listed_sources():
    d, seg = _ratio_field(-0.1)
    labels = np.arange(1, 13)
    assert X.stretch_slope(d, seg, labels, 1.0) == pytest.approx(-0.1, abs=1e-9)
    assert X.stretch_slope(d, seg, np.append(labels, 13), 1.0) > -0.09      # the 13th source counts when listed
    assert X.stretch_slope(d, seg, np.append(labels, 20), 1.0) == pytest.approx(-0.1, abs=1e-9)  # no light: skipped
    lin = np.sign(d) * np.abs(d) ** 2.0                                      # another stretch, by hand
    tot = np.array([lin[seg == k].sum() for k in labels])
    pk = np.array([lin[seg == k].max() for k in labels])
    want = np.polyfit(np.log10(tot), np.log10(pk / tot), 1)[0]
    assert X.stretch_slope(d, seg, labels, 2.0) == pytest.approx(want, rel=1e-9) and abs(want + 0.1) > 0.05
    assert X.stretch_slope(d, seg, labels[3:], 1.0) == pytest.approx(-0.1, abs=1e-9)   # a list not from 1


def test_cut_is_a_box_centred_on_the_nearest_pixel_with_zeros_outside_the_image():
    a = np.arange(30, dtype=float).reshape(5, 6) + 1
    np.testing.assert_array_equal(X._cut(a, 2.2, 2.6, 3), a[1:4, 2:5])
    np.testing.assert_array_equal(X._cut(a, 2.0, 3.0, 4), a[0:4, 1:5])      # even size: one more row above
    edge = X._cut(a, 0.0, 5.0, 3)
    np.testing.assert_array_equal(edge, [[0, 0, 0], [a[0, 4], a[0, 5], 0], [a[1, 4], a[1, 5], 0]])
    assert not X._cut(a, 20.0, 20.0, 3).any() and X._cut(a, 20.0, 20.0, 3).shape == (3, 3)
    np.testing.assert_array_equal(X._cut(a, -1.0, -1.0, 3)[2:, 2:], a[:1, :1])
    np.testing.assert_array_equal(X._cut(a, 4.0, 0.0, 5)[:3, 2:], a[2:, :3])


def test_compact_sources_are_the_bright_ones_of_the_smallest_sizes():
    from photutils.segmentation import SegmentationImage

    d, seg, _ = _psf_field(1.0)
    rng = np.random.default_rng(0)
    d = d + rng.normal(0, 0.01, d.shape)
    d = np.concatenate([d, d], axis=1)                               # 34 sources: 32 point-like, 2 broad
    seg = np.concatenate([seg, np.where(seg > 0, seg + 17, 0)], axis=1)
    labels = X._compact_sources(d, SegmentationImage(seg), snr_min=20.0, fraction=0.3)
    assert 8 <= len(labels) <= 12 and not {17, 34} & set(labels.tolist())
    with pytest.raises(X.XdfError, match="too few bright sources"):
        X._compact_sources(d, SegmentationImage(seg), snr_min=1e9)


# ------------------------------------------------------------------ the library folder: provenance and the cache
def _fake_folder(folder, sha_report: str, sha_header: str):
    """An XDF library folder without the build: a small stamp library and a report naming an image SHA-256."""
    rng = np.random.default_rng(0)
    ids = [f"xdf_{k:04d}" for k in range(12)]
    yy, xx = np.mgrid[0:16, 0:16]
    blob = np.exp(-((xx - 8) ** 2 + (yy - 8) ** 2) / 8.0)
    imgs = np.stack([np.stack([blob * (1 + 0.1 * rng.random())] * 3) for _ in ids])
    meta = pd.DataFrame({"ID": ids, "Z": np.nan, **{f"MAG_{b}": 22.5 - 2.5 * np.log10(imgs[:, j].sum(axis=(1, 2)))
                                                   for j, b in enumerate("GRZ")}})
    folder.mkdir(parents=True, exist_ok=True)
    write_stamp_library(folder / "xdf_stamps.fits", imgs, 0.138, meta, header={"XDFSHA": sha_header})
    (folder / "xdf_report.json").write_text(json.dumps({"provenance": {"sha256": sha_report}, "n_stamps": 12}))
    return ids


def test_check_provenance_compares_the_report_and_the_library_header_with_this_machines_image(tmp_path):
    _, prov = X.load_xdf()
    assert len(prov["sha256"]) == 64 and prov["shape"][2] == 3
    _fake_folder(tmp_path / "ok", prov["sha256"], prov["sha256"])
    assert X.check_provenance(tmp_path / "ok")["n_stamps"] == 12
    _fake_folder(tmp_path / "report", "0" * 64, prov["sha256"])
    with pytest.raises(X.XdfError, match="built from an XDF image with SHA-256 0000000000000000"):
        X.check_provenance(tmp_path / "report")
    _fake_folder(tmp_path / "header", prov["sha256"], "f" * 64)
    with pytest.raises(X.XdfError, match="xdf_stamps.fits: its header names another XDF image"):
        X.check_provenance(tmp_path / "header")
    (tmp_path / "ok" / "xdf_report.json").unlink()
    with pytest.raises(X.XdfError, match="not an XDF library folder"):
        X.check_provenance(tmp_path / "ok")


def test_the_default_library_is_built_once_in_the_cache_and_opened_by_name_or_half(tmp_path, monkeypatch):
    _, prov = X.load_xdf()
    built = []

    def fake_build(root):
        built.append(root)
        _fake_folder(root, prov["sha256"], prov["sha256"])

    monkeypatch.setattr(X, "build_xdf_library", fake_build)
    monkeypatch.setenv(X.CACHE_ENV, str(tmp_path / "cache"))
    path = X.default_library()
    assert path == tmp_path / "cache" / "xdf" / "xdf_stamps.fits" and built == [tmp_path / "cache" / "xdf"]
    assert X.default_library() == path and len(built) == 1             # the second use opens, builds nothing
    full = X.open_library("xdf")
    halves = library_half(full.meta["ID"])
    a, b = X.open_library("xdf:A"), X.open_library("xdf:B")
    assert len(full) == 12 and a.meta["ID"].tolist() == full.meta["ID"][halves == "A"].tolist()
    assert b.meta["ID"].tolist() == full.meta["ID"][halves == "B"].tolist()
    assert X.open_library(f"{path}:B").meta["ID"].tolist() == b.meta["ID"].tolist()
    monkeypatch.delenv(X.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert X.default_library() == tmp_path / "home" / ".cache" / "lensaudit" / "xdf" / "xdf_stamps.fits"
    (tmp_path / "cache" / "xdf" / "xdf_report.json").unlink()          # a half-written cache is rebuilt
    monkeypatch.setenv(X.CACHE_ENV, str(tmp_path / "cache"))
    X.default_library()
    assert len(built) == 3


# ------------------------------------------------------------------ the cuts and the stamps
def test_cut_flow_counts_each_cut_on_what_the_earlier_ones_kept():
    keep, reasons = X.cut_flow([("a", np.array([True, False, True, False])),
                                ("b", np.array([True, True, False, False]))])
    assert keep.tolist() == [False, False, False, True] and reasons == {"a": 2, "b": 1}
    before = np.array([True, True, True, False])
    keep, reasons = X.cut_flow([("c", np.array([False, True, False, True]))], before)
    assert keep.tolist() == [True, False, True, False] and reasons == {"c": 1}
    assert before.tolist() == [True, True, True, False]              # the caller's mask is not changed


def test_detection_cuts_at_their_boundaries():
    s = X.XdfSettings()                    # min area 20 px, edge margin 2, S/N 30, star 1.3x locus, span 64 - 6
    H, W = 300, 400
    ok = dict(area=40, bbox=(100, 120, 100, 120), sat=False, snr=50.0, size=3.0)
    rows = [ok, {**ok, "area": 19}, {**ok, "area": 20},
            {**ok, "bbox": (1, 20, 100, 120)}, {**ok, "bbox": (2, 20, 100, 120)},
            {**ok, "bbox": (100, 120, 1, 20)}, {**ok, "bbox": (H - 20, H - 3, 100, 120)},
            {**ok, "bbox": (H - 20, H - 2, 100, 120)}, {**ok, "bbox": (100, 120, W - 20, W - 2)},
            {**ok, "bbox": (100, 120, W - 20, W - 3)}, {**ok, "sat": True}, {**ok, "snr": 29.9}, {**ok, "snr": 30.0},
            {**ok, "size": 1.3 * 2.0 - 1e-9}, {**ok, "size": 1.3 * 2.0},
            {**ok, "bbox": (100, 159, 100, 120)}, {**ok, "bbox": (100, 158, 100, 120)},
            {**ok, "bbox": (100, 120, 100, 159)}]
    cuts = X.detection_cuts(np.array([r["area"] for r in rows]), np.array([r["bbox"] for r in rows]),
                            np.array([r["sat"] for r in rows]), np.array([r["snr"] for r in rows]),
                            np.array([r["size"] for r in rows]), 2.0, (H, W), s)
    assert [name for name, _ in cuts] == ["smaller than the minimum area", "touching the image edge",
                                          "saturated (display value 255)", "S/N below the minimum",
                                          "star-like (size within 1.3x the compact locus)", "larger than the stamp"]
    got = {name: np.flatnonzero(bad).tolist() for name, bad in cuts}
    assert got == {"smaller than the minimum area": [1], "touching the image edge": [3, 5, 7, 8],
                   "saturated (display value 255)": [10], "S/N below the minimum": [11],
                   "star-like (size within 1.3x the compact locus)": [13], "larger than the stamp": [15, 17]}


def test_a_galaxy_is_blended_when_the_segments_touching_it_in_its_stamp_outshine_it():
    seg = np.zeros((12, 30), int)
    seg[2:5, 2:5], seg[5:7, 2:5] = 1, 2            # 2 touches 1 from below
    seg[2:5, 8:11], seg[2:5, 12:14] = 3, 4         # 4 is one sky column away from 3
    seg[2:4, 16:18], seg[4:6, 18:20] = 5, 6        # 6 touches 5 at a corner only
    seg[6:9, 22:25], seg[5, 22:25], seg[9, 22:25] = 7, 8, 9    # 8 above, 9 below
    seg[2:5, 26:29], seg[10:12, 26:29] = 10, 11    # 11 touches nothing
    labels = np.arange(1, 12)
    flux = np.array([10.0, 11.0, 10.0, 50.0, 10.0, 50.0, 10.0, 6.0, 6.0, 10.0, 90.0])
    cy = np.array([3.0, 5.5, 3.0, 3.0, 2.5, 4.5, 7.0, 5.0, 9.0, 3.0, 10.5])
    cx = np.array([3.0, 3.0, 9.0, 12.5, 16.5, 18.5, 23.0, 23.0, 23.0, 27.0, 27.0])
    keep = np.ones(11, bool)
    got = X.blended(seg, labels, flux, cy, cx, keep, 9)
    # 1 (by 2), 7 (by 8 and 9 together), 8 and 9 (by 7); 2 outshines 1; 3, 5, 10 and 11 touch nothing brighter
    assert np.flatnonzero(got).tolist() == [0, 6, 7, 8]
    keep[[0, 7]] = False
    assert np.flatnonzero(X.blended(seg, labels, flux, cy, cx, keep, 9)).tolist() == [6, 8]   # only kept examined
    seg2 = seg.copy()
    seg2[7:12, 2:5] = 2                                    # 2 grows beyond 1's 3-pixel stamp: still touching
    flux2 = flux.copy()
    flux2[1] = 9.0
    assert not X.blended(seg2, labels, flux2, cy, cx, np.ones(11, bool), 3)[0]


def test_a_stamp_is_the_galaxys_grown_segment_in_g_r_z_from_blue_mean_and_green():
    s = X.XdfSettings(stamp_pix=7, grow_pix=1)
    H, W = 12, 12
    rng = np.random.default_rng(2)
    lin = rng.random((H, W, 3)) + np.array([10.0, 20.0, 40.0])     # R, G, B
    seg = np.zeros((H, W), int)
    seg[5:7, 5:7] = 1
    seg[5:7, 7:9] = 2                                               # a neighbour on the right
    st = X.cut_stamps(lin, seg, np.array([1]), np.array([5.6]), np.array([5.4]), s)
    assert st.shape == (1, 3, 7, 7)
    y0, x0 = 6 - 3, 5 - 3                                           # centred on the nearest pixel (6, 5)
    own = np.zeros((H, W), bool)
    own[5:7, 5:7] = True
    grown = own.copy()
    grown[4, 5:7] = grown[7, 5:7] = grown[5:7, 4] = True            # one pixel of 4-connected growth, not corners
    grown[5:7, 7] = False                                            # never into the neighbour
    m = grown[y0 : y0 + 7, x0 : x0 + 7]
    blue, green = lin[y0 : y0 + 7, x0 : x0 + 7, 2], lin[y0 : y0 + 7, x0 : x0 + 7, 1]
    np.testing.assert_allclose(st[0, 0], blue * m)
    np.testing.assert_allclose(st[0, 1], 0.5 * (blue + green) * m)
    np.testing.assert_allclose(st[0, 2], green * m)
    assert m.sum() == 4 + 6 and (st[0][:, ~m] == 0).all()


def test_colour_scales_move_the_median_colours_to_the_prior_and_r_is_normalised_per_stamp():
    sums = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 2.5], [0.5, 1.0, 4.0], [3.0, 2.0, 1.0], [1.2, 1.5, 1.5]])
    kg, kz = X.colour_scales(sums, 0.45, 0.35)
    gr = -2.5 * np.log10(sums[:, 0] * kg / sums[:, 1])
    rz = -2.5 * np.log10(sums[:, 1] / (sums[:, 2] * kz))
    assert np.median(gr) == pytest.approx(0.45, abs=1e-12) and np.median(rz) == pytest.approx(0.35, abs=1e-12)
    assert kg < 1 < kz                   # the sums' median g - r (0.24) bluer than 0.45, r - z (-0.24) redder
    stamps = np.random.default_rng(0).random((4, 3, 5, 5))
    out = X.normalised_to_r(stamps, 24.0)
    np.testing.assert_allclose(out[:, 1].sum(axis=(1, 2)), 10 ** (-0.4 * (24.0 - 22.5)), rtol=1e-12)
    np.testing.assert_allclose(out / stamps, (out / stamps)[:, :1, :1, :1] * np.ones_like(stamps), rtol=1e-12)
