"""Resumable stages: a stage is skipped when its recorded inputs are unchanged.

Each stage writes ``<out>/<stage>/stage.json`` *after* its outputs, holding the SHA-256 of its
inputs (config, upstream stage hashes, input file hashes). A stage whose record matches and
whose outputs exist is skipped; any change upstream changes the hashes downstream.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lensaudit.artifacts import Run
from lensaudit.utils.io import atomic_write_json, sha256_json

log = logging.getLogger(__name__)


def run_stage(out_dir: Path, name: str, inputs: dict[str, Any], fn: Callable[[Path], dict | None],
              force: bool = False) -> dict:
    """Run ``fn(stage_dir)`` unless ``stage_dir/stage.json`` records the same inputs hash.

    Returns the stage record: name, inputs_sha256, skipped, elapsed_s and fn's summary dict.
    """
    stage_dir = Path(out_dir) / name
    record_path = Run(out_dir).stage_record(name)
    digest = sha256_json(inputs)
    if not force and record_path.exists():
        try:
            rec = json.loads(record_path.read_text())
        except json.JSONDecodeError:
            rec = {}
        if rec.get("inputs_sha256") == digest and rec.get("complete"):
            log.info("stage %-14s skipped (inputs unchanged, %s)", name, digest[:12])
            rec["skipped"] = True
            return rec
    stage_dir.mkdir(parents=True, exist_ok=True)
    log.info("stage %-14s running", name)
    t0 = time.monotonic()
    summary = fn(stage_dir) or {}
    rec = {"stage": name, "inputs_sha256": digest, "inputs": inputs, "complete": True,
           "elapsed_s": round(time.monotonic() - t0, 3), "summary": summary,
           "utc_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(record_path, rec)
    rec["skipped"] = False
    return rec
