"""The demo's headline figures over several training seeds: how much of a difference is seed noise.

Takes a finished full demo (``make demo``: its mock survey, training set and fetched cutouts) and
re-runs the stages after the fetch (training, scoring, evaluation, the selection function with
its realism gate and closure test, the report) once per extra training seed, in folders of their
own next to it. The stages before training are shared (linked, found unchanged and skipped); the
mock, the training set, the injections (selection seed 0) and the evaluation's resampling are the
same in every run: only the model's seed (initialisation, epoch order, augmentation) varies, so
the spread measured here is the training-seed variance alone. Writes
``benchmarks/results/demo_seed_spread.json``: per seed the headline figures, and per figure the
mean, minimum and maximum over the seeds.

    python benchmarks/demo_seed_spread.py --demo demo_out --seeds 43 44
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import yaml

from lensaudit.demo import DemoConfig, load_demo_config, resolve_config_path, run_demo
from lensaudit.utils.io import atomic_write_json, atomic_write_text
from lensaudit.utils.logs import setup_logging
from lensaudit.utils.provenance import run_info

OUT = Path(__file__).resolve().parent / "results" / "demo_seed_spread.json"
#: stages that do not depend on the training seed: shared with the base demo by a symlink
SHARED_STAGES = ("samples", "sources", "mock", "catalog", "fetch", "shortcuts", "check")


def headline(stages: dict) -> dict:
    """The README's headline figures from a demo's stage summaries (``run_info.json`` -> ``stages``)."""
    ev, sel = stages["evaluate"], stages["selection"]
    out = {"train_seed_best_val_auc": stages["train"].get("best_val_auc"), "val_auc": ev.get("roc_auc"),
           "val_auc_tier_a": ev.get("roc_auc_tier_a"), "val_auc_tier_b": ev.get("roc_auc_tier_b")}
    for fam, c in (sel.get("completeness_p05") or {}).items():
        out[f"completeness_p05/{fam}"] = c
    for fam, r in (sel.get("realism") or {}).items() if isinstance(sel.get("realism"), dict) else ():
        out[f"probe_auc/{fam}"] = r["probe_auc"]
        out[f"verdict/{fam}"] = r["verdict"]
    for fam, c in (sel.get("closure") or {}).items():
        out["true_completeness_p05"] = c["c_true"]
        out[f"closure_c_inj/{fam}"] = c["c_inj"]
        out[f"closure_delta/{fam}"] = c["diff"]
        out[f"closure_p/{fam}"] = c["p_value"]
    return out


def spread(runs: dict[str, dict]) -> dict:
    """Per figure: mean, min, max over the runs (numbers), or the values seen (verdicts)."""
    keys = sorted({k for r in runs.values() for k in r})
    out = {}
    for k in keys:
        vals = [r.get(k) for r in runs.values()]
        if all(isinstance(v, (int, float)) and v is not None for v in vals):
            a = np.asarray(vals, float)
            out[k] = {"mean": float(a.mean()), "min": float(a.min()), "max": float(a.max()), "n": len(a)}
        else:
            out[k] = {"values": vals}
    return out


def run_seed(base: Path, seed: int, demo_cfg: DemoConfig) -> dict:
    """Re-run the demo's training-dependent stages with training seed ``seed`` in ``<base>_seed<seed>``."""
    out = base.parent / f"{base.name}_seed{seed}"
    out.mkdir(exist_ok=True)
    for name in SHARED_STAGES:
        link = out / name
        if not link.exists():
            link.symlink_to((base / name).resolve(), target_is_directory=True)
    train = yaml.safe_load(resolve_config_path(demo_cfg.train_config).read_text())
    train["seed"] = seed
    train_path = out / f"train_seed{seed}.yaml"
    atomic_write_text(train_path, yaml.safe_dump(train, sort_keys=False))
    cfg = demo_cfg.model_copy(update={"train_config": str(train_path)})
    t0 = time.monotonic()
    stages = run_demo(out, config=cfg)
    reran = [k for k, v in stages.items() if not v["skipped"]]
    return {"out": str(out), "elapsed_s": round(time.monotonic() - t0, 1), "stages_run": reran, "stages": stages}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", default="demo_out", help="a finished full `make demo` output folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[43, 44], help="training seeds besides the base demo's")
    a = ap.parse_args()
    setup_logging(0)
    base = Path(a.demo).resolve()
    info = json.loads((base / "run_info.json").read_text())
    if info["config"].get("quick"):
        raise SystemExit(f"{base} is a quick demo; the spread is measured on the full one")
    demo_cfg = load_demo_config()
    base_seed = yaml.safe_load(resolve_config_path(demo_cfg.train_config).read_text())["seed"]
    runs = {str(base_seed): headline(info["stages"])}
    details = {str(base_seed): {"out": str(base), "git_commit": info["git_commit"]}}
    for s in a.seeds:
        logging.getLogger("lensaudit").info("training seed %d", s)
        r = run_seed(base, s, demo_cfg)
        runs[str(s)] = headline(r["stages"])
        details[str(s)] = {k: v for k, v in r.items() if k != "stages"}
    res = {"what": "the full demo's headline figures over training seeds; mock, training set, injections and "
                   "evaluation resampling fixed (only the model's seed varies)",
           "base_demo_git_commit": info["git_commit"], "train_seeds": [int(k) for k in runs],
           "per_seed": runs, "spread": spread(runs), "runs": details,
           "run_info": run_info(seeds={"train": [int(k) for k in runs]})}
    atomic_write_json(OUT, res)
    print(json.dumps(res["spread"], indent=2))


if __name__ == "__main__":
    main()
