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

With ``--epochs N`` (a training schedule other than the demo's) every seed, the base demo's
included, is trained for N epochs (the cosine schedule spans the N epochs) in
``<demo>_e<N>_seed<seed>``, and ``demo_seed_spread_e<N>.json`` is written beside the first file,
with each figure's change of the mean against it and the rule that decides whether the shorter
schedule is within seed noise (fixed here, before any run: the mean validation ROC AUC over the
seeds lies inside the demo schedule's [min, max] over the same seeds). The rule reads the
validation split only, never the mock's truth; the closure figures are reported, not used.
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


def compare(short: dict, ref: dict) -> dict:
    """Per numeric figure: the change of the mean (``short`` - ``ref``) beside ``ref``'s seed range."""
    out = {}
    for k, r in ref.items():
        s = short.get(k)
        if s is None or "mean" not in r or "mean" not in s:
            continue
        out[k] = {"delta_mean": s["mean"] - r["mean"], "ref_min": r["min"], "ref_max": r["max"],
                  "ref_range": r["max"] - r["min"], "mean_inside_ref_range": r["min"] <= s["mean"] <= r["max"]}
    return out


def run_seed(base: Path, seed: int, demo_cfg: DemoConfig, epochs: int | None = None) -> dict:
    """Re-run the demo's training-dependent stages with training seed ``seed`` in ``<base>_seed<seed>``
    (``<base>_e<epochs>_seed<seed>`` with a schedule of ``epochs`` epochs)."""
    out = base.parent / (f"{base.name}_seed{seed}" if epochs is None else f"{base.name}_e{epochs}_seed{seed}")
    out.mkdir(exist_ok=True)
    for name in SHARED_STAGES:
        link = out / name
        if not link.exists():
            link.symlink_to((base / name).resolve(), target_is_directory=True)
    train = yaml.safe_load(resolve_config_path(demo_cfg.train_config).read_text())
    train["seed"] = seed
    if epochs is not None:
        train["epochs"] = epochs
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
    ap.add_argument("--epochs", type=int, default=None,
                    help="train every seed (the base's too) for this many epochs instead of the demo's schedule")
    a = ap.parse_args()
    setup_logging(0)
    base = Path(a.demo).resolve()
    info = json.loads((base / "run_info.json").read_text())
    if info["config"].get("quick"):
        raise SystemExit(f"{base} is a quick demo; the spread is measured on the full one")
    demo_cfg = load_demo_config()
    base_train = yaml.safe_load(resolve_config_path(demo_cfg.train_config).read_text())
    base_seed = base_train["seed"]
    epochs = None if a.epochs in (None, base_train["epochs"]) else a.epochs
    runs, details = {}, {}
    if epochs is None:
        runs[str(base_seed)] = headline(info["stages"])
        details[str(base_seed)] = {"out": str(base), "git_commit": info["git_commit"]}
    seeds = list(a.seeds) if epochs is None else [base_seed, *[s for s in a.seeds if s != base_seed]]
    for s in seeds:
        logging.getLogger("lensaudit").info("training seed %d%s", s, "" if epochs is None else f", {epochs} epochs")
        r = run_seed(base, s, demo_cfg, epochs)
        runs[str(s)] = headline(r["stages"])
        details[str(s)] = {k: v for k, v in r.items() if k != "stages"}
    res = {"what": "the full demo's headline figures over training seeds; mock, training set, injections and "
                   "evaluation resampling fixed (only the model's seed varies)",
           "base_demo_git_commit": info["git_commit"], "epochs": epochs or base_train["epochs"],
           "train_seeds": [int(k) for k in runs],
           "per_seed": runs, "spread": spread(runs), "runs": details,
           "run_info": run_info(seeds={"train": [int(k) for k in runs]})}
    out = OUT
    if epochs is not None:
        out = OUT.with_name(f"{OUT.stem}_e{epochs}.json")
        ref = json.loads(OUT.read_text()) if OUT.exists() else None
        if ref is None or ref["base_demo_git_commit"] != info["git_commit"] or \
                sorted(ref["train_seeds"]) != sorted(res["train_seeds"]):
            raise SystemExit(f"{OUT} must hold the demo schedule's spread over the same base demo and seeds "
                             f"{sorted(res['train_seeds'])} first (run without --epochs)")
        cmp = compare(res["spread"], ref["spread"])
        res["against_demo_schedule"] = {
            "reference": {"file": OUT.name, "epochs": ref.get("epochs", base_train["epochs"])},
            "rule": "within seed noise if the mean val ROC AUC over the seeds lies inside the demo schedule's "
                    "[min, max] over the same seeds (fixed before the run; validation split only, no truth)",
            "within_seed_noise": cmp["val_auc"]["mean_inside_ref_range"], "figures": cmp}
    atomic_write_json(out, res)
    print(json.dumps(res["spread"], indent=2))


if __name__ == "__main__":
    main()
