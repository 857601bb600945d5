"""Benchmark: the whole demo (``lensaudit demo``, every stage, the default 33 deg^2 configuration) timed stage by
stage on this machine, into a fresh folder. Writes ``benchmarks/results/demo.json``.

The time excludes ``make install`` (the package and its dependencies) but includes every first-use cost inside the
run (numba's compilation of the renderer's kernels where its cache is cold, model construction, the XDF source
library). Target (issue 29): under 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from lensaudit.demo import run_demo
from lensaudit.utils.io import atomic_write_json
from lensaudit.utils.logs import setup_logging
from lensaudit.utils.provenance import run_info

OUT = Path(__file__).resolve().parent / "results" / "demo.json"
TARGET_S = 300.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the --quick demo instead (not the target's run)")
    ap.add_argument("--out", default=None, help="demo folder (default: a temporary one, removed after)")
    a = ap.parse_args()
    setup_logging(0)                                   # the stages' progress, as `lensaudit demo` shows it
    with tempfile.TemporaryDirectory() as d:
        out = Path(a.out) if a.out else Path(d) / "demo_out"
        t0 = time.perf_counter()
        summary = run_demo(out, quick=a.quick)
        total = time.perf_counter() - t0
    stages = {k: round(v.get("elapsed_s") or 0.0, 1) for k, v in summary.items()}
    res = {"what": "lensaudit demo" + (" --quick" if a.quick else "") + ", a fresh folder, every stage run",
           "cores": os.cpu_count(), "total_s": round(total, 1), "stages_s": stages,
           "selection_stage_s": summary.get("selection", {}).get("seconds"),
           "val_auc": summary.get("evaluate", {}).get("roc_auc"), "target_s": TARGET_S,
           "meets_target": bool(total < TARGET_S) if not a.quick else None, "run_info": run_info(seeds={"demo": 42})}
    if not a.quick:
        atomic_write_json(OUT, res)
    print(json.dumps({k: v for k, v in res.items() if k != "run_info"}, indent=2))


if __name__ == "__main__":
    main()
