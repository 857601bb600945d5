"""Benchmark: rows/s through sweep ingestion and the catalog stages (cuts, match, splits, sampling),
local engine vs Spark engine (local[*]) on the same generated real-format sweeps.

Generates ``--files`` sweep FITS files of ``--rows-per-file`` rows (default 10 x 1,000,000) in the
full DR10 schema, a candidate list (one per ``--rows-per-candidate`` rows, 0.3 arcsec off a
source), runs ingestion and the build with each engine, checks that the manifests are
byte-identical and writes ``benchmarks/results/catalog.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.catalog import CatalogConfig, LocalEngine, SparkEngine, build_catalog
from lensaudit.catalog.ingest import list_partitions, list_sweeps
from lensaudit.survey.columns import LENS_COLUMNS
from lensaudit.survey.geometry import sweep_filename
from lensaudit.survey.sweepio import synthetic_sweep_rows, write_sweep_fits
from lensaudit.utils.io import atomic_write_json
from lensaudit.utils.provenance import run_info

OUT = Path(__file__).resolve().parent / "results" / "catalog.json"


def generate(d: Path, files: int, rows: int, rows_per_cand: int, seed: int) -> int:
    (d / "sweeps").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cands = []
    for i in range(files):
        ra0 = 5.0 * (i % 72)
        box = (ra0, ra0 + 5.0, 0.0, 5.0) if i < 72 else (ra0, ra0 + 5.0, 5.0, 10.0)
        a = synthetic_sweep_rows(rows, box, seed=seed + i, objid_start=i * rows)
        write_sweep_fits(a, d / "sweeps" / sweep_filename(*box), box)
        pick = rng.choice(rows, rows // rows_per_cand, replace=False)
        cands.append(pd.DataFrame({"name": [f"B{i}_{k}" for k in pick], "ra": a["RA"][pick] + 0.3 / 3600,
                                   "dec": a["DEC"][pick], "zlens": 0.5, "type": "galaxy",
                                   "grading": np.where(rng.random(pick.size) < 0.4, "confident", "probable"),
                                   "ref": "benchmark"}))
    c = pd.concat(cands, ignore_index=True)
    c.to_csv(d / "candidates.csv", index=False)
    return len(c)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--rows-per-file", type=int, default=1_000_000)
    ap.add_argument("--rows-per-candidate", type=int, default=5000)
    ap.add_argument("--workdir", default=None, help="keep the generated data here (default: a temp dir)")
    ap.add_argument("--skip-spark", action="store_true")
    a = ap.parse_args()
    tmp = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="bench_catalog_"))
    n_rows = a.files * a.rows_per_file
    res: dict = {"rows": n_rows, "files": a.files, "cores": os.cpu_count()}
    try:
        t0 = time.perf_counter()
        if not list_sweeps(tmp / "sweeps"):
            res["n_candidates"] = generate(tmp, a.files, a.rows_per_file, a.rows_per_candidate, seed=5)
        res["generate_s"] = round(time.perf_counter() - t0, 1)
        sweeps = list_sweeps(tmp / "sweeps")
        engines = {"local": LocalEngine(workers=os.cpu_count() or 1)}
        if not a.skip_spark:
            engines["spark"] = SparkEngine(master="local[*]")
        manifests = {}
        for name, eng in engines.items():
            shutil.rmtree(tmp / f"parquet_{name}", ignore_errors=True)
            t0 = time.perf_counter()
            eng.ingest(sweeps, tmp / f"parquet_{name}", LENS_COLUMNS, force=True)
            t_ing = time.perf_counter() - t0
            assert len(list_partitions(tmp / f"parquet_{name}")) == len(sweeps)
            cfg = CatalogConfig(sweeps=str(tmp / f"parquet_{name}"), candidates=str(tmp / "candidates.csv"),
                                out=str(tmp / f"out_{name}"), engine=name)
            t0 = time.perf_counter()
            summary = build_catalog(cfg, engine=eng)
            t_build = time.perf_counter() - t0
            manifests[name] = Path(summary["manifests"]["70_30"]).read_bytes()
            res[name] = {"ingest_s": round(t_ing, 2), "ingest_rows_per_s": round(n_rows / t_ing),
                         "build_s": round(t_build, 2), "build_rows_per_s": round(n_rows / t_build),
                         "n_positives": summary["n_positives"], "n_negatives": summary["n_negatives"],
                         "n_eligible_negatives": summary["n_eligible_negatives"]}
            print(name, json.dumps(res[name]), flush=True)
        if "spark" in res:
            res["manifests_byte_identical"] = manifests["local"] == manifests["spark"]
            res["spark_over_local_ingest_rate"] = round(res["spark"]["ingest_rows_per_s"] / res["local"]["ingest_rows_per_s"], 3)
            res["spark_over_local_build_rate"] = round(res["spark"]["build_rows_per_s"] / res["local"]["build_rows_per_s"], 3)
    finally:
        if not a.workdir:
            shutil.rmtree(tmp, ignore_errors=True)
    res["note"] = ("Spark runs local[*] on this machine's cores, so it measures overhead, not scale-out; "
                   "build = cuts, cross-match, HEALPix, splits, hashing, top-K sampling, manifests, verification")
    res["run_info"] = run_info(seeds={"data": 5})
    atomic_write_json(OUT, res)
    print(json.dumps({k: v for k, v in res.items() if k != "run_info"}, indent=2))


if __name__ == "__main__":
    main()
