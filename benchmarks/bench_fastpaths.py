"""Benchmark: each exact fast path against the reference path it replaces, timed in one process, interleaved.

On a shared 2-core machine the rate of a whole benchmark can drift by 20-30 percent between minutes; a paired
comparison does not: reference and fast path run alternately on the same inputs, round after round, and the
figure is the median over rounds of the per-round ratio (fast / reference time), with each path's best round.
Every pair is first checked to give the same numbers (bit for bit), so only the speed differs:

- ``lens_centred_render``: whole lens-centred 101 x 101 g,r,z cutouts of a 1 deg^2 mock, with the m = 3 and 4
  multipoles sharing one angle (``lensing.mass.multipole_deflections``), knots evaluated within their reach
  (``lensing.light.knots_on_grid``, which ``knots_profile`` hands grids to) and the source field's cached
  frequency grid, against one multipole call per order, every knot on every pixel and the grid computed per field;
- ``client_read``: ``survey.cutout_fits.read_cutout_fits`` of the service's bytes as the fetch client reads them
  (the pixels from the buffer, the checked cards read without building astropy's header) against ``fits.open``;
- ``qa_assess``: ``cutouts.qa.assess`` with ``median_of_finite`` against ``np.median``;
- ``stamp_library_open``: ``StampLibrary.open`` of the XDF library's half B (the stamps family's), the negative-light
  rule screened for every stamp at once (``sources.library.may_have_negative_excess``) and the half sliced from its
  validated library, against every stamp judged one by one and the half validated again;
- ``sweep_write``: ``mock.survey.write_sweeps`` of a 4 deg^2 mock (each box's rows filled block by block, converted
  in place, the empty table header built once per dtype) against the rows filled column by column, copied before
  conversion and the header built per file (every file compared byte for byte);
- ``sweep_read``: ``survey.sweepio.read_sweep`` of those files (each distinct TYPE and BRICKNAME decoded once from
  the on-disk bytes) against astropy's decoding of every cell.

Writes ``benchmarks/results/fastpaths.json``.

    python benchmarks/bench_fastpaths.py [--rounds 12]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lensaudit.cutouts import qa
from lensaudit.lensing import light
from lensaudit.lensing import mass as mass_mod
from lensaudit.mock import lensmodel
from lensaudit.mock.config import MockConfig
from lensaudit.mock.render import load_renderer
from lensaudit.mock.server import CutoutRequest
from lensaudit.mock.survey import build_survey
from lensaudit.sources import procedural
from lensaudit.survey import cutout_fits
from lensaudit.utils.io import atomic_write_json
from lensaudit.utils.provenance import run_info

OUT = Path(__file__).resolve().parent / "results" / "fastpaths.json"


@contextmanager
def _patched(pairs: list[tuple[object, str, object]]):
    """Set each ``(owner, name, value)`` for the block, then restore the originals."""
    saved = [(o, n, getattr(o, n)) for o, n, _ in pairs]
    try:
        for o, n, v in pairs:
            setattr(o, n, v)
        yield
    finally:
        for o, n, v in saved:
            setattr(o, n, v)


def paired(reference: Callable[[], object], fast: Callable[[], object], rounds: int,
           same: Callable[[object, object], bool]) -> dict:
    """Time ``reference`` and ``fast`` alternately for ``rounds`` rounds (after one untimed call each, whose
    results must be ``same``): each path's best round (s) and the median and range of the per-round ratios."""
    if not same(reference(), fast()):
        raise AssertionError("fast path and reference give different numbers")
    ref_t, fast_t = [], []
    for k in range(rounds):
        order = (reference, fast) if k % 2 == 0 else (fast, reference)
        for fn in order:
            t0 = time.perf_counter()
            fn()
            (ref_t if fn is reference else fast_t).append(time.perf_counter() - t0)
    ratio = np.array(fast_t) / np.array(ref_t)
    return {"reference_best_s": round(min(ref_t), 5), "fast_best_s": round(min(fast_t), 5),
            "ratio_fast_over_reference_median": round(float(np.median(ratio)), 3),
            "ratio_range": [round(float(ratio.min()), 3), round(float(ratio.max()), 3)], "rounds": rounds,
            "same_numbers": True}


def _per_order_multipoles(x, y, terms, x0=0.0, y0=0.0):
    """The reference: each order's deflection computed alone (its own angle and powers)."""
    return [mass_mod.multipole_deflections(x, y, [t], x0, y0)[0] for t in terms]


