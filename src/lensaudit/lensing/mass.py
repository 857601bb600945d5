"""Lens mass profiles as pure functions over arrays (angles in arcsec).

SIE (singular isothermal ellipsoid, zero core) + external shear. Convention: the Einstein
radius ``theta_e`` is that of the intermediate-axis normalisation, so q -> 1 gives the SIS
deflection ``theta_e * x / |x|`` exactly (Kormann et al. 1994; Keeton 2001, eq. for the SIE
with s = 0). ``q`` is the minor/major axis ratio of the mass, ``phi`` the position angle of
the major axis in radians, counter-clockwise from the +x axis of the frame.
"""

from __future__ import annotations

import numpy as np

from lensaudit.lensing.arrays import as_positions, namespace, per_lens, to_numpy

#: Axis ratios above this use the SIS formula (the elliptical one is 0/0 at q = 1).
Q_SPHERICAL = 1 - 1e-6


def sie_branch(q) -> str:
    """Which of :func:`sie_deflection`'s formulas a batch of axis ratios needs: ``"spherical"`` (every q above
    :data:`Q_SPHERICAL`), ``"elliptical"`` (none) or ``"mixed"``; checks q in (0, 1]. Reads the values on the host
    (a GPU synchronises): call it once per batch, outside compiled code."""
    xp = namespace(q)
    q = as_positions(q, xp)                       # compared in its own dtype, as sie_deflection compares it
    if bool(xp.any((q <= 0) | (q > 1))):
        raise ValueError(f"sie_deflection: axis ratio q outside (0, 1] ({to_numpy(q).ravel()[:5]})")
    sph = q > Q_SPHERICAL
    return "spherical" if bool(xp.all(sph)) else "mixed" if bool(xp.any(sph)) else "elliptical"


def sie_deflection(x, y, theta_e, q, phi, x0=0.0, y0=0.0, *, branch: str | None = None):
    """Deflection (alpha_x, alpha_y) in arcsec of an SIE at (x0, y0) for image positions (x, y).

    NumPy or PyTorch (:mod:`lensaudit.lensing.arrays`): scalar parameters, or for a batch of lenses
    parameters of shape (B,) and positions of shape (B, ...). ``q`` in (0, 1]. ``branch``: the batch's
    :func:`sie_branch`, when the caller has it (then no parameter value is read on the host, so torch.compile
    traces this function as one graph and a GPU does not synchronise); None: found (and q checked) here.
    """
    xp = namespace(x)
    x, y = as_positions(x, xp), as_positions(y, xp)
    te, q, phi = per_lens(theta_e, x, xp), per_lens(q, x, xp), per_lens(phi, x, xp)
    if branch is None:
        branch = sie_branch(q)
    elif branch not in ("spherical", "elliptical", "mixed"):
        raise ValueError(f"sie_deflection: branch {branch!r} is not spherical, elliptical or mixed")
    dx, dy = x - per_lens(x0, x, xp), y - per_lens(y0, x, xp)
    c, s = xp.cos(phi), xp.sin(phi)
    xr, yr = c * dx + s * dy, -s * dx + c * dy
    spherical = q > Q_SPHERICAL
    any_sph, all_sph = branch != "elliptical", branch == "spherical"
    if any_sph:
        r = xp.hypot(xr, yr) + 1e-12
        sis_x, sis_y = te * xr / r, te * yr / r
    if not all_sph:                 # each branch is computed only when some lens needs it (per-lens results unchanged)
        qe = xp.where(spherical, xp.full_like(q, 0.5), q) if any_sph else q   # keeps the unused branch finite
        e = xp.sqrt(1.0 - qe * qe)
        psi = xp.sqrt(qe * qe * xr * xr + yr * yr) + 1e-12
        f = te * xp.sqrt(qe) / e
        ell_x = f * xp.atan(e * xr / psi)
        ell_y = f * xp.atanh(xp.clip(e * yr / psi, min=-1 + 1e-12, max=1 - 1e-12))
    if all_sph:
        axr, ayr = sis_x, sis_y
    elif not any_sph:
        axr, ayr = ell_x, ell_y
    else:
        axr, ayr = xp.where(spherical, sis_x, ell_x), xp.where(spherical, sis_y, ell_y)
    return c * axr - s * ayr, s * axr + c * ayr


def shear_deflection(x, y, gamma1, gamma2, x0=0.0, y0=0.0):
    """Deflection of an external shear (gamma1, gamma2) about (x0, y0), arcsec (NumPy or PyTorch, batched)."""
    xp = namespace(x)
    x, y = as_positions(x, xp), as_positions(y, xp)
    g1, g2 = per_lens(gamma1, x, xp), per_lens(gamma2, x, xp)
    dx, dy = x - per_lens(x0, x, xp), y - per_lens(y0, x, xp)
    return g1 * dx + g2 * dy, g2 * dx - g1 * dy


def ray_trace(x, y, theta_e, q, phi, gamma1=0.0, gamma2=0.0, x0=0.0, y0=0.0, *, branch: str | None = None):
    """Source-plane positions beta = x - alpha(x) for an SIE + shear centred at (x0, y0) (NumPy or PyTorch);
    ``branch`` as in :func:`sie_deflection`."""
    ax, ay = sie_deflection(x, y, theta_e, q, phi, x0, y0, branch=branch)
    sx, sy = shear_deflection(x, y, gamma1, gamma2, x0, y0)
    return x - ax - sx, y - ay - sy


