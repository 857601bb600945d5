"""The mock's deep-field stamp library (for the ``stamps`` injection family).

A real-data user brings deep space-telescope galaxy stamps; the mock writes a library from its own
source generator (:func:`lensaudit.mock.population.draw_sources` and
:func:`lensaudit.sources.procedural.render_rich`) under the seed stream ``mock.stamp_library``: the same
kind of galaxies as the lensed sources, but never the sources of its true lenses. Each source is
resampled onto a fine grid, convolved with a small Gaussian PSF and given a little white noise,
as a deep-field library is. The file format is :mod:`lensaudit.sources.library`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from lensaudit.mock.config import MockConfig
from lensaudit.mock.population import draw_sources
from lensaudit.sources.library import write_stamp_library
from lensaudit.sources.procedural import render_rich
from lensaudit.survey.constants import MAG_ZEROPOINT
from lensaudit.utils.seeds import derive_seed, rng


def build_stamp_library(cfg: MockConfig, out: str | Path) -> Path | None:
    """Write the mock's stamp library to ``out`` (a FITS file); None when ``n_stamps`` is 0."""
    st = cfg.stamp_library
    if st.n_stamps == 0:
        return None
    seed = derive_seed(cfg.seed, "mock.stamp_library") % 2**32
    theta = np.ones(st.n_stamps)
    params = draw_sources(cfg, theta, seed, rich=True)
    params["src_x"] = 0.0
    params["src_y"] = 0.0
    # libraries are selected bright in the deep imaging (S/N > ~100), so their shapes are not noise; the
    # injection family rescales each stamp to the magnitude it draws
    params["src_rmag"] = rng(seed, "stamp_mag").uniform(*st.mag_r_range, st.n_stamps)
    g = (np.arange(st.size_pix) - (st.size_pix - 1) / 2) * st.pixscale_arcsec
    xx, yy = np.meshgrid(g, g)
    noise_rng = rng(cfg.seed, "mock.stamp_library.noise")
    sigma_pix = 10 ** (-0.4 * (st.sb_limit_1sigma - MAG_ZEROPOINT)) * st.pixscale_arcsec        # nmgy per pixel
    psf_sigma = st.psf_fwhm_arcsec / (2 * np.sqrt(2 * np.log(2))) / st.pixscale_arcsec
    images = np.empty((st.n_stamps, 3, st.size_pix, st.size_pix), np.float64)
    for i, p in enumerate(params.to_dict("records")):
        src = render_rich(p, rng(seed, "stamp", i))
        img = src.sample(xx, yy) * st.pixscale_arcsec**2                                # nmgy per stamp pixel
        img = np.stack([gaussian_filter(b, psf_sigma, mode="constant") for b in img])
        images[i] = img + noise_rng.normal(0, sigma_pix, img.shape)
    flux = images.sum(axis=(2, 3))
    keep = (flux > 0).all(axis=1)
    meta = pd.DataFrame({"ID": [f"mockstamp_{i:05d}" for i in range(st.n_stamps)], "Z": params["z_source"],
                         "MAG_G": MAG_ZEROPOINT - 2.5 * np.log10(np.clip(flux[:, 0], 1e-30, None)),
                         "MAG_R": MAG_ZEROPOINT - 2.5 * np.log10(np.clip(flux[:, 1], 1e-30, None)),
                         "MAG_Z": MAG_ZEROPOINT - 2.5 * np.log10(np.clip(flux[:, 2], 1e-30, None)),
                         "RE_INTRINSIC": params["src_re"], "RED": params["src_red"].astype(float)})[keep]
    out = Path(out)
    return write_stamp_library(out, images[keep], st.pixscale_arcsec, meta.reset_index(drop=True),
                               header={"ORIGIN": "lensaudit mock", "PSFFWHM": st.psf_fwhm_arcsec})


__all__ = ["build_stamp_library"]
