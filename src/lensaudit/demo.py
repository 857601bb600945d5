"""``lensaudit demo``: every stage that exists, in order, on the embedded default data.

Each stage is skipped when its recorded inputs are unchanged (see :mod:`lensaudit.pipeline`).
Later pipeline stages add themselves here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lensaudit.pipeline import run_stage
from lensaudit.utils.io import atomic_write_json, sha256_file
from lensaudit.utils.provenance import run_info

log = logging.getLogger(__name__)


def default_shared_data() -> Path:
    """Real DR10 reference data: ``$LENSAUDIT_SHARED_DATA`` or ``../shared/data`` from the cwd."""
    env = os.environ.get("LENSAUDIT_SHARED_DATA")
    return Path(env) if env else Path.cwd().parent / "shared" / "data"


def _stage_samples(shared: Path):
    """Import the real DR10 sample cutouts into a store, verify it, export them as service FITS."""
    from lensaudit.cutouts import CutoutStore, export_cutouts, import_npz

    files = sorted((shared / "dr10_sample_cutouts").glob("*.npz"))

    def run(stage_dir: Path) -> dict:
        store = CutoutStore(stage_dir / "store", create=True)
        rep = import_npz(files, store)
        ver = store.verify()
        written = export_cutouts(store, list(store.ids()), stage_dir / "fits", "fits")
        return {"n_imported": rep.n_imported, "n_stored": ver["n_cutouts"], "n_exported_fits": len(written),
                "failures": rep.failures}

    inputs = {"files": {f.name: sha256_file(f) for f in files}}
    return inputs, run


def run_demo(out: Path, quick: bool = False, shared_data: Path | None = None, force: bool = False) -> dict:
    """Run the demo pipeline into ``out``; returns a summary of every stage."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shared = shared_data or default_shared_data()
    if not (shared / "dr10_sample_cutouts").is_dir():
        raise FileNotFoundError(f"demo: real DR10 reference data not found in {shared} "
                                "(pass --shared-data or set LENSAUDIT_SHARED_DATA)")
    stages: dict[str, dict] = {}
    inputs, fn = _stage_samples(shared)
    stages["samples"] = run_stage(out, "samples", inputs, fn, force=force)
    summary = {name: {"skipped": rec["skipped"], **rec.get("summary", {})} for name, rec in stages.items()}
    atomic_write_json(out / "run_info.json", run_info(config={"quick": quick, "shared_data": str(shared)},
                                                      extra={"stages": summary}))
    return summary
