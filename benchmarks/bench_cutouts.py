"""Benchmark: cutout fetch rate against the loopback service, and store read rate.

Store reads are compared in the same run with the reference format of earlier DR10 lens
studies (one ``.npz`` per cutout read with ``numpy.load``), and reported as ratios.
Writes ``benchmarks/results/cutouts.json``.

    python benchmarks/bench_cutouts.py [--n-store 6000] [--n-fetch 400]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.cutouts import CutoutStore, FetchConfig, fetch_manifest
from lensaudit.mock.server import serve_in_thread
from lensaudit.utils.io import atomic_write_json
from lensaudit.utils.provenance import run_info

OUT = Path(__file__).resolve().parent / "results" / "cutouts.json"


def _noise_render(req):
    rng = np.random.default_rng(int(req.ra * 1e5) % 2**32)
    return rng.normal(0, 0.003, (len(req.bands), req.height, req.width)).astype(np.float32), None


def bench_store(root: Path, n: int, n_reads: int, seed: int = 0, prefix: str = "c") -> dict:
    rng = np.random.default_rng(seed)
    root = root / f"store_{len(prefix.encode())}"
    store = CutoutStore(root / "store", create=True, shard_size=2048)
    npz_dir = root / "npz"
    npz_dir.mkdir()
    block = rng.normal(0, 0.01, (256, 3, 101, 101)).astype(np.float32)
    t0 = time.perf_counter()
    with store.writer() as w:
        for i in range(n):
            w.add(f"{prefix}{i}", block[i % 256], 0.0, 0.0)
    write_s = time.perf_counter() - t0
    for i in range(n):
        np.savez(npz_dir / f"c{i}.npz", cutout=np.moveaxis(block[i % 256], 0, -1))
    store = CutoutStore(root / "store")
    ids = np.array([f"{prefix}{i}" for i in range(n)])
    pick = rng.choice(n, size=n_reads, replace=True)
    store.get(ids[:10])  # open handles / load index outside the timers (as a worker would once)

    t0 = time.perf_counter()
    for i in pick:
        store.get_rows(np.array([i]))
    rnd_single = n_reads / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    for k in range(0, n_reads, 256):
        store.get_rows(pick[k:k + 256])
    rnd_batch = n_reads / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    for k in range(0, n, 256):
        store.get_rows(np.arange(k, min(n, k + 256)))
    seq = n / (time.perf_counter() - t0)

    t0 = time.perf_counter()
    for i in pick:
        with np.load(npz_dir / f"c{i}.npz", allow_pickle=False) as z:
            z["cutout"]
    npz_rnd = n_reads / (time.perf_counter() - t0)
    return {
        "n_cutouts": n, "n_reads": n_reads, "write_cutouts_per_s": n / write_s,
        "random_single_cutouts_per_s": rnd_single, "random_batch256_cutouts_per_s": rnd_batch,
        "sequential_cutouts_per_s": seq, "reference_npz_per_file_random_cutouts_per_s": npz_rnd,
        "ratio_random_single_vs_npz": rnd_single / npz_rnd, "ratio_random_batch_vs_npz": rnd_batch / npz_rnd,
        "target_random_cutouts_per_s": 5000, "meets_target": bool(rnd_single >= 5000),
        "id_prefix": prefix, "note": "page-cache warm reads; the store is written once and read back in the same run",
    }


def bench_fetch(root: Path, n: int, concurrency: int) -> dict:
    m = pd.DataFrame({"id": [f"f{i}" for i in range(n)], "ra": 10 + np.arange(n) * 1e-3, "dec": np.zeros(n)})
    with serve_in_thread(_noise_render) as srv:
        store = CutoutStore(root / "fetch", create=True)
        cfg = FetchConfig(service_url=srv.url, rate_per_s=1e6, concurrency=concurrency)
        rep = fetch_manifest(m, store, cfg)
    return {"n_cutouts": n, "concurrency": concurrency, "fetch_cutouts_per_s": rep.rate_per_s,
            "n_failed": rep.n_failed,
            "note": "loopback service and client share this machine's 2 cores; the real service is "
                    "network-bound and the client's polite default is 5 requests/s"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-store", type=int, default=6000)
    ap.add_argument("--n-reads", type=int, default=5000)
    ap.add_argument("--n-fetch", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        res = {"store": bench_store(Path(d), a.n_store, a.n_reads),
               # ids are stored and read as UTF-8: the same store with non-ASCII ids, in the same run
               "store_non_ascii_ids": bench_store(Path(d), a.n_store, a.n_reads, prefix="ç-π-"),
               "fetch": bench_fetch(Path(d), a.n_fetch, a.concurrency)}
        res["ratio_random_single_non_ascii_vs_ascii_ids"] = (res["store_non_ascii_ids"]["random_single_cutouts_per_s"]
                                                            / res["store"]["random_single_cutouts_per_s"])
    res["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    res["run_info"] = run_info(seeds={"store": 0})
    atomic_write_json(OUT, res)
    print(json.dumps({k: v for k, v in res.items() if k != "run_info"}, indent=2))


if __name__ == "__main__":
    main()