def bench_lens_render(rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        build_survey(MockConfig(area_deg2=1.0, seed=1), d)
        r = load_renderer(d)
        lenses = r.src[r.src.kind == "lens"]
        reqs = [CutoutRequest(float(a), float(b), 101, 101, 0.262, "grz", "ls-dr10", False)
                for a, b in zip(lenses.ra, lenses.dec, strict=True)]

        def render_all():
            out = []
            for q in reqs:
                r._sources.clear()           # each source rendered as a first fetch renders it
                out.append(r(q)[0])
            return out

        reference = [(lensmodel, "multipole_deflections", _per_order_multipoles),
                     (light, "_is_grid", lambda x, y: False),          # knots_profile's plain loop
                     (procedural, "_k_squared", procedural._k_squared.__wrapped__)]

        def ref():
            with _patched(reference):
                return render_all()

        res = paired(ref, render_all, rounds, lambda a, b: all(np.array_equal(u, v) for u, v in zip(a, b, strict=True)))
        res.update({"n_cutouts_per_round": len(reqs),
                    "reference_ms_per_cutout": round(res["reference_best_s"] / len(reqs) * 1e3, 2),
                    "fast_ms_per_cutout": round(res["fast_best_s"] / len(reqs) * 1e3, 2)})
        return res


def bench_client(rounds: int, n: int = 200) -> dict:
    rng = np.random.default_rng(0)
    cubes = [rng.normal(0, 0.01, (3, 101, 101)).astype(np.float32) for _ in range(n)]
    payloads = [cutout_fits.cutout_fits_bytes(c, 150.0 + i * 1e-3, 2.0, bands="grz") for i, c in enumerate(cubes)]

    def read_all():           # as the fetch client reads: no astropy header
        return [cutout_fits.read_cutout_fits(p, 101, "grz", header=False)[0] for p in payloads]

    def read_ref():
        with _patched([(cutout_fits, "_single_float32_image", lambda payload, astropy_header=True: None)]):
            return [cutout_fits.read_cutout_fits(p, 101, "grz")[0] for p in payloads]

    def assess_all():
        return [qa.assess(c) for c in cubes]

    def assess_ref():
        with _patched([(qa, "median_of_finite", lambda v: float(np.median(v)))]):
            return assess_all()

    read = paired(read_ref, read_all, rounds, lambda a, b: all(np.array_equal(u, v) for u, v in zip(a, b, strict=True)))
    assess = paired(assess_ref, assess_all, rounds, lambda a, b: a == b)
    for res in (read, assess):
        res.update({"n_cutouts_per_round": n, "reference_ms_per_cutout": round(res["reference_best_s"] / n * 1e3, 3),
                    "fast_ms_per_cutout": round(res["fast_best_s"] / n * 1e3, 3)})
    return {"client_read": read, "qa_assess": assess}


def bench_stamp_library(rounds: int) -> dict:
    from lensaudit.sources import library as L
    from lensaudit.sources.xdf import default_library

    path = f"{default_library()}:B"                 # the user cache's XDF library (built there once, ~30 s)

    def half_validated_again(self, name):
        keep = np.flatnonzero(self.meta["HALF"].to_numpy() == name)
        return L.StampLibrary(self.images[keep], self.pixscale, self.meta.iloc[keep], source=f"{self.source}:{name}")

    def open_fast():
        return L.StampLibrary.open(path)

    def open_ref():
        with _patched([(L, "may_have_negative_excess", lambda images: np.ones(len(images), bool)),
                       (L.StampLibrary, "half", half_validated_again)]):
            return L.StampLibrary.open(path)

    def same(a, b):
        return (a.source == b.source and a.meta.equals(b.meta)
                and all(np.array_equal(getattr(a, k), getattr(b, k))
                        for k in ("images", "unit_images", "colour_ratios", "r_half", "concentration")))

    res = paired(open_ref, open_fast, rounds, same)
    res["n_stamps"] = len(open_fast())
    return res


def _column_by_column(arr: np.ndarray, columns: dict) -> np.ndarray:
    for name, v in columns.items():
        arr[name] = v
    return arr


def bench_sweeps(rounds: int) -> dict:
    import pandas as pd

    from lensaudit.artifacts import MockSurveyDir
    from lensaudit.mock import survey as ms
    from lensaudit.survey import sweepio
    from lensaudit.utils.seeds import rng

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        build_survey(MockConfig(area_deg2=4.0, seed=1), d / "mock")
        md = MockSurveyDir(d / "mock")
        src, bricks = pd.read_parquet(md.sources), pd.read_parquet(md.bricks)
        with np.load(md.exposure, allow_pickle=False) as z:
            exposure = z["nobs"]
        (d / "fast").mkdir()
        (d / "ref").mkdir()

        def write(where):
            files = ms.write_sweeps(src, bricks, exposure, d / where, rng(1, "mock.sweeps"))
            return [f.read_bytes() for f in files]

        def write_ref():
            with _patched([(ms, "_fill_rows", _column_by_column),
                           (sweepio, "_empty_table_hdu", lambda dtype: sweepio._table_hdu(np.zeros(0, dtype))),
                           (sweepio, "_bintable_rows", lambda a, in_place=False: _rows_copied(a))]):
                return write("ref")

        _rows_copied = sweepio._bintable_rows
        w = paired(write_ref, lambda: write("fast"), rounds, lambda a, b: a == b)
        files = sorted((d / "fast").glob("sweep-*.fits"))
        cols = tuple(sweepio.LENS_COLUMNS)

        def read():
            return [sweepio.read_sweep(f, cols) for f in files]

        def read_ref():
            slow = [(sweepio, "_string_column",
                     lambda data, name: np.char.strip(np.asarray(data[name]).astype(str)).astype(object))]
            with _patched(slow):
                return read()

        r = paired(read_ref, read, rounds, lambda a, b: all(x.equals(y) for x, y in zip(a, b, strict=True)))
        n = int(sum(len(x) for x in read()))
        w["n_rows"] = r["n_rows"] = n
        w["n_files"] = r["n_files"] = len(files)
        return {"sweep_write": w, "sweep_read": r}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    a = ap.parse_args()
    res = {"what": "exact fast paths against the reference paths they replace, paired rounds in one process",
           "lens_centred_render": bench_lens_render(a.rounds), **bench_client(a.rounds),
           "stamp_library_open": bench_stamp_library(a.rounds), **bench_sweeps(max(a.rounds // 2, 3))}
    res["run_info"] = run_info(seeds={"survey": 1, "cubes": 0})
    atomic_write_json(OUT, res)
    print(json.dumps({k: v for k, v in res.items() if k != "run_info"}, indent=2))


if __name__ == "__main__":
    main()
