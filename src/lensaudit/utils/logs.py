"""Logging set-up for the command line (library code only calls ``logging.getLogger``)."""

from __future__ import annotations

import logging


def setup_logging(verbosity: int = 0) -> None:
    """Configure root logging: WARNING (-1), INFO (0), DEBUG (>=1), rich handler when available."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    try:
        from rich.console import Console
        from rich.logging import RichHandler

        # logs go to stderr so that stdout carries only command results (JSON, paths)
        handler: logging.Handler = RichHandler(console=Console(stderr=True), show_path=False,
                                               rich_tracebacks=False, markup=False)
        fmt = "%(message)s"
    except ImportError:  # pragma: no cover - rich is a dependency
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, handlers=[handler], force=True)
    for noisy in ("httpx", "httpcore", "py4j", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
