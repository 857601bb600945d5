"""Benchmark: a survey-scale dry run of the scoring path (issue 13): a few million (3 by default) generated catalog rows
scored with a small model on Spark (local mode), wall time and memory of every process recorded.

The path is the production one: a catalog of ``--rows`` rows (DR10-style ids, ra, dec over a 20 x 20
degree patch) -> ``score_spark`` (rows carry ids; Spark's Python workers load the model once, look the ids
up in the cutout store's index, read the pixels from its HDF5 shards, preprocess, score in batches of 512,
write partitioned Parquet, resumable by partition) -> ``read_spark_predictions`` -> a top-K candidate list.

What is generated rather than real, and why:
- Pixels: ``--rows`` distinct 101 x 101 x 3 cutouts would be 122 KB each (244 GB for 2 million), more than
  this machine's disk. The store therefore holds ``--pool`` physical cutouts and its index gives every
  catalog row its own id pointing at one of them (row i -> cutout i mod pool). Index look-ups, shard reads,
  checksums, preprocessing and the model run per row exactly as for distinct cutouts, but the reads come
  from the page cache; on a cluster the store sits on a network file system, which this does not measure.
- Model: a small random-weight compact ResNet (what the dry run measures is the path, not a model).
The check: every catalog row has one score, in catalog order, and two whole batches re-scored by
single-process ``score_manifest`` are bit-identical.

Memory is sampled every 0.5 s (psutil) over the whole process tree: this driver, the Spark JVM and the
Python workers, each peak reported apart, as resident set size and as private memory (resident less the
shared pages, mostly the memory-mapped store shards in the page cache). Writes ``benchmarks/results/survey_dryrun.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

OUT = Path(__file__).resolve().parent / "results" / "survey_dryrun.json"
MODEL = {"stem": 8, "stages": [[16, 8, 1, 2]]}


class TreeMemory:
    """Peak resident memory (bytes) of this process, its JVM and its other descendants, sampled by a thread."""

    def __init__(self, every_s: float = 0.5):
        self.every_s = every_s
        self.peak = {f"{k}_{w}": 0 for k in ("driver", "jvm", "python_workers", "total") for w in ("rss", "private")}
        self.max_workers, self._stop = 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        use = dict.fromkeys(self.peak, 0)
        workers = 0
        for p in [me, *me.children(recursive=True)]:
            try:
                m, name = p.memory_info(), p.name()
            except psutil.Error:  # gone between listing and reading
                continue
            role = "driver" if p.pid == me.pid else "jvm" if "java" in name else "python_workers"
            workers += role == "python_workers"
            # rss counts the pages of memory-mapped store shards a process has read (shared page cache);
            # private = rss minus those shared pages
            for r in (role, "total"):
                use[f"{r}_rss"] += m.rss
                use[f"{r}_private"] += m.rss - m.shared
        for k, v in use.items():
            self.peak[k] = max(self.peak[k], v)
        self.max_workers = max(self.max_workers, workers)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def __enter__(self) -> TreeMemory:
        self._sample()
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    def report(self) -> dict:
        return {f"{k}_peak_mb": round(v / 2**20) for k, v in self.peak.items()} | {"processes_peak": self.max_workers}


def generate_catalog(n: int, seed: int) -> pd.DataFrame:
    """``n`` catalog rows: DR10-style ids (``<brickid>_<objid>``) and positions uniform on a 20 x 20 deg patch."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(150.0, 170.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-10.0)), np.sin(np.radians(10.0)), n)))
    brick = (np.floor((dec + 90) * 4).astype(np.int64) * 1440 + np.floor(ra * 4).astype(np.int64))
    order = np.lexsort((ra, brick))  # sweep order: brick by brick
    ra, dec, brick = ra[order], dec[order], brick[order]
    objid = np.arange(n) - np.searchsorted(brick, brick)  # running number within each brick
    ids = pd.Series(brick).astype(str) + "_" + pd.Series(objid).astype(str)
    return pd.DataFrame({"id": ids, "ra": ra, "dec": dec})


