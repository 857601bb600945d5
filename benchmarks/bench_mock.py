"""Benchmark: mock-survey rendering rate (101x101 g,r,z cutouts/s) on this machine's cores.

Renders random galaxy-centred cutouts in one process and in a pool of ``--workers``
processes (default: all cores, 2 here). Writes ``benchmarks/results/mock_render.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from lensaudit.mock.config import MockConfig
from lensaudit.mock.render import load_renderer
from lensaudit.mock.server import CutoutRequest
from lensaudit.mock.survey import build_survey
from lensaudit.utils.io import atomic_write_json
from lensaudit.utils.provenance import run_info

OUT = Path(__file__).resolve().parent / "results" / "mock_render.json"
_R = None


def _init(root: str) -> None:
    global _R
    _R = load_renderer(root)


def _render_many(coords: list[tuple[float, float]]) -> int:
    for ra, dec in coords:
        _R(CutoutRequest(ra, dec, 101, 101, 0.262, "grz", "ls-dr10", False))
    return len(coords)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--shared-data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        build_survey(MockConfig(area_deg2=0.25, seed=1), d, Path(a.shared_data))
        _init(d)
        src = _R.src
        rng = np.random.default_rng(0)
        pick = src.iloc[rng.choice(len(src), a.n, replace=False)]
        coords = list(zip(pick.ra.astype(float), pick.dec.astype(float), strict=True))
        t0 = time.perf_counter()
        _render_many(coords[: a.n // 3])
        single = (a.n // 3) / (time.perf_counter() - t0)
        chunks = [coords[i :: a.workers * 4] for i in range(a.workers * 4)]
        with ProcessPoolExecutor(a.workers, initializer=_init, initargs=(d,)) as pool:
            list(pool.map(_render_many, [c[:1] for c in chunks]))  # warm up
            t0 = time.perf_counter()
            n = sum(pool.map(_render_many, chunks))
            multi = n / (time.perf_counter() - t0)
    res = {"cutouts_per_s_one_process": single, "cutouts_per_s_pool": multi, "workers": a.workers,
           "target_cutouts_per_s": 200, "meets_target": bool(multi >= 200), "n": a.n,
           "note": "galaxy-centred 101x101 g,r,z stamps incl. PSF convolution, noise, Lanczos resampling",
           "run_info": run_info(seeds={"survey": 1, "pick": 0})}
    atomic_write_json(OUT, res)
    print(json.dumps({k: v for k, v in res.items() if k != "run_info"}, indent=2))


if __name__ == "__main__":
    main()
