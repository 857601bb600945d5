"""Benchmark: stratified bootstrap of the ROC AUC, 10,000 resamples of 150,000 predictions.

lensaudit's multinomial-cell bootstrap against the reference (materialising every resample and
calling ``sklearn.metrics.roc_auc_score``, timed on a few resamples and scaled). Target: under
30 s on 2 CPU cores. Writes ``benchmarks/results/evaluate.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from lensaudit.evaluate.bootstrap import bootstrap_auc, percentile_interval
from lensaudit.utils.io import atomic_write_json
from lensaudit.utils.provenance import run_info

OUT = Path(__file__).resolve().parent / "results" / "evaluate.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=150_000)
    ap.add_argument("--pos-fraction", type=float, default=0.01)
    ap.add_argument("--n-boot", type=int, default=10_000)
    ap.add_argument("--reference-boot", type=int, default=30)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    y = (rng.random(a.n) < a.pos_fraction).astype(int)
    s = np.round(rng.normal(y * 2.0, 1.0), 4)  # some ties, as with float32 network outputs
    t0 = time.perf_counter()
    b = bootstrap_auc(y, s, a.n_boot, seed=1)
    t_fast = time.perf_counter() - t0
    pos, neg = s[y == 1], s[y == 0]
    lab = np.r_[np.ones(pos.size), np.zeros(neg.size)]
    t0 = time.perf_counter()
    ref = [roc_auc_score(lab, np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]) for _ in range(a.reference_boot)]
    t_ref = (time.perf_counter() - t0) / a.reference_boot * a.n_boot
    res = {"n_predictions": a.n, "n_pos": int(y.sum()), "n_boot": a.n_boot, "lensaudit_s": round(t_fast, 2),
           "reference_sklearn_s_extrapolated": round(t_ref, 1), "speedup": round(t_ref / t_fast, 1),
           "target_s": 30, "meets_target": t_fast < 30, "auc": float(roc_auc_score(y, s)),
           "ci95_lensaudit": percentile_interval(b)["ci95"], "ref_std": float(np.std(ref)), "lensaudit_std": float(b.std()),
           "run_info": run_info(seeds={"data": 0, "bootstrap": 1})}
    atomic_write_json(OUT, res)
    print(json.dumps({k: v for k, v in res.items() if k != "run_info"}, indent=2))


if __name__ == "__main__":
    main()
