"""The SIE + shear of lensaudit.lensing.mass on batched PyTorch tensors against the same functions on NumPy, lens by lens (and through
them lenstronomy), on every device this machine has."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lenstronomy.LensModel.lens_model import LensModel
from lenstronomy.Util.param_util import phi_q2_ellipticity

from lensaudit.lensing import mass as batched  # one implementation: the same functions on tensors
from lensaudit.lensing.mass import ray_trace, shear_deflection, sie_deflection

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def _params(n=6, seed=0):
    rng = np.random.default_rng(seed)
    p = {"theta_e": rng.uniform(0.5, 3.0, n), "q": np.r_[1.0, 1 - 1e-7, 0.3, rng.uniform(0.4, 0.99, n - 3)],
         "phi": rng.uniform(-np.pi, np.pi, n), "x0": rng.normal(0, 0.2, n), "y0": rng.normal(0, 0.2, n),
         "g1": rng.normal(0, 0.05, n), "g2": rng.normal(0, 0.05, n)}
    g = np.linspace(-4.1, 3.9, 33)
    xx, yy = np.meshgrid(g, g + 0.013)
    return p, np.broadcast_to(xx, (n, *xx.shape)).copy(), np.broadcast_to(yy, (n, *yy.shape)).copy()


def test_batched_sie_shear_and_ray_trace_equal_the_numpy_functions_lens_by_lens(device):
    p, x, y = _params()
    t = {k: torch.as_tensor(v, device=device) for k, v in p.items()}
    X, Y = torch.as_tensor(x, device=device), torch.as_tensor(y, device=device)
    ax, ay = batched.sie_deflection(X, Y, t["theta_e"], t["q"], t["phi"], t["x0"], t["y0"])
    sx, sy = batched.shear_deflection(X, Y, t["g1"], t["g2"], t["x0"], t["y0"])
    bx, by = batched.ray_trace(X, Y, t["theta_e"], t["q"], t["phi"], t["g1"], t["g2"])
    for i in range(len(p["q"])):
        want = sie_deflection(x[i], y[i], p["theta_e"][i], p["q"][i], p["phi"][i], p["x0"][i], p["y0"][i])
        np.testing.assert_allclose(ax[i].cpu().numpy(), want[0], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(ay[i].cpu().numpy(), want[1], rtol=1e-10, atol=1e-10)
        want = shear_deflection(x[i], y[i], p["g1"][i], p["g2"][i], p["x0"][i], p["y0"][i])
        np.testing.assert_allclose(sx[i].cpu().numpy(), want[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(sy[i].cpu().numpy(), want[1], rtol=1e-12, atol=1e-12)
        want = ray_trace(x[i], y[i], p["theta_e"][i], p["q"][i], p["phi"][i], p["g1"][i], p["g2"][i])
        np.testing.assert_allclose(bx[i].cpu().numpy(), want[0], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(by[i].cpu().numpy(), want[1], rtol=1e-10, atol=1e-10)
    assert torch.isfinite(ax).all() and torch.isfinite(ay).all()


def test_batched_sie_against_lenstronomy_in_float32(device):
    p, x, y = _params(seed=3)
    X, Y = torch.as_tensor(x, dtype=torch.float32, device=device), torch.as_tensor(y, dtype=torch.float32, device=device)
    ax, ay = batched.sie_deflection(X, Y, p["theta_e"], p["q"], p["phi"], p["x0"], p["y0"])
    assert ax.dtype == torch.float32
    for i in range(2, len(p["q"])):             # lenstronomy's SIE needs q < 1
        e1, e2 = phi_q2_ellipticity(p["phi"][i], p["q"][i])
        kw = {"theta_E": p["theta_e"][i], "e1": e1, "e2": e2, "center_x": p["x0"][i], "center_y": p["y0"][i]}
        lx, ly = LensModel(["SIE"]).alpha(x[i].ravel(), y[i].ravel(), [kw])
        scale = np.hypot(lx, ly)
        assert np.max(np.abs(ax[i].cpu().numpy().ravel() - lx) / scale) < 1e-4
        assert np.max(np.abs(ay[i].cpu().numpy().ravel() - ly) / scale) < 1e-4


def test_scalar_parameters_broadcast_and_bad_axis_ratios_are_refused():
    x = torch.linspace(-2, 2, 9, dtype=torch.float64).reshape(1, 3, 3).repeat(2, 1, 1)
    a = batched.sie_deflection(x, x.flip(-1), 1.2, 0.7, 0.3)
    d = torch.float64
    b = batched.sie_deflection(x, x.flip(-1), torch.tensor([1.2, 1.2], dtype=d), torch.tensor([0.7, 0.7], dtype=d),
                               torch.tensor([0.3, 0.3], dtype=d))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for bad in (0.0, 1.2, torch.tensor([0.5, -0.1])):
        with pytest.raises(ValueError, match="axis ratio"):
            batched.sie_deflection(x, x, 1.0, bad, 0.0)


def test_sersic_and_gaussian_on_batched_tensors_equal_numpy_and_lenstronomy(device, monkeypatch):
    """One Sersic: the unit-flux profile on a (B, H, W) batch of tensors equals the NumPy call lens by lens, its
    geometry is lenstronomy's SERSIC_ELLIPSE (with lenstronomy's approximate b_n), and each integrates to 1."""
    from lenstronomy.LightModel.light_model import LightModel

    import lensaudit.lensing.light as light

    p, x, y = _params()
    n = np.array([0.6, 1.0, 2.5, 4.0, 1.5, 3.0])
    re = np.array([0.35, 0.3, 0.5, 0.8, 0.25, 0.4])
    X, Y = torch.as_tensor(x, device=device), torch.as_tensor(y, device=device)
    t = {k: torch.as_tensor(v, device=device) for k, v in {"re": re, "n": n, "q": p["q"], "phi": p["phi"]}.items()}
    got = light.sersic_unit_flux(X, Y, t["re"], t["n"], t["q"], t["phi"]).cpu().numpy()
    gauss = light.gaussian_unit_flux(X, Y, t["re"]).cpu().numpy()
    for i in range(len(n)):
        one = light.sersic_unit_flux(x[i], y[i], re[i], n[i], p["q"][i], p["phi"][i])
        np.testing.assert_allclose(got[i], one, rtol=1e-12, atol=0)
        r2 = x[i] ** 2 + y[i] ** 2
        np.testing.assert_allclose(gauss[i], np.exp(-0.5 * r2 / re[i] ** 2) / (2 * np.pi * re[i] ** 2), rtol=1e-12)
    # unit flux: a fine grid sums to 1 (n <= 1.5 so the cusp and the wings are resolved on it)
    g = np.linspace(-12, 12, 1201)
    gx, gy = np.meshgrid(g, g)
    lo = n <= 1.5
    Gx = torch.as_tensor(np.broadcast_to(gx, (int(lo.sum()), *gx.shape)).copy(), device=device)
    Gy = torch.as_tensor(np.broadcast_to(gy, (int(lo.sum()), *gy.shape)).copy(), device=device)
    tot = light.sersic_unit_flux(Gx, Gy, t["re"][lo], t["n"][lo], t["q"][lo], t["phi"][lo]).sum(dim=(1, 2)) * (g[1] - g[0]) ** 2
    np.testing.assert_allclose(tot.cpu().numpy(), 1.0, rtol=2e-3)
    monkeypatch.setattr(light, "sersic_b", lambda nn: 1.9992 * np.asarray(light.to_numpy(nn)) - 0.3271)
    prof = light.sersic(X, Y, t["re"], t["n"], t["q"], t["phi"]).cpu().numpy()
    lm = LightModel(["SERSIC_ELLIPSE"])
    for i in range(len(n)):
        e1, e2 = phi_q2_ellipticity(p["phi"][i], p["q"][i])
        ref = lm.surface_brightness(x[i], y[i], [{"amp": 1.0, "R_sersic": re[i], "n_sersic": n[i], "e1": e1, "e2": e2,
                                                  "center_x": 0.0, "center_y": 0.0}])
        np.testing.assert_allclose(prof[i], ref, rtol=1e-4, atol=1e-12)


def test_array_dispatch_helpers():
    """Plain Python numbers and lists dispatch to NumPy; a per-lens parameter takes the positions' dtype and
    keeps a scalar 0-d; parameters leave as float64 NumPy, also from a tensor that carries a gradient."""
    from lensaudit.lensing.arrays import namespace, per_lens, to_numpy
    assert namespace(2.0) is namespace(np.zeros(3)) and namespace([1, 2]) is namespace(np.zeros(3))
    like = np.zeros((4, 5, 5), np.float32)
    xp = namespace(like)
    t = per_lens(np.arange(4.0), like, xp)
    assert t.dtype == np.float32 and t.shape == (4, 1, 1)
    s = per_lens(1.5, like, xp)
    assert s.ndim == 0 and s.dtype == np.float32
    ts = per_lens(1.5, torch.zeros((4, 5, 5), dtype=torch.float64), namespace(torch.zeros(1)))
    assert ts.ndim == 0 and ts.dtype == torch.float64
    out = to_numpy(torch.tensor([1.0, 2.0], requires_grad=True))
    assert out.dtype == np.float64 and out.tolist() == [1.0, 2.0]
    assert to_numpy([1, 2]).dtype == np.float64


def test_batched_shear_keeps_per_lens_parameters_in_torch():
    """Per-lens shear parameters (B,) stay torch tensors through the broadcasting (no round trip through NumPy): the
    deflection is differentiable in them, as on a GPU it must stay on the device."""
    x = torch.linspace(0.5, 2.5, 5, dtype=torch.float64).repeat(3, 1)
    g1 = torch.tensor([0.01, 0.02, 0.03], dtype=torch.float64, requires_grad=True)
    g2 = torch.tensor([0.0, -0.01, 0.02], dtype=torch.float64, requires_grad=True)
    ax, ay = shear_deflection(x, 0.5 * x, g1, g2)
    (ax.sum() + ay.sum()).backward()
    assert (g1.grad.abs() > 0).all() and (g2.grad.abs() > 0).all()


def test_batched_sie_gradients_stay_finite_in_a_batch_mixing_spherical_and_elliptical_lenses():
    """A batch with a q = 1 lens and an elliptical one takes both branches and picks per lens; the elliptical formula
    divides by e = sqrt(1 - q^2), so the spherical lens's unused elliptical branch must be evaluated at a finite stand-in
    q: otherwise its inf/NaN reaches every gradient through torch.where (0 * inf), and a differentiable fit or a
    GPU engine that back-propagates through the ray trace gets NaN."""
    x = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64).repeat(2, 1)
    te = torch.tensor([1.2, 1.5], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([1.0, 0.6], dtype=torch.float64, requires_grad=True)
    ax, ay = sie_deflection(x, 0.3 * x + 0.1, te, q, torch.tensor([0.2, 0.7], dtype=torch.float64))
    (ax.sum() + ay.sum()).backward()
    assert torch.isfinite(te.grad).all() and torch.isfinite(q.grad).all()
    assert (te.grad.abs() > 0).all()
    # and the spherical lens's gradient is the SIS's: d(alpha)/d(theta_e) = x / r summed over the positions
    xs, ys = x[0], 0.3 * x[0] + 0.1
    r = torch.hypot(xs, ys)
    assert te.grad[0].item() == pytest.approx(((xs + ys) / r).sum().item(), rel=1e-9)


def test_the_sie_branch_is_found_once_per_batch_and_given_back_gives_the_same_deflections(device):
    """``sie_branch`` names the formulas a batch needs (checking q in (0, 1]); given to ``sie_deflection`` or
    ``ray_trace`` it gives bit for bit what they find themselves, so a compiled caller can find it on the host."""
    from lensaudit.lensing.mass import Q_SPHERICAL, sie_branch

    p, x, y = _params()
    X, Y = torch.as_tensor(x, device=device), torch.as_tensor(y, device=device)
    cases = {"mixed": p["q"], "spherical": np.r_[1.0, 1 - 1e-7, 1.0, 1.0, 1.0, 1.0],
             "elliptical": np.r_[0.3, 0.5, Q_SPHERICAL, 0.9, 0.99, 0.7]}
    for want, q in cases.items():
        qt = torch.as_tensor(q, device=device)
        assert sie_branch(qt) == sie_branch(q) == want
        a = sie_deflection(X, Y, p["theta_e"], qt, p["phi"], p["x0"], p["y0"])
        b = sie_deflection(X, Y, p["theta_e"], qt, p["phi"], p["x0"], p["y0"], branch=want)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        r = ray_trace(X, Y, p["theta_e"], qt, p["phi"], p["g1"], p["g2"], branch=want)
        assert all(torch.equal(u, v) for u, v in zip(r, ray_trace(X, Y, p["theta_e"], qt, p["phi"], p["g1"], p["g2"]), strict=True))
    assert sie_branch(0.5) == "elliptical" and sie_branch(1.0) == "spherical"
    for bad in (0.0, 1.0 + 1e-6, -0.2):
        with pytest.raises(ValueError, match="axis ratio q outside"):
            sie_branch(np.r_[0.5, bad])
        with pytest.raises(ValueError, match="axis ratio q outside"):
            sie_deflection(x[:2], y[:2], 1.0, np.r_[0.5, bad], 0.0)
    with pytest.raises(ValueError, match="branch 'round' is not spherical, elliptical or mixed"):
        sie_deflection(X, Y, p["theta_e"], p["q"], p["phi"], branch="round")
    # a wrong branch is the caller's error, and it shows: the elliptical formula at q = 1 is 0/0
    assert not torch.isfinite(sie_deflection(X[:1], Y[:1], 1.0, 1.0, 0.0, branch="elliptical")[0]).all()
    assert not torch.isfinite(ray_trace(X[:1], Y[:1], 1.0, 1.0, 0.0, branch="elliptical")[0]).all()   # passed on


def test_sersic_constants_given_by_the_caller_are_the_ones_used():
    """``sersic(b=)`` and ``sersic_unit_flux(b=, total=)``: the values the functions would compute give the same
    profile bit for bit; other values change it (they are read, not ignored)."""
    from lensaudit.lensing.light import sersic, sersic_b, sersic_total, sersic_unit_flux

    x = torch.linspace(-2, 2, 41, dtype=torch.float32).repeat(3, 1)
    y = 0.4 * x + 0.1
    re, n = torch.tensor([0.3, 0.8, 1.5]), torch.tensor([0.7, 1.0, 4.0])
    b, tot = sersic_b(n), sersic_total(re, n)
    assert torch.equal(sersic(x, y, re, n, 0.6, 0.2), sersic(x, y, re, n, 0.6, 0.2, b=b))
    assert torch.equal(sersic_unit_flux(x, y, re, n, 0.6, 0.2), sersic_unit_flux(x, y, re, n, 0.6, 0.2, b=b, total=tot))
    assert not torch.equal(sersic(x, y, re, n, 0.6, 0.2), sersic(x, y, re, n, 0.6, 0.2, b=b * 1.01))
    assert torch.allclose(sersic_unit_flux(x, y, re, n, 0.6, 0.2, b=b, total=2 * tot),
                          sersic_unit_flux(x, y, re, n, 0.6, 0.2) / 2, rtol=1e-6)
