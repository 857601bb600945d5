"""The offline exchange: a selection run scored by a lens finder that cannot run here.

``lensaudit selection export --config sel.yaml`` writes, under ``<out>/exchange/``, every cutout the run would score
(the audited splits' negatives, which set the FPR thresholds, and every injection) and the audited splits' lenses
(whose scores and features the realism gate and the evaluation need), and
``lensaudit selection import-scores --config sel.yaml scores.csv`` completes the run with the user's scores. The
layout (also written as ``exchange/README.md``)::

    exchange.json                       format, run_id, counts, shards (file, n, SHA-256), the config
    ids.csv                             id, kind (negative | positive | injection), family, shard, row, cutout_sha256
    negatives/shard_00000.npz           ids (str, n), cutouts (float32, n x 3 x 101 x 101, nanomaggies, bands g, r, z)
    positives/shard_00000.npz           the audited splits' lenses (label 1), the same arrays
    injections/<family>/shard_00000.npz every injection of the family, the same arrays

Read a shard with ``numpy.load(path, allow_pickle=False)``. Ids are ``negative:<manifest id>``,
``positive:<manifest id>`` and ``injection:<family>:<index>``. The scores file is CSV (or Parquet) with the columns
``run_id`` (the export's, every row), ``id``, ``probability`` (in [0, 1]) and optionally
``feature_0 ... feature_<F-1>`` (the model's penultimate features, for the realism gate). It is checked whole before
anything is written: every exported id exactly once, no other id, probabilities finite in [0, 1], features finite,
the run id the export's; a failure names the file and its first offending line. The run id is a hash of what
decides the cutouts (the config but its model, thresholds and output settings; the manifest, store, stamp
libraries), so a changed config or input is refused, not mixed. On import the cutouts are rendered again and each
one's SHA-256 is compared with the export's: the scores are tied to the pixels the user scored. The import also
writes ``exchange/predictions.parquet``: the negatives' and lenses' scores (and features) under their manifest ids,
a predictions file like ``lensaudit score``'s, for ``lensaudit realism`` and ``lensaudit evaluate``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import SelectionRunDir
from lensaudit.cutouts import CutoutStore
from lensaudit.inject import build_family
from lensaudit.selection.config import SelectionConfig
from lensaudit.selection.scores_file import EXCHANGE_FORMAT, NOT_IN_RUN_ID, cutout_hashes, exchange_id
from lensaudit.utils.io import atomic_path, atomic_write_json, atomic_write_text, sha256_file

log = logging.getLogger(__name__)


def _write_shard(root: Path, path: Path, ids: list[str], cutouts: np.ndarray) -> dict:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, ids=np.asarray(ids, dtype=str), cutouts=np.ascontiguousarray(cutouts, np.float32))
    return {"file": path.relative_to(root).as_posix(), "n": len(ids), "sha256": sha256_file(path)}


def export_exchange(cfg: SelectionConfig) -> dict:
    """Write the exchange of ``cfg`` (see the module docstring) under ``<cfg.out>/exchange``; returns its manifest.
    An older exchange in that folder is replaced; the run's other files (hosts, host noise) are the run's own."""
    from lensaudit.selection.run import (
        _family_job,
        _inject_chunk,
        _setup,
        audited_lenses,
        audited_negatives,
        injection_ids,
        input_fingerprints,
        plan_memory,
    )

    plan_memory(cfg)
    families = {f.name: build_family(f) for f in cfg.families}
    rd = SelectionRunDir(cfg.out)
    store = CutoutStore(cfg.store)
    inputs = input_fingerprints(cfg, store)
    xid = exchange_id(cfg, inputs)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    with rd.lock("selection export"):
        st = _setup(cfg, rd, store, inputs)
        if rd.exchange.exists():
            shutil.rmtree(rd.exchange)
        shards, rows = [], []
        counts = {}
        for group, kind, ids_all in (("negatives", "negative", audited_negatives(cfg, st.manifest, store)),
                                     ("positives", "positive", audited_lenses(cfg, st.manifest, store))):
            for k, lo in enumerate(range(0, len(ids_all), cfg.chunk_size)):
                part = ids_all[lo : lo + cfg.chunk_size]
                ids, cut = [f"{kind}:{i}" for i in part], store.get(part)
                shards.append(_write_shard(rd.exchange, rd.exchange_shard(group, k), ids, cut))
                rows += [(kind, "", shards[-1]["file"], r, i, h)
                         for r, (i, h) in enumerate(zip(ids, cutout_hashes(cut), strict=True))]
            counts[group] = len(ids_all)
        for fam_cfg in cfg.families:
            job = _family_job(cfg, fam_cfg, families[fam_cfg.name], st, None, rd, xid)
            for k in range(job.n_chunks):
                img, rec = _inject_chunk(job, k)
                ids = injection_ids(fam_cfg.name, rec["index"])
                shards.append(_write_shard(rd.exchange, rd.exchange_shard("injections", k, fam_cfg.name), ids, img))
                rows += [("injection", fam_cfg.name, shards[-1]["file"], r, i, h)
                         for r, (i, h) in enumerate(zip(ids, cutout_hashes(img), strict=True))]
            counts[f"injections:{fam_cfg.name}"] = len(job.plan)
            log.info("exchange: %s: %d injections in %d shard(s)", fam_cfg.name, len(job.plan), job.n_chunks)
        tab = pd.DataFrame(rows, columns=["kind", "family", "shard", "row", "id", "cutout_sha256"])
        tab = tab[["id", "kind", "family", "shard", "row", "cutout_sha256"]]
        with atomic_path(rd.exchange_ids) as tmp:
            tab.to_csv(tmp, index=False)
        atomic_write_text(rd.exchange_readme, __doc__.split("\n\n", 1)[1])
        man = {"format": EXCHANGE_FORMAT, "run_id": xid, "n_cutouts": len(tab), "counts": counts,
               "ids": rd.exchange_ids.name, "ids_sha256": sha256_file(rd.exchange_ids), "shards": shards,
               "cutouts": {"dtype": "float32", "shape": [3, 101, 101], "bands": ["g", "r", "z"], "unit": "nanomaggies"},
               "scores_file": {"columns": ["run_id", "id", "probability"], "optional": "feature_0 ... feature_<F-1>"},
               "config": cfg.model_dump(mode="json", exclude=NOT_IN_RUN_ID)}
        atomic_write_json(rd.exchange_manifest, man)          # last: an exchange without it is incomplete
    log.info("exchange %s: %d cutouts under %s", xid, len(tab), rd.exchange)
    return {k: v for k, v in man.items() if k not in ("shards", "config")} | {"out": str(rd.exchange)}
