"""``catalog build``: ingestion -> positives -> negative pool -> splits -> sampling -> manifests -> verify.

Outputs in ``cfg.out``::

    config.resolved.yaml, run_info.json
    sweeps_parquet/sweep=<name>/part-0.parquet     ingested sweeps (native byte order)
    cutflow.json                                   rows removed by each cut, per sweep and in total
    positives.parquet, unmatched_candidates.csv    matched candidates; the rest with reasons
    shortfalls.csv                                 per stratum and pool: quota, available, taken, shortfall
    manifest_<scheme>.parquet                      one per split scheme
    verify_<scheme>.json / .txt                    verification report (a failure exits non-zero)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from lensaudit.artifacts import CatalogDir
from lensaudit.catalog import stages as st
from lensaudit.catalog.candidates import CatalogInputError, read_candidates
from lensaudit.catalog.config import CatalogConfig
from lensaudit.catalog.engines import Engine, make_engine
from lensaudit.catalog.ingest import list_partitions, list_sweeps
from lensaudit.catalog.manifest import assemble_manifest, manifest_metadata, write_manifest
from lensaudit.catalog.verify import format_report, verify_manifest
from lensaudit.config import write_resolved
from lensaudit.reference import resolve_path
from lensaudit.survey.columns import LENS_COLUMNS
from lensaudit.utils.io import atomic_write_json, atomic_write_text
from lensaudit.utils.provenance import run_info

log = logging.getLogger(__name__)


def cutflow_table(flows: list[dict], candidate_skips: list[dict], n_duplicates: int) -> dict:
    """Per-sweep and total cut flow (ordered as applied), plus candidate-row skips and duplicate ids."""
    flows = sorted(flows, key=lambda f: f["sweep"])
    keys = ["rows_in", *st.CUT_ORDER, "rows_eligible"]
    total = {k: int(sum(f[k] for f in flows)) for k in keys}
    total["duplicate_ids"] = n_duplicates
    return {"order": keys, "per_sweep": flows, "total": total,
            "candidate_rows_skipped": candidate_skips}


def build_catalog(cfg: CatalogConfig, engine: Engine | None = None) -> dict:
    """Run the whole build; returns a summary (manifests, counts, verification results)."""
    t0 = time.monotonic()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    cd = CatalogDir(out)
    with cd.lock("catalog build"):
        cfg_sha = write_resolved(cfg, cd.resolved_config)
        if cfg.cuts.exclusion_radius_arcsec < cfg.positives.match_radius_arcsec:
            raise CatalogInputError(f"config: exclusion radius {cfg.cuts.exclusion_radius_arcsec} arcsec is smaller than "
                                    f"the match radius {cfg.positives.match_radius_arcsec}: positives could leak into negatives")
        cands, skipped = read_candidates(resolve_path(cfg.candidates), cfg.on_bad_rows)
        if not len(cands):
            raise CatalogInputError(f"candidates {cfg.candidates}: no valid rows")
        eng = engine or make_engine(cfg.engine, cfg.workers, cfg.spark_master)
        src = Path(cfg.sweeps)
        if not src.is_dir():
            raise CatalogInputError(f"sweeps {src}: not a directory")
        fits_files = list_sweeps(src)
        if fits_files:
            ingested = eng.ingest(fits_files, out / "sweeps_parquet", LENS_COLUMNS)
            parts = list_partitions(out / "sweeps_parquet")
            log.info("ingested %d sweep file(s) (%d skipped as already done)", len(ingested),
                     sum(bool(r["skipped"]) for r in ingested))
        else:
            parts = list_partitions(src)
        if not parts:
            raise CatalogInputError(f"sweeps {src}: no sweep-*.fits files and no ingested sweep=*/part-0.parquet partitions")

        def plan_of(nearest: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
            pos = st.resolve_positives(nearest, cands, cfg)[0]
            edges = st.host_edges(pos, cfg)
            return st.sampling_quotas(st.assign_host_cells(pos, edges), cfg), edges

        g = eng.gather(parts, cfg, cands, plan_of)
        pos, unmatched = st.resolve_positives(g.nearest, cands, cfg)
        edges = st.host_edges(pos, cfg)
        pos = st.assign_host_cells(pos, edges)
        quotas = st.sampling_quotas(pos, cfg)
        if cfg.sampling.fill_short_pool:
            quotas = st.rebalance_pools(quotas, g.available)
        short = st.shortfalls(quotas, g.available, g.selected)
        flow = cutflow_table(g.flows, skipped, g.n_duplicate_ids)
        atomic_write_json(cd.cutflow, flow)
        pos.to_parquet(cd.positives, index=False)
        atomic_write_text(cd.unmatched, pd.DataFrame(unmatched, columns=["name", "ra", "dec", "reason"]).to_csv(index=False))
        atomic_write_text(cd.shortfalls, short.to_csv(index=False))
        manifests, reports = {}, {}
        for scheme in cfg.splits.schemes:
            df = assemble_manifest(pos, g.selected, cfg, scheme)
            path = write_manifest(df, cd.manifest(scheme.name), manifest_metadata(cfg, scheme, edges))
            rep = verify_manifest(path, flow)
            atomic_write_json(cd.verify_json(scheme.name), rep)
            atomic_write_text(cd.verify_txt(scheme.name), format_report(rep) + "\n")
            manifests[scheme.name] = str(path)
            reports[scheme.name] = rep["passed"]
        eval_sets = {}
        for es in cfg.eval_sets:
            from lensaudit.catalog.evalsets import build_evalset, load_extra

            extra, read_counts = load_extra(es.format, es.path, cfg.on_bad_rows)
            kept, rep = build_evalset(extra, parts, cfg, pos, cands)
            scheme = cfg.splits.schemes[0]
            df = assemble_manifest(kept.assign(tier="S"), g.selected.iloc[:0], cfg, scheme).assign(split=f"eval_{es.name}")
            path = write_manifest(df, cd.evalset(es.name),
                                  {**manifest_metadata(cfg, scheme), "eval_set": es.model_dump(mode="json")})
            rep = {"read": read_counts, **rep, "manifest": str(path)}
            atomic_write_json(cd.evalset_report(es.name), rep)
            eval_sets[es.name] = {k: v for k, v in rep.items() if k != "unmatched"}
        n_short = int(short["shortfall"].clip(lower=0).sum())
        per_stratum = st.stratum_shortfalls(short)
        worst = per_stratum.sort_values("short_fraction", ascending=False, kind="mergesort").head(1)
        summary = {"engine": eng.name, "n_sweeps": len(parts), "n_candidates": int(len(cands)),
                   "n_candidate_rows_skipped": len(skipped), "n_positives": int(len(pos)),
                   "n_tier_a": int((pos.tier == "A").sum()), "n_tier_b": int((pos.tier == "B").sum()),
                   "n_unmatched": len(unmatched), "unmatched_fraction": round(len(unmatched) / len(cands), 4),
                   "n_negatives": int(len(g.selected)), "n_eligible_negatives": int(g.available["available"].sum()),
                   "negative_shortfall": n_short,
                   "max_stratum_short_fraction": round(float(worst["short_fraction"].iat[0]), 4) if len(worst) else 0.0,
                   "strata_short_over_5pct": [f"{r.nobs_z_bin} {r.type}" for r in per_stratum.itertuples()
                                              if r.short_fraction > 0.05],
                   "cutflow_total": flow["total"], "manifests": manifests,
                   "verified": reports, "eval_sets": eval_sets, "elapsed_s": round(time.monotonic() - t0, 2)}
        atomic_write_json(cd.run_info, run_info(config=cfg.model_dump(mode="json"), config_sha256=cfg_sha,
                                                          seeds={"split": cfg.splits.seed, "sampling": cfg.sampling.seed},
                                                          extra={"summary": summary}))
        return summary
