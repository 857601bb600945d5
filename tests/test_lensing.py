"""Lens physics against lenstronomy and analytic limits: SIE + shear deflections, ray tracing,
Sersic and knot light profiles (lensaudit.lensing)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.LightModel.light_model import LightModel
from lenstronomy.Util.param_util import phi_q2_ellipticity

from lensaudit.lensing import ray_trace, shear_deflection, sie_deflection
from lensaudit.lensing.light import gaussian, knots_profile, sersic, sersic_b, sersic_total

RNG = np.random.default_rng(0)
X, Y = RNG.uniform(-4, 4, (2, 2000))


@pytest.mark.parametrize("theta_e, q, phi, x0, y0", [(1.3, 0.7, 0.3, 0.1, -0.2), (0.6, 0.35, 1.2, 0.0, 0.0),
                                                   (2.5, 0.95, -0.5, -0.3, 0.4), (1.0, 0.999, 2.0, 0.0, 0.0)])
def test_sie_deflection_matches_lenstronomy(theta_e, q, phi, x0, y0):
    e1, e2 = phi_q2_ellipticity(phi, q)
    ax, ay = LensModel(["SIE"]).alpha(X, Y, [{"theta_E": theta_e, "e1": e1, "e2": e2, "center_x": x0, "center_y": y0}])
    bx, by = sie_deflection(X, Y, theta_e, q, phi, x0, y0)
    scale = np.hypot(ax, ay)
    assert np.max(np.abs(bx - ax) / scale) < 1e-4 and np.max(np.abs(by - ay) / scale) < 1e-4


def test_sis_limit_deflection_is_theta_e_everywhere_and_radial():
    ax, ay = sie_deflection(X, Y, 1.7, 1.0, 0.4)
    np.testing.assert_allclose(np.hypot(ax, ay), 1.7, rtol=1e-9)
    np.testing.assert_allclose(ax * Y - ay * X, 0.0, atol=1e-9)          # parallel to the position
    assert np.all(ax * X + ay * Y > 0)                                    # pointing away from the centre
    # the elliptical formula tends to the spherical one continuously
    cx, cy = sie_deflection(X, Y, 1.7, 1 - 1e-5, 0.4)
    np.testing.assert_allclose(cx, ax, atol=1e-4)
    np.testing.assert_allclose(cy, ay, atol=1e-4)


def test_sie_einstein_radius_convention_convergence():
    """kappa = theta_E / (2 sqrt(q x'^2 + y'^2 / q)) (intermediate-axis normalisation): the mean
    convergence inside the critical ellipse is 1; checked via the divergence of the deflection."""
    te, q, phi = 1.2, 0.6, 0.7
    h = 1e-5
    x, y = RNG.uniform(-3, 3, (2, 400))
    dax = (sie_deflection(x + h, y, te, q, phi)[0] - sie_deflection(x - h, y, te, q, phi)[0]) / (2 * h)
    day = (sie_deflection(x, y + h, te, q, phi)[1] - sie_deflection(x, y - h, te, q, phi)[1]) / (2 * h)
    kappa = 0.5 * (dax + day)
    c, s = np.cos(phi), np.sin(phi)
    xr, yr = c * x + s * y, -s * x + c * y
    np.testing.assert_allclose(kappa, te / (2 * np.sqrt(q * xr**2 + yr**2 / q)), rtol=1e-5)


def test_sie_major_axis_orientation():
    # a mass elongated along +x deflects more strongly across its minor axis (y) at equal radius
    ax, _ = sie_deflection(np.array([1.0]), np.array([0.0]), 1.0, 0.5, 0.0)
    _, ay = sie_deflection(np.array([0.0]), np.array([1.0]), 1.0, 0.5, 0.0)
    assert abs(ay[0]) > abs(ax[0])
    bx, _ = sie_deflection(np.array([0.0]), np.array([1.0]), 1.0, 0.5, np.pi / 2)  # rotated by 90 deg
    np.testing.assert_allclose(sie_deflection(np.array([1.0]), np.array([0.0]), 1.0, 0.5, np.pi / 2)[0], ay, rtol=1e-12)
    assert bx[0] == pytest.approx(0.0, abs=1e-12)


def test_shear_sign_matches_lenstronomy():
    g1, g2 = 0.05, -0.03
    ax, ay = LensModel(["SHEAR"]).alpha(X, Y, [{"gamma1": g1, "gamma2": g2, "ra_0": 0.0, "dec_0": 0.0}])
    bx, by = shear_deflection(X, Y, g1, g2)
    np.testing.assert_allclose(bx, ax, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(by, ay, rtol=1e-12, atol=1e-15)
    cx, cy = shear_deflection(X + 0.5, Y - 0.2, g1, g2, x0=0.5, y0=-0.2)  # about its own origin
    np.testing.assert_allclose(cx, bx, atol=1e-12)
    np.testing.assert_allclose(cy, by, atol=1e-12)


def test_ray_trace_is_sie_plus_shear_like_lenstronomy():
    te, q, phi, g1, g2 = 1.1, 0.8, -0.4, 0.04, 0.02
    e1, e2 = phi_q2_ellipticity(phi, q)
    lm = LensModel(["SIE", "SHEAR"])
    bx, by = lm.ray_shooting(X, Y, [{"theta_E": te, "e1": e1, "e2": e2, "center_x": 0, "center_y": 0},
                                   {"gamma1": g1, "gamma2": g2, "ra_0": 0, "dec_0": 0}])
    rx, ry = ray_trace(X, Y, te, q, phi, g1, g2)
    np.testing.assert_allclose(rx, bx, atol=1e-6)
    np.testing.assert_allclose(ry, by, atol=1e-6)
    # off-centre (x0 != y0): the SIE and the shear both about the lens centre
    x0, y0 = 0.3, -0.15
    bx, by = lm.ray_shooting(X, Y, [{"theta_E": te, "e1": e1, "e2": e2, "center_x": x0, "center_y": y0},
                                   {"gamma1": g1, "gamma2": g2, "ra_0": x0, "dec_0": y0}])
    rx, ry = ray_trace(X, Y, te, q, phi, g1, g2, x0, y0)
    np.testing.assert_allclose(rx, bx, atol=1e-6)
    np.testing.assert_allclose(ry, by, atol=1e-6)


def test_bad_axis_ratio_is_an_error():
    for q in (0.0, -0.2, 1.01):
        with pytest.raises(ValueError, match="axis ratio"):
            sie_deflection(X, Y, 1.0, q, 0.0)


@settings(max_examples=60, deadline=None)
@given(te=st.floats(0.2, 3.0), q=st.floats(0.2, 1.0), phi=st.floats(-3.2, 3.2),
       x=st.floats(-5, 5), y=st.floats(-5, 5))
def test_centred_deflections_are_odd_under_point_reflection(te, q, phi, x, y):
    if np.hypot(x, y) < 1e-3:
        return
    a = np.array(sie_deflection(np.array([x]), np.array([y]), te, q, phi))
    b = np.array(sie_deflection(np.array([-x]), np.array([-y]), te, q, phi))
    np.testing.assert_allclose(a, -b, rtol=1e-9, atol=1e-12)
    assert np.hypot(*a)[0] <= te / np.sqrt(q) * np.pi / 2 + 1e-9  # bounded: the SIE deflection never diverges
    s = np.array(shear_deflection(np.array([x]), np.array([y]), 0.03, -0.02))
    np.testing.assert_allclose(s, -np.array(shear_deflection(np.array([-x]), np.array([-y]), 0.03, -0.02)))


# ----------------------------------------------------------------------------- light profiles
@pytest.mark.parametrize("n, b", [(0.5, 0.6931), (1.0, 1.6783), (4.0, 7.6692)])
def test_sersic_b_known_values(n, b):
    assert sersic_b(n) == pytest.approx(b, abs=1e-4)


@pytest.mark.parametrize("n, q, phi", [(1.0, 1.0, 0.0), (2.5, 0.5, 0.8), (0.7, 0.8, -1.0)])
def test_sersic_matches_lenstronomy_half_light_and_total(n, q, phi, monkeypatch):
    r_e = 0.8
    e1, e2 = phi_q2_ellipticity(phi, q)
    lm = LightModel(["SERSIC_ELLIPSE"])
    ref = lm.surface_brightness(X, Y, [{"amp": 1.0, "R_sersic": r_e, "n_sersic": n, "e1": e1, "e2": e2,
                                        "center_x": 0, "center_y": 0}])
    # lenstronomy uses the approximation b_n = 1.9992 n - 0.3271 (Capaccioli 1989); lensaudit the exact b_n.
    # The geometry (r_e, q, phi conventions) is compared with lenstronomy's b_n in both.
    import lensaudit.lensing.light as light

    with monkeypatch.context() as m:
        m.setattr(light, "sersic_b", lambda nn: 1.9992 * nn - 0.3271)
        got = sersic(X, Y, r_e, n, q, phi)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-12)
    # half the light inside r_e, and the total matches sersic_total (numerical integral on a fine grid)
    g = np.linspace(-25 * r_e, 25 * r_e, 1501)
    xx, yy = np.meshgrid(g, g)
    img = sersic(xx, yy, r_e, n, q, phi)
    c, s = np.cos(phi), np.sin(phi)
    rr = np.sqrt(q * (c * xx + s * yy) ** 2 + (-s * xx + c * yy) ** 2 / q)
    tot = img.sum() * (g[1] - g[0]) ** 2
    assert tot == pytest.approx(sersic_total(r_e, n), rel=0.01)
    assert img[rr < r_e].sum() / img.sum() == pytest.approx(0.5, abs=0.01)


def test_knots_integrate_to_their_weights():
    g = np.linspace(-3, 3, 1201)
    xx, yy = np.meshgrid(g, g)
    kx, ky, ks, kw = np.array([0.2, -0.5]), np.array([0.1, 0.4]), np.array([0.05, 0.12]), np.array([0.3, 0.7])
    prof = knots_profile(xx, yy, kx, ky, ks, kw)
    d = (g[1] - g[0]) ** 2
    assert prof.sum() * d == pytest.approx(1.0, rel=1e-3)
    one = knots_profile(xx, yy, kx[:1], ky[:1], ks[:1], kw[:1])
    assert one.sum() * d == pytest.approx(0.3, rel=1e-3)
    iy, ix = np.unravel_index(np.argmax(one), one.shape)
    assert (g[ix], g[iy]) == pytest.approx((0.2, 0.1), abs=0.006)
    assert gaussian(np.array([0.0, 1.0]), np.array([0.0, 0.0]), 0.5)[1] == pytest.approx(np.exp(-2.0))


# ----------------------------------------------------------------------------- the mock's richer family
@pytest.mark.parametrize("te, gamma, q, phi", [(1.2, 2.0, 0.7, 0.3), (1.0, 1.6, 0.4, 1.1), (2.1, 2.4, 0.9, -0.6),
                                               (0.8, 1.75, 0.3, 2.0), (1.0, 2.2, 0.995, 0.1), (1.5, 1.9, 1.0, 0.0)])
def test_epl_deflection_matches_lenstronomy(te, gamma, q, phi):
    from lensaudit.lensing.mass import epl_deflection

    e1, e2 = phi_q2_ellipticity(phi, q)
    ax, ay = LensModel(["EPL"]).alpha(X, Y, [{"theta_E": te, "gamma": gamma, "e1": e1, "e2": e2,
                                             "center_x": 0.1, "center_y": -0.2}])
    bx, by = epl_deflection(X, Y, te, gamma, q, phi, 0.1, -0.2)
    scale = np.hypot(ax, ay)
    assert np.max(np.abs(bx - ax) / scale) < 1e-4 and np.max(np.abs(by - ay) / scale) < 1e-4


def test_epl_reduces_to_the_sie_and_to_a_power_law_sphere():
    from lensaudit.lensing.mass import epl_deflection

    np.testing.assert_allclose(epl_deflection(X, Y, 1.2, 2.0, 0.6, 0.4), sie_deflection(X, Y, 1.2, 0.6, 0.4), atol=1e-9)
    # round power law: |alpha| = theta_E (r / theta_E)^(2 - gamma), radial
    ax, ay = epl_deflection(X, Y, 1.3, 1.8, 1.0, 0.0)
    r = np.hypot(X, Y)
    np.testing.assert_allclose(np.hypot(ax, ay), 1.3 * (r / 1.3) ** (2 - 1.8), rtol=1e-10)
    for bad in ({"q": 0.0}, {"q": 1.2}, {"gamma": 3.0}, {"gamma": 1.0}):
        with pytest.raises(ValueError, match="outside"):
            epl_deflection(X, Y, 1.0, bad.get("gamma", 2.0), bad.get("q", 0.8), 0.0)


@pytest.mark.parametrize("m", [3, 4])
def test_multipole_matches_lenstronomy(m):
    from lensaudit.lensing.mass import multipole_deflection

    ax, ay = LensModel(["MULTIPOLE"]).alpha(X, Y, [{"m": m, "a_m": 0.02, "phi_m": 0.4, "center_x": 0.1,
                                                   "center_y": -0.3}])
    bx, by = multipole_deflection(X, Y, m, 0.02, 0.4, 0.1, -0.3)
    np.testing.assert_allclose(bx, ax, atol=1e-12)
    np.testing.assert_allclose(by, ay, atol=1e-12)
    # at the centre itself the angle is arctan2(0, 0) = 0 for both (the deflection is discontinuous there)
    cx, cy = LensModel(["MULTIPOLE"]).alpha(0.1, -0.3, [{"m": m, "a_m": 0.02, "phi_m": 0.4, "center_x": 0.1,
                                                         "center_y": -0.3}])
    dx, dy = multipole_deflection(np.array([0.1]), np.array([-0.3]), m, 0.02, 0.4, 0.1, -0.3)
    assert abs(float(cy)) > 1e-3
    np.testing.assert_allclose([dx[0], dy[0]], [float(cx), float(cy)], atol=1e-12)
    with pytest.raises(ValueError, match="integer >= 2"):
        multipole_deflection(X, Y, 1, 0.02, 0.0)


def test_convergence_sheet_matches_lenstronomy():
    from lensaudit.lensing.mass import convergence_deflection

    ax, ay = LensModel(["CONVERGENCE"]).alpha(X, Y, [{"kappa": 0.07, "ra_0": 0.0, "dec_0": 0.0}])
    bx, by = convergence_deflection(X, Y, 0.07)
    np.testing.assert_allclose(bx, ax, atol=1e-14)
    np.testing.assert_allclose(by, ay, atol=1e-14)


def test_deflections_and_light_are_computed_in_float64_for_float32_grids():
    """A float32 pixel grid (as images come) gives the float64 answer of the same coordinates."""
    from lensaudit.lensing.light import knots_profile
    from lensaudit.lensing.mass import (
        convergence_deflection,
        epl_deflection,
        multipole_deflection,
        shear_deflection,
        sie_deflection,
    )

    g = np.linspace(-2.3, 2.7, 41, dtype=np.float32)
    x32, y32 = np.meshgrid(g, g + np.float32(0.013))
    x64, y64 = x32.astype(np.float64), y32.astype(np.float64)
    calls = [(sie_deflection, dict(theta_e=1.2, q=0.7, phi=0.3, x0=0.1, y0=-0.2)),
             (sie_deflection, dict(theta_e=1.2, q=1.0, phi=0.3, x0=0.1, y0=-0.2)),
             (shear_deflection, dict(gamma1=0.05, gamma2=-0.03, x0=0.1, y0=-0.2)),
             (epl_deflection, dict(theta_e=1.2, gamma=2.2, q=0.6, phi=0.3, x0=0.1, y0=-0.2)),
             (multipole_deflection, dict(m=4, a_m=0.02, phi_m=0.4, x0=0.1, y0=-0.2)),
             (convergence_deflection, dict(kappa=0.07, x0=0.1, y0=-0.2))]
    for fn, kw in calls:
        for a32, a64 in zip(fn(x32, y32, **kw), fn(x64, y64, **kw), strict=True):
            assert a32.dtype == np.float64, fn.__name__
            np.testing.assert_array_equal(a32, a64, err_msg=fn.__name__)
    k = (np.array([0.2]), np.array([-0.1]), np.array([0.3]), np.array([2.0]))
    k32, k64 = knots_profile(x32, y32, *k), knots_profile(x64, y64, *k)
    assert k32.dtype == np.float64
    np.testing.assert_array_equal(k32, k64)


def test_epl_series_honours_its_tolerance_and_needs_no_log_of_zero():
    from lensaudit.lensing.mass import epl_deflection

    th = np.linspace(0, 2 * np.pi, 721)
    r = np.array([0.3, 1.0, 2.5])
    x, y = (r[:, None] * np.cos(th)).ravel(), (r[:, None] * np.sin(th)).ravel()
    for q in (0.5, 0.2):
        ref = epl_deflection(x, y, 1.3, 2.1, q, 0.4, tol=1e-15)
        got = epl_deflection(x, y, 1.3, 2.1, q, 0.4, tol=1e-3)
        err = np.hypot(got[0] - ref[0], got[1] - ref[1]) / np.hypot(*ref)
        assert err.max() < 1e-4, q     # the remainder after the terms the tolerance asks for
    with np.errstate(all="raise"):     # q = 1 (f = 0): one term, no log(0)
        ax, ay = epl_deflection(x, y, 1.3, 2.1, 1.0, 0.4)
    np.testing.assert_allclose(np.hypot(ax, ay), 1.3 * (np.hypot(x, y) / 1.3) ** (2 - 2.1), rtol=1e-12)


def test_light_and_sheet_defaults_and_offsets():
    from lensaudit.lensing.mass import convergence_deflection

    x, y = np.array([0.3, -1.2, 2.0]), np.array([0.7, 0.4, -0.5])
    # sersic's default orientation is phi = 0 (matters only for q < 1)
    np.testing.assert_array_equal(sersic(x, y, 0.8, 1.5, q=0.5), sersic(x, y, 0.8, 1.5, q=0.5, phi=0.0))
    assert not np.allclose(sersic(x, y, 0.8, 1.5, q=0.5), sersic(x, y, 0.8, 1.5, q=0.5, phi=1.0))
    # a sheet deflects by kappa times the offset from its centre
    ax, ay = convergence_deflection(x, y, 0.1, x0=0.5, y0=-0.25)
    np.testing.assert_allclose(ax, 0.1 * (x - 0.5), rtol=1e-15)
    np.testing.assert_allclose(ay, 0.1 * (y + 0.25), rtol=1e-15)


def test_a_scalar_gaussian_width_is_used_as_given_not_rounded_to_the_positions_dtype():
    """gaussian and gaussian_unit_flux take a scalar sigma (arcsec) as it is: on float32 positions the profile and
    its normalisation are computed with the Python float, not with sigma first rounded to float32 (a per-lens array
    would be). Widths 0.1 and 0.13: the rounding shows in the profile of the first and in the norm of the second."""
    from lensaudit.lensing.light import gaussian, gaussian_unit_flux

    g = np.linspace(-0.5, 0.5, 41, dtype=np.float32)
    x, y = np.meshgrid(g, g)
    for sigma, profile_shows in ((0.1, True), (0.13, False)):
        want = np.exp(-0.5 * (x * x + y * y) / (sigma * sigma))
        assert want.dtype == np.float32
        np.testing.assert_array_equal(gaussian(x, y, sigma), want)
        np.testing.assert_array_equal(gaussian_unit_flux(x, y, sigma), want / (2 * np.pi * sigma * sigma))
        s32 = np.float32(sigma)                  # the test can tell the two apart
        rounded = np.exp(-0.5 * (x * x + y * y) / (s32 * s32))
        assert np.array_equal(rounded, want) is not profile_shows
        assert not np.array_equal(rounded / (2 * np.pi * s32 * s32), want / (2 * np.pi * sigma * sigma))


# ----------------------------------------------------------------------------- fast paths against their definitions
def _epl_definition(x, y, theta_e, gamma, q, phi, x0=0.0, y0=0.0, tol=1e-12):
    """epl_deflection as first written (complex temporaries, the real factor as a complex product)."""
    c, s = np.cos(phi), np.sin(phi)
    dx, dy = np.asarray(x, float) - x0, np.asarray(y, float) - y0
    xr, yr = c * dx + s * dy, -s * dx + c * dy
    t, b = gamma - 1.0, theta_e * np.sqrt(q)
    z = q * xr + 1j * yr
    r = np.maximum(np.abs(z), 1e-12)
    e2iphi = np.where(np.abs(z) > 0, (z / r) ** 2, 1.0)
    f = (1.0 - q) / (1.0 + q)
    term = z / r
    omega = term.copy()
    n_max = 1 if f == 0 else int(np.ceil(np.log(tol) / np.log(f))) + 2
    for n in range(1, max(n_max, 1)):
        term = term * (-f * e2iphi)
        term = term * ((2 * n - (2 - t)) / (2 * n + (2 - t)))
        omega = omega + term
    alpha = 2.0 * b / (1.0 + q) * (b / r) ** (t - 1.0) * omega
    return c * alpha.real - s * alpha.imag, s * alpha.real + c * alpha.imag


def _multipole_definition(x, y, m, a_m, phi_m, x0=0.0, y0=0.0):
    dx, dy = np.asarray(x, float) - x0, np.asarray(y, float) - y0
    r = np.hypot(dx, dy)
    u = np.where(r > 0, (dx + 1j * dy) / np.where(r > 0, r, 1.0), 1.0 + 0j)
    um = u.copy()
    for _ in range(m - 1):
        um = um * u
    um = um * np.exp(-1j * m * phi_m)
    k = a_m / (1.0 - m * m)
    return k * (u.real * um.real + m * u.imag * um.imag), k * (u.imag * um.real - m * u.real * um.imag)


def test_deflection_fast_paths_equal_their_definitions_bit_for_bit():
    """The EPL series' real factors applied to float64 pairs, and multipoles sharing one angle and its powers across
    orders, give the numbers of the plain complex-array code (4-d supersampled grids as the mock traces them, the
    lens centre itself included): the mock's images do not change."""
    from lensaudit.lensing.mass import epl_deflection, multipole_deflection, multipole_deflections

    g = np.arange(-9, 10) * 0.262
    off = ((np.arange(4) + 0.5) / 4 - 0.5) * 0.262
    x = g[None, :, None, None] + off[None, None, None, :] + 0 * g[:, None, None, None]
    y = g[:, None, None, None] + off[None, None, :, None] + 0 * g[None, :, None, None]
    pts = [(x, y), (X, Y), (np.array([0.1, 0.1, 2.0]), np.array([-0.2, 0.3, -1.0]))]   # the centre exactly
    for px, py in pts:
        for te, gamma, q, phi in ((1.7, 1.976, 0.705, -0.11), (0.9, 2.3, 0.35, 1.2), (1.2, 1.8, 1.0, 0.0)):
            got = epl_deflection(px, py, te, gamma, q, phi, 0.1, -0.2)
            ref = _epl_definition(px, py, te, gamma, q, phi, 0.1, -0.2)
            assert all(np.array_equal(a, b) for a, b in zip(got, ref, strict=True)), (te, gamma, q)
        terms = [(3, -0.0126, 0.3), (4, 0.0195, 0.5), (2, 0.01, -0.4), (4, -0.003, 2.0)]   # any order, repeats
        got = multipole_deflections(px, py, terms, 0.1, -0.2)
        assert len(got) == len(terms)
        for (m, a_m, phi_m), pair in zip(terms, got, strict=True):
            ref = _multipole_definition(px, py, m, a_m, phi_m, 0.1, -0.2)
            assert np.array_equal(pair[0], ref[0]) and np.array_equal(pair[1], ref[1]), m
            one = multipole_deflection(px, py, m, a_m, phi_m, 0.1, -0.2)
            assert np.array_equal(one[0], ref[0]) and np.array_equal(one[1], ref[1])
        assert not np.array_equal(got[0][0], got[3][0])
    assert multipole_deflections(X, Y, []) == []
    # the centre defaults to the origin
    for (ax, ay), (bx, by) in zip(multipole_deflections(X, Y, terms), multipole_deflections(X, Y, terms, 0.0, 0.0),
                                  strict=True):
        assert np.array_equal(ax, bx) and np.array_equal(ay, by)
    assert not np.array_equal(multipole_deflections(X, Y, terms)[0][0], multipole_deflections(X, Y, terms, 1.0, 0.0)[0][0])
    assert not np.array_equal(multipole_deflections(X, Y, terms)[0][1], multipole_deflections(X, Y, terms, 0.0, 1.0)[0][1])
    for bad in (1, 2.5):
        with pytest.raises(ValueError, match="integer >= 2"):
            multipole_deflections(X, Y, [(3, 0.01, 0.0), (bad, 0.01, 0.0)])


