"""The ``lensaudit`` command line: a thin layer over the library API.

Every sub-command maps onto functions that notebooks can call directly; see ``--help`` of
each sub-command. Errors a user can cause (:class:`lensaudit.errors.LensauditError`, and
operating-system errors about a named file such as a missing file or a full disk) print as
one line and exit 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path

from lensaudit import __version__
from lensaudit.errors import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    LensauditError,
    Terminated,
)
from lensaudit.utils.logs import setup_logging
from lensaudit.utils.signals import sigterm_as_interrupt

log = logging.getLogger("lensaudit")
#: errno values that describe the environment (full disk, quota, read-only file system), not a bug
_ENV_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


# --------------------------------------------------------------------------- demo
def _cmd_demo(a: argparse.Namespace) -> int:
    from lensaudit.demo import load_demo_config, main_outputs, one_line, run_demo
    from lensaudit.reference import load_reference

    cfg = load_demo_config(a.config)
    ref = load_reference(a.reference_data)   # verified before any stage runs
    print(ref.describe(), flush=True)
    summary = run_demo(Path(a.out), quick=a.quick, reference=ref, force=a.force, config=cfg)
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"lensaudit demo: {a.out}")
    for col in ("stage", "", "time (s)", "result"):
        t.add_column(col)
    for name, s in summary.items():
        t.add_row(name, "skipped" if s.get("skipped") else "ran", f"{s.get('elapsed_s') or 0:.1f}", one_line(name, s))
    Console().print(t)
    for label, path in main_outputs(Path(a.out)):
        print(f"{label + ':':21s}{path}")
    return 0


def _cmd_config_reference(a: argparse.Namespace) -> int:
    from lensaudit.config_reference import reference_markdown
    from lensaudit.utils.io import atomic_write_text

    text = reference_markdown()
    if a.out:
        atomic_write_text(a.out, text)
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lensaudit",
        description="Build, train and audit CNN strong-lens finders on DESI Legacy Imaging Surveys DR10.",
        epilog=EXIT_CODES_HELP + ".",
    )
    from lensaudit.reference.cli import add_reference_argument, add_reference_commands

    p.add_argument("--version", action="version", version=f"lensaudit {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    d = sub.add_parser("demo", help="run every pipeline stage on the embedded mock DR10 survey",
                       description="Run every stage that exists, in order, on the embedded default data. "
                                   "A stage is skipped when its recorded inputs are unchanged.")
    d.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    d.add_argument("--quick", action="store_true", help="smaller sizes, for tests and a first look")
    d.add_argument("--force", action="store_true", help="re-run every stage even if its inputs are unchanged")
    add_reference_argument(d)

    d.add_argument("--config", default=None, help="demo YAML (default: the bundled configs/demo/demo.yaml)")
    d.set_defaults(fn=_cmd_demo)
    c = sub.add_parser("config-reference", help="every key of every YAML configuration: type, default, constraint, "
                                                 "meaning (Markdown; docs/configuration.md is its output)")
    c.add_argument("--out", default=None, help="write the reference to this file (default: standard output)")
    c.set_defaults(fn=_cmd_config_reference)

    from lensaudit.catalog.cli import add_catalog_commands
    from lensaudit.cutouts.cli import add_cutouts_commands
    from lensaudit.evaluate.cli import add_evaluate_commands
    from lensaudit.mock.cli import add_mock_commands
    from lensaudit.sources.cli import add_sources_commands

    add_reference_commands(sub)
    add_sources_commands(sub)
    add_cutouts_commands(sub)
    add_mock_commands(sub)
    add_catalog_commands(sub)
    add_evaluate_commands(sub)
    try:
        from lensaudit.ensemble.cli import add_ensemble_commands
        from lensaudit.realism.cli import add_realism_commands
        from lensaudit.report.cli import add_report_commands
        from lensaudit.scoring.cli import add_scoring_commands
        from lensaudit.selection.cli import add_selection_commands
        from lensaudit.train.cli import add_train_commands
        from lensaudit.validation.cli import add_validate_commands
    except ImportError as exc:  # torch not installed: the other commands still work
        log.debug("train, selection and realism commands unavailable: %s", exc)
    else:
        add_train_commands(sub)
        add_scoring_commands(sub)
        add_selection_commands(sub)
        add_realism_commands(sub)
        add_ensemble_commands(sub)
        add_report_commands(sub)
        add_validate_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    setup_logging(-1 if a.quiet else a.verbose)
    try:
        with sigterm_as_interrupt():
            return int(a.fn(a) or 0)
    except Terminated:
        print("lensaudit: terminated (SIGTERM); what was committed before the signal is kept", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("lensaudit: interrupted; what was committed before Ctrl-C is kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except LensauditError as exc:
        if a.verbose > 1:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"lensaudit: error: {' '.join(str(msg).split())}", file=sys.stderr)   # one line, whatever a library said
        return EXIT_USER_ERROR
    except OSError as exc:
        # the environment, not a bug: a named file that is missing, unreadable or unwritable, a full disk
        if a.verbose > 1 or not (exc.filename or exc.errno in _ENV_ERRNOS):
            raise
        what = f": {exc.filename}" if exc.filename else ""
        print(f"lensaudit: error: {exc.strerror or exc}{what}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