def build_store(root: Path, catalog: pd.DataFrame, pool: int, seed: int) -> None:
    """``pool`` physical cutouts, then one index file per 100,000 catalog rows aliasing them (row i -> i mod pool)."""
    from lensaudit.cutouts import CutoutStore

    rng = np.random.default_rng(seed)
    store = CutoutStore(root, create=True)
    with store.writer() as w:
        for k in range(pool):
            w.add(f"pool{k:06d}", rng.normal(0, 0.01, (3, 101, 101)).astype(np.float32), 0.0, 0.0)
    phys = store.index[["shard", "offset"]]
    for lo in range(0, len(catalog), 100_000):
        part = catalog.iloc[lo : lo + 100_000]
        src = phys.iloc[np.arange(lo, lo + len(part)) % pool]
        rows = pd.DataFrame({"id": part["id"].to_numpy(), "shard": src["shard"].to_numpy(),
                             "offset": src["offset"].to_numpy(), "ra": part["ra"].to_numpy(),
                             "dec": part["dec"].to_numpy()})
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False),
                       root / "index" / f"shard-9{lo // 100_000:05d}-alias.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--pool", type=int, default=4096, help="physical cutouts the catalog rows point at")
    ap.add_argument("--partition-rows", type=int, default=20480)
    ap.add_argument("--top-k", type=int, default=10_000)
    ap.add_argument("--workdir", default=None, help="keep the data here (default: a temporary folder)")
    a = ap.parse_args()
    import torch

    from lensaudit.catalog.engines import spark_session
    from lensaudit.cutouts import CutoutStore
    from lensaudit.data.preprocess import PreprocessConfig
    from lensaudit.models import build_model, count_parameters
    from lensaudit.train.checkpoint import save_checkpoint
    from lensaudit.train.score import score_manifest
    from lensaudit.train.spark_score import read_spark_predictions, score_spark
    from lensaudit.utils.io import atomic_write_json
    from lensaudit.utils.provenance import run_info

    # provenance as the run starts (the commit of the code that runs, not of whatever is checked out 40 minutes later)
    info = run_info(seeds={"catalog": 0, "pixels": 1, "model": 0, "spot_check": 2})
    tmp = tempfile.TemporaryDirectory(dir=a.workdir) if a.workdir is None else None
    d = Path(tmp.name if tmp else a.workdir)
    d.mkdir(parents=True, exist_ok=True)
    stages: dict[str, float] = {}
    with TreeMemory() as mem:
        t0 = time.perf_counter()
        catalog = generate_catalog(a.rows, seed=0)
        catalog.to_parquet(d / "catalog.parquet")
        stages["generate_catalog_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        build_store(d / "store", catalog, a.pool, seed=1)
        stages["build_store_s"] = time.perf_counter() - t0
        torch.manual_seed(0)
        model = build_model("bottleneck_resnet", **MODEL)
        save_checkpoint(d / "ck.pt", arch="bottleneck_resnet", model_kwargs=MODEL,
                        preprocess=PreprocessConfig(crop=40, stretch="asinh").model_dump(), model=model.state_dict())
        t0 = time.perf_counter()
        spark = spark_session("local[*]", app="lensaudit-dryrun")
        stages["spark_startup_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        manifest = pd.read_parquet(d / "catalog.parquet")
        rep = score_spark(d / "ck.pt", manifest, d / "store", d / "scores", spark=spark, batch_size=512,
                          partition_rows=a.partition_rows, rows_per_arrow_batch=256, device="cpu")
        stages["score_s"] = time.perf_counter() - t0
        slots = spark.sparkContext.defaultParallelism
        spark.stop()
        t0 = time.perf_counter()
        got = read_spark_predictions(d / "scores")
        top = got.nlargest(a.top_k, "probability")
        top.to_parquet(d / "top_candidates.parquet")
        stages["read_back_and_top_k_s"] = time.perf_counter() - t0
    complete = bool(len(got) == a.rows and np.array_equal(got["id"].to_numpy(), manifest["id"].astype(str).to_numpy()))
    rng = np.random.default_rng(2)
    batches = rng.choice(a.rows // 512, size=2, replace=False)
    identical = True
    for b in batches:
        sub = manifest.iloc[b * 512 : (b + 1) * 512]
        ref = score_manifest(d / "ck.pt", sub, CutoutStore(d / "store"), batch_size=512, device="cpu")
        identical &= bool(np.array_equal(ref["logit"].to_numpy(), got["logit"].to_numpy()[b * 512 : (b + 1) * 512]))
    out_mb = sum(f.stat().st_size for f in (d / "scores").rglob("*.parquet")) / 2**20
    res = {
        "rows": a.rows, "cpu_count": os.cpu_count(), "spark_task_slots": slots,
        "model": f"bottleneck_resnet {MODEL}, {count_parameters(model)} parameters, crop 40, asinh, random weights",
        "pixels": f"{a.pool} physical cutouts aliased by {a.rows} index rows (page-cache reads; see docstring)",
        "stages_s": {k: round(v, 1) for k, v in stages.items()},
        "scoring_cutouts_per_s": round(a.rows / stages["score_s"], 1),
        "memory": mem.report(),
        "output_parquet_mb": round(out_mb, 1), "partitions": rep["partitions"],
        "every_row_scored_in_order": complete, "spot_batches_bit_identical_to_single_process": identical,
        "settings": {"batch_size": 512, "partition_rows": a.partition_rows, "rows_per_arrow_batch": 256,
                     "task_threads": int(os.environ.get("LENSAUDIT_TASK_THREADS", "1"))},
        "run_info": info,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT, res)
    print({k: v for k, v in res.items() if k != "run_info"})
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
