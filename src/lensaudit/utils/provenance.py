"""Provenance records (``run_info.json``): commit, config hash, seeds, versions, command line."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_LIBS = ("lensaudit", "numpy", "scipy", "astropy", "h5py", "pyarrow", "pandas", "httpx", "pydantic", "torch",
         "torchvision", "healpy", "astropy-healpix", "pyspark", "scikit-learn")


def git_commit(start: str | Path | None = None) -> str:
    """Commit hash of the lensaudit checkout (with ``+dirty`` if modified), or ``unknown``.

    ``unknown`` too for an installed wheel, even one inside somebody else's git repository: the
    repository must be lensaudit's own (its top level holds ``src/lensaudit``).
    """
    where = Path(start) if start else Path(__file__).resolve().parent
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=where, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        if not start and not (Path(top) / "src" / "lensaudit" / "__init__.py").is_file():
            return "unknown"
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for lib in _LIBS:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; ``platform.processor()`` elsewhere, "unknown" when empty):
    timings are comparable only on the same model."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_info(config: dict | None = None, config_sha256: str | None = None, seeds: dict | None = None,
             extra: dict | None = None) -> dict[str, Any]:
    """A provenance record for one run."""
    info: dict[str, Any] = {
        "git_commit": git_commit(),
        "utc_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command_line": sys.argv,
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "versions": library_versions(),
        "seeds": seeds or {},
    }
    if config is not None:
        info["config"] = config
    if config_sha256:
        info["config_sha256"] = config_sha256
    if extra:
        info.update(extra)
    return info
