"""Projection: wall time and cost of a full DR10 search from the rates measured in ``benchmarks/results/``.

Reads the measured throughputs (scoring single-process and on Spark, training, coadd stamps, store
reads) and projects the published DR10 workload: scoring about 43 million galaxies, cutting about
450,000 training stamps, training 160 epochs on them. Every rate used is named with the file it came
from; rates not measured here (GPU: no device was lent to the sessions that wrote these results) are
left out, and the issue's GPU target is shown beside the projection as a target, not a measurement.
Prices are assumptions given on the command line. Writes ``benchmarks/results/dr10_projection.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RES = Path(__file__).resolve().parent / "results"
OUT = RES / "dr10_projection.json"


def _load(name: str) -> dict | None:
    p = RES / name
    return json.loads(p.read_text()) if p.is_file() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-scan", type=float, default=43e6, help="galaxies scored in a full DR10 search")
    ap.add_argument("--n-train", type=float, default=450e3, help="training cutouts")
    ap.add_argument("--epochs", type=int, default=160)
    ap.add_argument("--usd-per-core-hour", type=float, default=0.05, help="assumed CPU price (USD per core-hour)")
    ap.add_argument("--usd-per-gpu-hour", type=float, default=3.0, help="assumed H100-class price (USD per GPU-hour)")
    a = ap.parse_args()
    from lensaudit.utils.io import atomic_write_json
    from lensaudit.utils.provenance import run_info

    rows = []

    def add(task: str, n: float, rate_per_s: float | None, cores: int, source: str, kind: str = "measured"):
        if not rate_per_s:
            rows.append({"task": task, "kind": kind, "source": source, "rate_per_s": None, "note": "not measured"})
            return
        hours = n / rate_per_s / 3600
        rows.append({"task": task, "kind": kind, "source": source, "n": n, "rate_per_s": round(rate_per_s, 1),
                     "cores_or_gpus_measured": cores, "wall_hours_at_that_rate": round(hours, 2),
                     "core_or_gpu_hours": round(hours * cores, 2),
                     "usd": round(hours * cores * (a.usd_per_gpu_hour if kind == "gpu target" else a.usd_per_core_hour), 2)})

    sc = _load("score_spark.json")
    cpu = (sc or {}).get("cpu_count", 2)
    add("scan: score with the demo model (compact ResNet), single process", a.n_scan,
        (sc or {}).get("single_process_cutouts_per_s"), cpu, "score_spark.json")
    add("scan: score with the demo model on Spark (local mode, same cores)", a.n_scan,
        (sc or {}).get("spark_local_cutouts_per_s"), cpu, "score_spark.json")
    dry = _load("survey_dryrun.json")
    add("scan: the whole Spark path with a small model (survey-scale dry run, store reads by reference)", a.n_scan,
        (dry or {}).get("scoring_cutouts_per_s"), (dry or {}).get("cpu_count", 2), "survey_dryrun.json")
    tr = (_load("train_cpu.json") or {}).get("archs", {})
    add("scan: score with ResNet-18 (published architecture), CPU", a.n_scan,
        tr.get("resnet18", {}).get("score_samples_per_s_loader_on"), 2, "train_cpu.json")
    add("scan: score with ResNet-18 on one H100-class GPU (issue target)", a.n_scan, 10_000.0, 1, "issue 13 target",
        kind="gpu target")
    co = _load("coadd.json")
    add("training set: cut stamps from coadd files (CoaddReader, warm caches)", a.n_train,
        (co or {}).get("coadd_reader_warm_stamps_per_s"), 1, "coadd.json")
    add("training: EfficientNetV2-S, 160 epochs, CPU", a.n_train * a.epochs,
        tr.get("efficientnet_v2_s", {}).get("train_samples_per_s_loader_on"), 2, "train_cpu.json")
    add("training: EfficientNetV2-S, 160 epochs, one H100-class GPU (issue target)", a.n_train * a.epochs, 3000.0, 1,
        "train_cpu.json targets_h100", kind="gpu target")
    res = {"workload": {"n_scan": a.n_scan, "n_train": a.n_train, "epochs": a.epochs},
           "prices_assumed": {"usd_per_core_hour": a.usd_per_core_hour, "usd_per_gpu_hour": a.usd_per_gpu_hour},
           "projection": rows,
           "note": "CPU rows scale with cores (the scan is embarrassingly parallel: Spark or many processes); "
                   "'gpu target' rows are the issue's targets, not measurements: no GPU was lent when these "
                   "results were written. Fetching from the public cutout service is limited by its operators' "
                   "rate, not by this code (5 requests/s: 450,000 stamps in 25 hours).",
           "run_info": run_info(seeds={})}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT, res)
    for r in rows:
        print(f"{r['task'][:78]:<78} {r.get('core_or_gpu_hours', '-'):>10} h  ${r.get('usd', '-')}")


if __name__ == "__main__":
    main()
