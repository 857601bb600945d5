"""``lensaudit inject``: a handful of injections of one family into hosts of a selection config, to look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lensaudit.artifacts import InjectExamplesDir, read_manifest, write_table
from lensaudit.cutouts import CutoutStore
from lensaudit.errors import InputError
from lensaudit.inject import InjectionEngine, build_family, draw_parameters
from lensaudit.selection.config import SelectionConfig
from lensaudit.selection.hosts import select_hosts
from lensaudit.survey.constants import CUTOUT_SIZE, MAG_ZEROPOINT
from lensaudit.utils.memory import check_plan


def inject_examples(config: str, family: str, n: int, out: Path, seed: int = 0) -> dict:
    """``lensaudit inject``: ``n`` injections of ``family`` (priors of the config, hosts drawn from its audited
    splits' negatives) written as ``injected.fits`` (n, 3, N, N nanomaggies), their hosts as ``hosts.fits``,
    the records as ``records.parquet`` and a gallery (host above, injected below) as ``gallery.png``."""
    from astropy.io import fits

    from lensaudit.config import load_config
    from lensaudit.utils.display import image_grid
    from lensaudit.utils.hashing import hashed_uniform
    from lensaudit.utils.io import atomic_path

    cfg = load_config(config, SelectionConfig)
    fams = {f.name: f for f in cfg.families}
    if family not in fams:
        raise InputError(f"{config}: no family {family!r} (has {sorted(fams)})")
    if n < 1:
        raise InputError("inject: --n must be at least 1")
    check_plan(n * (3 * CUTOUT_SIZE * CUTOUT_SIZE * 4 * 4 + 2000), f"inject: {n:,} injections (cutouts, hosts, "
               "records and FITS copies held at once)", "ask for fewer (--n) and run several times")
    store = CutoutStore(cfg.store)
    manifest = read_manifest(cfg.manifest, require=("id", "split", "label"))
    hosts = select_hosts(manifest, cfg.splits, store.ids())
    fam = build_family(fams[family])
    params = draw_parameters(cfg.priors, fams[family], seed, np.arange(n), n_stamps=fam.n_stamps())
    rows = np.minimum((hashed_uniform(seed, np.arange(n), 7) * len(hosts)).astype(int), len(hosts) - 1)
    h = hosts.iloc[rows]
    cut = store.get(list(h["id"]))
    img, rec = InjectionEngine(fam, cfg.engine).inject(cut, h[["host_psfsize_g", "host_psfsize_r",
                                                               "host_psfsize_z"]].to_numpy(float), params)
    rec["host_id"] = h["id"].to_numpy()
    od = InjectExamplesDir(out)
    od.root.mkdir(parents=True, exist_ok=True)
    for path, arr in ((od.injected, img), (od.hosts, cut)):
        hdu = fits.PrimaryHDU(arr.astype(np.float32))
        hdu.header["BUNIT"] = ("nanomaggy", f"per pixel, AB zeropoint {MAG_ZEROPOINT}")
        hdu.header["BANDS"] = "grz"
        hdu.header["FAMILY"] = family
        with atomic_path(path) as tmp:
            hdu.writeto(tmp)
    write_table(rec, od.records)
    k = min(n, 8)
    labels = [f"host {i}" for i in range(k)] + [f"theta_E {r.theta_e:.2f} r {r.arc_mag_r:.1f}"
                                                 for r in rec.iloc[:k].itertuples()]
    image_grid(list(cut[:k]) + list(img[:k]), labels, od.gallery, ncol=k, crop=48)
    return {"out": str(out), "n": n, "family": family, "median_arc_snr": float(rec["arc_snr"].median())}


__all__ = ["inject_examples"]
