"""Benchmark: stamps per second cut from DR10-format coadd files by ``CoaddReader``, against astropy's
``Cutout2D`` (nearest-pixel slicing, no resampling: a lower bound on what cutting costs) in the same run.

Writes 2 x 2 bricks of real size (3600 x 3600 pixels, g, r, z, RICE-compressed like DR10's images), then
cuts stamps at random positions inside them: first with cold caches (every brick decompressed when first
touched), then warm (positions sorted by brick, as a survey-scale job would order them). Writes
``benchmarks/results/coadd.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "results" / "coadd.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    a = ap.parse_args()
    from astropy.nddata import Cutout2D
    from astropy.wcs import WCS

    from lensaudit.cutouts.coadd import CoaddReader
    from lensaudit.survey.coadd import (
        BRICK_IMAGE_PIX,
        brick_wcs_header,
        coadd_path,
        read_coadd_image,
        write_coadd_image,
    )
    from lensaudit.utils.io import atomic_write_json
    from lensaudit.utils.provenance import run_info

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = []
        t0 = time.perf_counter()
        for j in range(2):
            for i in range(2):
                ra1, dec1 = 150.0 + 0.25 * i, 1.0 + 0.25 * j
                name = f"{int((ra1 + 0.125) * 10):04d}p{int((dec1 + 0.125) * 10):03d}"
                rows.append({"brickname": name, "ra1": ra1, "ra2": ra1 + 0.25, "dec1": dec1, "dec2": dec1 + 0.25})
                hdr = brick_wcs_header(ra1 + 0.125, dec1 + 0.125)
                for band in "grz":
                    img = rng.normal(0, 0.01, (BRICK_IMAGE_PIX, BRICK_IMAGE_PIX)).astype(np.float32)
                    write_coadd_image(coadd_path(root, name, band), img, hdr, band)
        write_s = time.perf_counter() - t0
        bricks = pd.DataFrame(rows)
        ra = rng.uniform(150.01, 150.49, a.n)
        dec = rng.uniform(1.01, 1.49, a.n)
        reader = CoaddReader(root, bricks, cache_images=12)
        t0 = time.perf_counter()
        for r, d in zip(ra, dec, strict=True):
            reader.cutout(r, d)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        for r, d in zip(ra, dec, strict=True):
            reader.cutout(r, d)
        warm = time.perf_counter() - t0
        # reference: astropy Cutout2D on the same (already decoded) images, nearest pixel, one brick per stamp
        imgs = {}
        for b in rows:
            imgs[b["brickname"]] = [read_coadd_image(coadd_path(root, b["brickname"], band)) for band in "grz"]
        t0 = time.perf_counter()
        for r, d in zip(ra, dec, strict=True):
            b = bricks[(bricks.ra1 <= r) & (bricks.ra2 > r) & (bricks.dec1 <= d) & (bricks.dec2 > d)].iloc[0]
            for img, w in imgs[b["brickname"]]:
                Cutout2D(img, (r, d), 101, wcs=w if isinstance(w, WCS) else None, mode="partial", fill_value=0.0)
        ref = time.perf_counter() - t0
    res = {"n_stamps": a.n, "bricks": 4, "brick_image_pix": BRICK_IMAGE_PIX, "bands": "grz",
           "write_12_images_s": round(write_s, 2),
           "coadd_reader_cold_stamps_per_s": round(a.n / cold, 1), "coadd_reader_warm_stamps_per_s": round(a.n / warm, 1),
           "astropy_cutout2d_stamps_per_s": round(a.n / ref, 1), "ratio_warm_vs_cutout2d": round(ref / warm, 3),
           "note": "CoaddReader resamples every pixel with Lanczos-3 through both WCSs (the service's stamp); "
                   "Cutout2D only slices the nearest pixels (no resampling), so it bounds the cost from below. Cold "
                   "includes decompressing the 12 brick images once.",
           "run_info": run_info(seeds={"bench": 0})}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT, res)
    print(res)


if __name__ == "__main__":
    main()