def _rotate(dx: np.ndarray, dy: np.ndarray, phi: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(phi), np.sin(phi)
    return c * dx + s * dy, -s * dx + c * dy


def _unrotate(ax: np.ndarray, ay: np.ndarray, phi: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(phi), np.sin(phi)
    return c * ax - s * ay, s * ax + c * ay


def epl_deflection(x: np.ndarray, y: np.ndarray, theta_e: float, gamma: float, q: float, phi: float,
                   x0: float = 0.0, y0: float = 0.0, tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Deflection (arcsec) of an elliptical power-law mass (EPL), convergence
    kappa = (3 - gamma)/2 (theta_e / sqrt(q x'^2 + y'^2 / q))^(gamma - 1) in the major-axis frame.

    Tessore & Metcalf (2015, A&A 580, A79), eqs. 13 and 22-29: the angular part is the
    hypergeometric series 2F1(1, t/2; 2 - t/2; -f e^{2i varphi}), f = (1 - q)/(1 + q), t = gamma - 1,
    summed with its two-term recurrence until terms fall below ``tol`` (f^n; at most a few hundred
    terms for q >= 0.05). gamma = 2 is the SIE of :func:`sie_deflection` (same theta_e convention,
    the intermediate-axis normalisation lenstronomy's ``EPL`` uses). Written by hand because no
    array library ships it (lenstronomy calls scipy's complex ``hyp2f1`` per point).
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"epl_deflection: axis ratio q={q} outside (0, 1]")
    if not 1.0 < gamma < 3.0:
        raise ValueError(f"epl_deflection: slope gamma={gamma} outside (1, 3)")
    xr, yr = _rotate(np.asarray(x, float) - x0, np.asarray(y, float) - y0, phi)
    t = gamma - 1.0
    b = theta_e * np.sqrt(q)
    z = q * xr + 1j * yr
    az = np.abs(z)
    r = np.maximum(az, 1e-12)
    term = z / r                                                  # Omega_0 = e^{i varphi}
    e2iphi = np.where(az > 0, term**2, 1.0)                       # e^{2 i varphi}, varphi the elliptical angle
    f = (1.0 - q) / (1.0 + q)
    omega = term.copy()
    n_max = 1 if f == 0 else int(np.ceil(np.log(tol) / np.log(f))) + 2
    ratio = -f * e2iphi
    # in place, no temporary per term; a real factor scales the real and imaginary parts as float64 pairs (what a
    # complex product with (c + 0j) computes, without its four products and two sums)
    pairs = term.view(np.float64)
    for n in range(1, max(n_max, 1)):
        np.multiply(term, ratio, out=term)
        np.multiply(pairs, (2 * n - (2 - t)) / (2 * n + (2 - t)), out=pairs)
        np.add(omega, term, out=omega)
    scale = 2.0 * b / (1.0 + q) * (b / r) ** (t - 1.0)            # real: alpha = scale * omega, part by part
    return _unrotate(scale * omega.real, scale * omega.imag, phi)


def multipole_deflection(x: np.ndarray, y: np.ndarray, m: int, a_m: float, phi_m: float,
                         x0: float = 0.0, y0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Deflection (arcsec) of a circular multipole of order m >= 2 (Xu et al. 2013, appendix B):
    potential psi = r a_m / (1 - m^2) cos(m (theta - phi_m)); ``a_m`` in arcsec (a percent of theta_E
    is a typical galaxy's boxiness or diskiness for m = 4), ``phi_m`` its orientation (radians)."""
    return multipole_deflections(x, y, [(m, a_m, phi_m)], x0, y0)[0]


def multipole_deflections(x: np.ndarray, y: np.ndarray, terms, x0: float = 0.0,
                          y0: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`multipole_deflection` of each ``(m, a_m, phi_m)`` in ``terms`` about one centre, as a list in the
    order given: the angle e^{i theta} and its powers are computed once for all orders (each order's numbers are
    those of its own call)."""
    for m, _, _ in terms:
        if int(m) != m or m < 2:
            raise ValueError(f"multipole_deflection: order m={m} must be an integer >= 2")
    terms = [(int(m), float(a_m), float(phi_m)) for m, a_m, phi_m in terms]
    if not terms:
        return []
    dx, dy = np.asarray(x, float) - x0, np.asarray(y, float) - y0
    # e^{i theta} and e^{i m (theta - phi_m)} without trigonometric calls per point (theta = 0 at the centre,
    # as arctan2(0, 0)); u^m by repeated products, each power once for every order that needs it
    r = np.hypot(dx, dy)
    u = np.where(r > 0, (dx + 1j * dy) / np.where(r > 0, r, 1.0), 1.0 + 0j)
    c, s = np.ascontiguousarray(u.real), np.ascontiguousarray(u.imag)
    orders, powers, um = {m for m, _, _ in terms}, {}, u.copy()
    for p in range(2, max(orders) + 1):
        um *= u
        if p in orders:
            powers[p] = um.copy()
    out = []
    for m, a_m, phi_m in terms:
        um = powers[m] * np.exp(-1j * m * phi_m)
        cm, sm = np.ascontiguousarray(um.real), np.ascontiguousarray(um.imag)
        k = a_m / (1.0 - m * m)
        out.append((k * (c * cm + m * s * sm), k * (s * cm - m * c * sm)))
    return out


def convergence_deflection(x: np.ndarray, y: np.ndarray, kappa: float, x0: float = 0.0,
                           y0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Deflection (arcsec) of a uniform convergence sheet ``kappa`` (a group or cluster environment)."""
    return kappa * (np.asarray(x, float) - x0), kappa * (np.asarray(y, float) - y0)
