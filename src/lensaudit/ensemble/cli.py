"""``lensaudit ensemble run`` (a thin layer over :func:`lensaudit.ensemble.run_ensemble`)."""

from __future__ import annotations

import argparse
import json


def _run(a: argparse.Namespace) -> int:
    from lensaudit.config import load_config
    from lensaudit.ensemble import EnsembleConfig, run_ensemble

    cfg = load_config(a.config, EnsembleConfig, {"out": a.out, "epochs": a.epochs})
    s = run_ensemble(cfg, config_path=a.config)
    print(json.dumps({k: s[k] for k in ("out", "members", "combinations", "targets", "tables", "figures")}, indent=2))
    return 0


def add_ensemble_commands(sub) -> None:
    e = sub.add_parser("ensemble", help="domain-specialised ensembles: train, combine, measure diversity and yield")
    esub = e.add_subparsers(dest="ensemble_command", metavar="SUBCOMMAND", required=True)
    r = esub.add_parser("run", help="train one model per domain, combine them, write the tables and figures",
                        description="Per a YAML config (configs/ensemble/*.yaml): one member per domain of each "
                                    "definition (trained with `lensaudit train` on its domain's rows; a finished "
                                    "member is reused, an interrupted one resumed), scored with the baseline on the "
                                    "fit and audit splits; averaging, domain gate and meta-learner; correlations, "
                                    "disagreement, selective classification and top-K yield with intervals.")
    r.add_argument("--config", required=True)
    r.add_argument("--out", default=None, help="override the config's out")
    r.add_argument("--epochs", type=int, default=None, help="override the members' epochs")
    r.set_defaults(fn=_run)