def _knots_definition(x, y, kx, ky, ksig, kw):
    """knots_profile as first written: every knot on every point."""
    out = np.zeros_like(x, dtype=float)
    for i in range(len(kx)):
        out += kw[i] * gaussian(x - kx[i], y - ky[i], ksig[i]) / (2 * np.pi * ksig[i] ** 2)
    return out


def test_knots_on_a_grid_equal_knots_profile_bit_for_bit():
    """Each knot evaluated only within KNOT_REACH_SIGMA of its centre (exp underflows to 0.0 beyond): on a grid,
    knots_on_grid and knots_profile (which hands grids to it) give the plain definition's sums bit for bit, knots
    near and off the edges and wide ones included; off a grid knots_profile is the definition itself."""
    import lensaudit.lensing.light as light
    from lensaudit.lensing.light import KNOT_REACH_SIGMA, knots_on_grid

    rng = np.random.default_rng(3)
    gx, gy = (np.arange(96) - 47.5) * 0.041, (np.arange(80) - 39.5) * 0.037
    xx, yy = np.meshgrid(gx, gy)
    kx = np.concatenate([rng.normal(0, 1.0, 30), [2.5, -3.0, 9.0, 0.0]])
    ky = np.concatenate([rng.normal(0, 1.0, 30), [-1.6, 1.7, 0.0, 9.0]])
    ks = np.concatenate([rng.uniform(0.015, 0.05, 30), [0.03, 0.04, 0.05, 0.3]])
    kw = rng.exponential(1.0, 34)
    ref = _knots_definition(xx, yy, kx, ky, ks, kw)
    got = knots_on_grid(gx, gy, kx, ky, ks, kw)
    assert np.array_equal(got, ref) and got.shape == (80, 96)
    assert np.array_equal(knots_profile(xx, yy, kx, ky, ks, kw), ref)
    # not grids: scattered points, a descending axis, a row that differs, NaN: the definition
    pts = rng.normal(0, 1, (2, 50, 40))
    for x, y in ((pts[0], pts[1]), (xx[:, ::-1], yy), (xx + np.eye(80, 96) * 1e-3, yy), (np.where(xx > 1, np.nan, xx), yy)):
        assert not light._is_grid(x, y)
        assert np.array_equal(knots_profile(x, y, kx, ky, ks, kw), _knots_definition(x, y, kx, ky, ks, kw),
                              equal_nan=True)
    assert light._is_grid(xx, yy) and not light._is_grid(xx[0], yy[0]) and not light._is_grid(xx, yy[:, :5])
    assert not light._is_grid(xx[:0], yy[:0]) and not light._is_grid(list(xx), yy)
    # the reach is what keeps it exact: a much shorter one misses tails that the definition has
    assert KNOT_REACH_SIGMA >= np.sqrt(2 * 745.2)       # exp(-0.5 reach^2) below float64's smallest subnormal
    assert np.exp(-0.5 * KNOT_REACH_SIGMA ** 2) == 0.0
    saved, light.KNOT_REACH_SIGMA = light.KNOT_REACH_SIGMA, 5.0
    try:
        assert not np.array_equal(knots_on_grid(gx, gy, kx, ky, ks, kw), ref)
        assert not np.array_equal(knots_profile(xx, yy, kx, ky, ks, kw), ref)      # grids do take the fast path
    finally:
        light.KNOT_REACH_SIGMA = saved
    with np.errstate(divide="ignore", invalid="ignore"):    # a zero width: the definition's inf/NaN, not the grid's
        zero = np.array([0.02, 0.0])
        assert np.array_equal(knots_profile(xx, yy, kx[:2], ky[:2], zero, kw[:2]),
                              _knots_definition(xx, yy, kx[:2], ky[:2], zero, kw[:2]), equal_nan=True)
    assert np.array_equal(knots_profile(xx, yy, kx[:0], ky[:0], ks[:0], kw[:0]), np.zeros_like(xx))
    with pytest.raises(ValueError, match="positive"):
        knots_on_grid(gx, gy, kx[:2], ky[:2], np.array([0.02, 0.0]), kw[:2])
    with pytest.raises(ValueError, match="ascending"):
        knots_on_grid(gx[::-1], gy, kx, ky, ks, kw)
    with pytest.raises(ValueError, match="ascending"):
        knots_on_grid(gx, gy[::-1], kx, ky, ks, kw)
    with pytest.raises(ValueError, match="ascending"):              # unsigned axes: no wrap-around of differences
        knots_on_grid(np.array([3, 2, 1], np.uint8), gy, kx, ky, ks, kw)
    for bumpy in (np.array([0.0, 2.0, 1.0, 3.0]), np.array([-1.0, 0.5, 0.2])):   # each value against its predecessor
        with pytest.raises(ValueError, match="ascending"):
            knots_on_grid(bumpy, gy, kx, ky, ks, kw)
        with pytest.raises(ValueError, match="ascending"):
            knots_on_grid(gx, bumpy, kx, ky, ks, kw)
    # float32 grids and parameters are computed in their own dtypes, as the definition computes them; a
    # repeated axis value is still a grid
    f32 = [a.astype(np.float32) for a in (xx, yy, kx, ky, ks, kw)]
    assert np.array_equal(knots_profile(*f32), _knots_definition(*f32))
    assert not np.array_equal(_knots_definition(*f32), ref)
    for ax, ay in ((np.sort(np.concatenate([gx, gx[40:45]])), gy), (gx, np.sort(np.concatenate([gy, gy[30:33]]))),
                   (gx, gy[:1]), (gx[:1], gy)):          # repeated values, one row, one column
        xr, yr = np.meshgrid(ax, ay)
        assert light._is_grid(xr, yr)
        assert np.array_equal(knots_profile(xr, yr, kx, ky, ks, kw), _knots_definition(xr, yr, kx, ky, ks, kw))
