"""``lensaudit report RUN_DIR`` (a thin layer over :func:`lensaudit.report.build_report`)."""

from __future__ import annotations

import argparse


def _report(a: argparse.Namespace) -> int:
    from lensaudit.report import build_report

    path = build_report(a.run_dir, a.out)
    print(path)
    return 0


def add_report_commands(sub) -> None:
    r = sub.add_parser("report", help="write the self-contained HTML audit report of a run directory",
                       description="Reads the stage folders of RUN_DIR (catalog, fetch, train, score, evaluate, "
                                   "selection, samples) and writes RUN_DIR/report/index.html with figures and tables; "
                                   "a missing stage is shown with the command that produces it.")
    r.add_argument("run_dir")
    r.add_argument("--out", default=None, help="report folder (default RUN_DIR/report)")
    r.set_defaults(fn=_report)
