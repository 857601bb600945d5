"""``lensaudit ensemble run``: train one model per domain, combine them, and measure what the ensemble buys.

Orchestration only (I/O at the edges): domains (:mod:`.domains`) pick each member's training rows; each
member is trained by :func:`lensaudit.train.loop.train` on its own filtered manifest (negatives keep
their stratification within the domain); every member and the baseline score the fit and audit splits;
the combinations (:mod:`.combine`) and the metrics (:mod:`.metrics`) are computed on the audit split.
A member whose training finished with the same config is not retrained; an interrupted one resumes
from its ``last.pt``. The truth table (mock only) is read for the recall of true lenses and nothing else.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from lensaudit.artifacts import (
    EnsembleDir,
    OperatingPoint,
    TrainDir,
    healpix_column,
    read_manifest,
    read_table,
    write_doc,
    write_table,
)
from lensaudit.artifacts.kinds import ENSEMBLE
from lensaudit.config import load_config, write_resolved
from lensaudit.ensemble import combine, metrics
from lensaudit.ensemble.config import EnsembleConfig
from lensaudit.ensemble.domains import assign_all, domain_counts, domain_labels, member_name, own_member
from lensaudit.errors import InputError
from lensaudit.evaluate.config import EvalConfig
from lensaudit.evaluate.overall import auc_entry
from lensaudit.utils.io import atomic_write_json, sha256_file
from lensaudit.utils.provenance import run_info

log = logging.getLogger(__name__)


def _train_config(cfg: EnsembleConfig):
    from lensaudit.configs import bundled_config
    from lensaudit.train.config import TrainConfig

    p = Path(cfg.train_config)
    if not p.is_file():
        p = bundled_config(cfg.train_config)
    return load_config(p, TrainConfig)


def _train_member(base, manifest_path: Path, out: Path, store: str, epochs: int | None) -> Path:
    """Train (or reuse, or resume) one member; returns its best checkpoint. A finished member is reused only when its
    config and the contents of its manifest and store are those it was trained on (:func:`train_inputs`)."""
    from lensaudit.train.checkpoint import CheckpointError
    from lensaudit.train.loop import train, train_inputs

    upd = {"manifest": str(manifest_path), "store": store, "out": str(out)}
    if epochs:
        upd["epochs"] = epochs
    tc = base.model_copy(update=upd)
    td = TrainDir(out)
    best, record = td.best, td.run_info
    if record.is_file() and best.is_file():
        done = json.loads(record.read_text())
        if _identity(done.get("config") or {}) == _identity(tc.model_dump(mode="json")) and \
                done.get("inputs") == train_inputs(tc):
            log.info("member %s: trained already, reused", out.parent.name)
            return best
        log.info("member %s: its config or the contents of its manifest or store changed: trained again",
                 out.parent.name)
        return _retrain(tc, best)
    resume = td.last.is_file() and not record.is_file()
    log.info("member %s: %s", out.parent.name, "resuming" if resume else "training")
    try:
        train(tc, resume=resume, force=not resume)
    except CheckpointError as exc:    # an interrupted member whose config or inputs changed: start it again
        if not resume:
            raise
        log.info("member %s: cannot resume (%s): trained again", out.parent.name, exc)
        train(tc, resume=False, force=True)
    return best


def _retrain(tc, best: Path) -> Path:
    from lensaudit.train.loop import train

    train(tc, resume=False, force=True)
    return best


#: Training-config keys that name places or resources, not what is trained (the inputs' contents stand for them).
_PLACES = ("out", "manifest", "store", "num_workers", "threads", "device")


def _identity(config: dict) -> dict:
    """What a member's training is, apart from where its files live: reuse compares this and the inputs' contents."""
    return {k: v for k, v in config.items() if k not in _PLACES}


def _scores(checkpoint: Path, rows: pd.DataFrame, store: str, path: Path) -> pd.DataFrame:
    """A member's (id, logit, probability) on ``rows``, cached in ``path`` for this checkpoint."""
    from lensaudit.artifacts import PREDICTIONS_META_KEY, read_table_metadata
    from lensaudit.cutouts import CutoutStore
    from lensaudit.train.score import score_manifest, write_predictions

    sha = sha256_file(checkpoint)
    if path.is_file():
        meta = read_table_metadata(path, PREDICTIONS_META_KEY) or {}
        old = pd.read_parquet(path)
        if meta.get("checkpoint_sha256") == sha and old["id"].astype(str).tolist() == rows["id"].tolist():
            return old
    df = score_manifest(checkpoint, rows, CutoutStore(store), batch_size=256, device="auto")
    write_predictions(df, path, checkpoint)
    return df


def _meta_scores(logits: pd.DataFrame, frame: pd.DataFrame, fit: np.ndarray, audit: np.ndarray, cfg: EnsembleConfig,
                 out: Path, name: str) -> np.ndarray:
    """Meta-learner probabilities on the audit rows: fitted (out of fold) on the fit rows, then applied."""
    from lensaudit.train.meta import MetaConfig, apply_meta, fit_meta_learner, save_meta

    hp = healpix_column(frame.columns)
    man = frame[["id", "label", *([hp] if hp else [])]]
    preds = {c: pd.DataFrame({"id": frame["id"], "logit": logits[c].to_numpy()}) for c in logits.columns}
    _, state, rep = fit_meta_learner({c: p[fit] for c, p in preds.items()}, man[fit],
                                     MetaConfig(folds=cfg.combine.meta_folds, seed=cfg.seed))
    ed = EnsembleDir(out)
    path = ed.meta_model(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_meta(state, path)
    atomic_write_json(ed.meta_report(name), rep)
    return apply_meta(path, {c: p[audit] for c, p in preds.items()}, man[audit])["probability"].to_numpy()


def _member_rows(cfg: EnsembleConfig, manifest: pd.DataFrame, domains: pd.DataFrame, base) -> dict[str, tuple]:
    """(definition, domain, manifest rows) of every member, after checking each has lenses and non-lenses in the
    training and validation splits: a bad domain is refused before any member trains."""
    plan = {}
    for d in cfg.domains:
        for lab in domain_labels(d):
            name = member_name(d.name, lab)
            sub = manifest[(domains[d.name] == lab).fillna(False).to_numpy(bool)]
            for sp in (base.train_split, base.val_split):
                for y in (0, 1):
                    if not ((sub["split"] == sp) & (sub["label"] == y)).any():
                        raise InputError(f"member {name}: domain {d.name}={lab} has no {'lenses' if y else 'non-lenses'} "
                                         f"in split {sp!r}; change the domain definition")
            plan[name] = (d.name, lab, sub)
    return plan


def _train_members(cfg: EnsembleConfig, ed: EnsembleDir, base, plan: dict[str, tuple]) -> dict[str, dict]:
    """Write each member's manifest (when its rows changed) and train, reuse or resume it."""
    members = {}
    for name, (definition, lab, sub) in plan.items():
        mpath = ed.member_manifest(name)
        mpath.parent.mkdir(parents=True, exist_ok=True)
        if not mpath.is_file() or not pd.read_parquet(mpath, columns=["id"])["id"].astype(str).equals(
                sub["id"].astype(str).reset_index(drop=True)):
            write_table(sub.reset_index(drop=True), mpath)
        members[name] = {"definition": definition, "domain": lab, "n_rows": int(len(sub)),
                         "n_train_lenses": int(((sub["split"] == base.train_split) & (sub["label"] == 1)).sum()),
                         "checkpoint": _train_member(base, mpath, ed.member_train(name).root, cfg.store, cfg.epochs)}
    return members


def _score_rows(cfg: EnsembleConfig, ed: EnsembleDir, manifest: pd.DataFrame, domains: pd.DataFrame,
                scorers: dict[str, Path]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(rows of the fit and audit splits sorted by id, their domains, logits and probabilities per scorer)."""
    rows = manifest[manifest["split"].isin([cfg.fit_split, cfg.audit_split])].copy()
    rows["id"] = rows["id"].astype(str)
    rows = rows.sort_values("id", kind="stable").reset_index(drop=True)  # ties in every ranking break by id
    dom = domains.set_index(domains["id"]).loc[rows["id"]].reset_index(drop=True)
    ed.scores("baseline").parent.mkdir(exist_ok=True)
    logit, prob = pd.DataFrame(index=rows.index), pd.DataFrame(index=rows.index)
    for n, ck in scorers.items():
        s = _scores(Path(ck), rows, cfg.store, ed.scores(n))
        logit[n], prob[n] = s["logit"].to_numpy(), s["probability"].to_numpy()
    return rows, dom, logit, prob


def _measure(cfg: EnsembleConfig, table: pd.DataFrame, targets: dict, members: dict, combos: dict, groups: dict,
             logit: pd.DataFrame, prob: pd.DataFrame, audit: np.ndarray, op: OperatingPoint) -> tuple:
    """(performance, correlations, disagreement, selective curves, yields, unique finds) on the audited rows."""
    y = table["label"].to_numpy(int)
    ecfg = EvalConfig(n_boot=cfg.n_boot, seed=cfg.seed, min_count=cfg.min_count, block_bootstrap=False)
    score_cols = {"baseline": table["p_baseline"].to_numpy(), **{n: table[f"p_{n}"].to_numpy() for n in members},
                  **{c: table[c].to_numpy() for c in combos}}
    perf = []
    for n, s in score_cols.items():
        e = auc_entry(y, s, ecfg, what=f"ensemble.{n}")
        tier_a = targets.get("Tier A")
        ea = auc_entry(y[(y == 0) | tier_a], s[(y == 0) | tier_a], ecfg, what=f"ensemble.{n}.tier_a") \
            if tier_a is not None else None
        det = op.detected(s)
        r = metrics.proportion_row(int((det & (y == 1)).sum()), int((y == 1).sum()))
        f = metrics.proportion_row(int((det & (y == 0)).sum()), int((y == 0).sum()))
        perf.append({"scorer": n, "kind": "baseline" if n == "baseline" else "member" if n in members else "ensemble",
                     "auc": e.value, "auc_lo95": e.bootstrap.ci95[0] if e.bootstrap else None,
                     "auc_hi95": e.bootstrap.ci95[1] if e.bootstrap else None,
                     "auc_tier_a": ea.value if ea else None,
                     "auc_tier_a_lo95": ea.bootstrap.ci95[0] if ea and ea.bootstrap else None,
                     "auc_tier_a_hi95": ea.bootstrap.ci95[1] if ea and ea.bootstrap else None,
                     "recall": r["value"], "recall_lo95": r["lo95"], "recall_hi95": r["hi95"],
                     "fpr": f["value"], "fpr_lo95": f["lo95"], "fpr_hi95": f["hi95"]})
    perf = pd.DataFrame(perf)

    corr, dis = [], []
    for g, names in groups.items():
        strata = table[f"domain_{g}"] if g != "all" else None
        lg = logit.loc[audit, ["baseline", *names]].reset_index(drop=True)
        c = metrics.pairwise_correlations(lg, strata, cfg.n_boot, cfg.seed, cfg.min_count)
        corr.append(c.assign(group=g))
        dd = metrics.disagreement_table(prob.loc[audit, names].reset_index(drop=True), y, cfg.threshold, strata)
        dis.append(dd.assign(group=g))
    corr, dis = pd.concat(corr, ignore_index=True), pd.concat(dis, ignore_index=True)

    sel = []
    base_p = table["p_baseline"].to_numpy()
    for c, info in combos.items():
        sel.append(metrics.selective_curve(y, table[c].to_numpy(), table[info["uncertainty"]].to_numpy(),
                                           cfg.threshold, cfg.set_aside).assign(scorer=c, uncertainty="member spread"))
    # references: the single model's own margin |p - threshold|, and a random order (seeded)
    sel.append(metrics.selective_curve(y, base_p, -np.abs(base_p - cfg.threshold), cfg.threshold, cfg.set_aside)
               .assign(scorer="baseline", uncertainty="margin |p - threshold|"))
    from lensaudit.utils.seeds import rng

    sel.append(metrics.selective_curve(y, base_p, rng(cfg.seed, "ensemble.random_set_aside").random(len(y)),
                                       cfg.threshold, cfg.set_aside).assign(scorer="baseline", uncertainty="random"))
    sel = pd.concat(sel, ignore_index=True)

    yields, uniq = [], []
    for n, s in score_cols.items():
        yields.append(metrics.top_k_yield(s, targets, cfg.top_k).assign(scorer=n))
    for c, info in combos.items():
        mem = table[[f"p_{m}" for m in info["members"]]].rename(columns=lambda x: x[2:])
        for tname, t in targets.items():
            for k in cfg.top_k:
                uniq.append({"scorer": c, "target": tname, **metrics.unique_finds(mem, table[c].to_numpy(), t, k)})
    yields, uniq = pd.concat(yields, ignore_index=True), pd.DataFrame(uniq)

    return perf, corr, dis, sel, yields, uniq


def run_ensemble(cfg: EnsembleConfig, config_path: str | os.PathLike | None = None) -> dict:
    """Run the whole ensemble study into ``cfg.out`` (:class:`EnsembleDir`); returns the summary (also written)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ed = EnsembleDir(out)
    with ed.lock("ensemble run"):
        cfg_sha = write_resolved(cfg, ed.resolved_config)
        manifest = read_manifest(cfg.manifest, require=("id", "label", "split"))
        base = _train_config(cfg)
        for sp in (base.train_split, cfg.fit_split, cfg.audit_split):
            if not (manifest["split"] == sp).any():
                raise InputError(f"{cfg.manifest}: no rows in split {sp!r}")
        domains, rules = assign_all(manifest, cfg.domains, base.train_split)  # medians from the members' training split
        counts = domain_counts(manifest, domains, cfg.domains)
        write_table(pd.concat([domains, manifest[["split", "label"]]], axis=1), ed.domains)
        counts.to_csv(ed.domain_counts, index=False)

        plan = _member_rows(cfg, manifest, domains, base)        # every member checked before the first one trains
        baseline = Path(cfg.baseline) if cfg.baseline else None
        if baseline is not None and not baseline.is_file():
            raise InputError(f"ensemble baseline {baseline}: checkpoint not found")
        members = _train_members(cfg, ed, base, plan)
        if baseline is None:
            mp = ed.member_manifest("baseline")
            mp.parent.mkdir(parents=True, exist_ok=True)
            if not mp.is_file():
                write_table(manifest.reset_index(drop=True), mp)
            baseline = _train_member(base, mp, ed.member_train("baseline").root, cfg.store, cfg.epochs)
        rows, dom, logit, prob = _score_rows(cfg, ed, manifest, domains,
                                             {"baseline": baseline, **{n: m["checkpoint"] for n, m in members.items()}})

        fit = (rows["split"] == cfg.fit_split).to_numpy()
        audit = (rows["split"] == cfg.audit_split).to_numpy()
        combos: dict[str, dict] = {}
        defs = {d.name: d for d in cfg.domains}
        groups = {d.name: [member_name(d.name, lab) for lab in domain_labels(d)] for d in cfg.domains}
        if len(cfg.domains) > 1:
            groups["all"] = list(members)
        combined = pd.DataFrame({"id": rows["id"][audit].to_numpy()})
        for g, names in groups.items():
            p = prob.loc[audit, names].to_numpy()
            combined[f"average_{g}"] = combine.average(p)
            combined[f"spread_{g}"] = combine.member_spread(p)
            combos[f"average_{g}"] = {"members": names, "rule": "mean probability", "uncertainty": f"spread_{g}"}
            if g != "all":
                own = own_member(dom.loc[audit, g], defs[g])
                combined[f"gate_{g}"] = combine.domain_gate(p, own, cfg.combine.gate_weight)
                combos[f"gate_{g}"] = {"members": names, "rule": f"own domain x {cfg.combine.gate_weight:g}, others share "
                                                                 f"the rest", "uncertainty": f"spread_{g}"}
            if cfg.combine.meta:
                combined[f"meta_{g}"] = _meta_scores(logit[names], rows, fit, audit, cfg, out, g)
                combos[f"meta_{g}"] = {"members": names, "rule": "meta-learner (out-of-fold on the fit split)",
                                       "uncertainty": f"spread_{g}"}
        a_rows = rows[audit].reset_index(drop=True)
        y = a_rows["label"].to_numpy(int)
        table = pd.concat([a_rows[["id", "split", "label", *[c for c in ("tier", "type") if c in a_rows]]],
                           prob[audit].reset_index(drop=True).add_prefix("p_"),
                           combined.drop(columns="id")], axis=1)
        table = pd.concat([table, dom.loc[audit, [d.name for d in cfg.domains]].reset_index(drop=True)
                           .add_prefix("domain_")], axis=1)
        targets = {"lenses (label 1)": y == 1}
        if "tier" in a_rows:
            targets["Tier A"] = (a_rows["tier"] == "A").to_numpy()
        if cfg.truth:
            t = read_table(cfg.truth, "truth table")
            true_ids = set(t.loc[t["kind"] == "lens", "id"].astype(str))
            targets["true lenses (mock truth)"] = a_rows["id"].isin(true_ids).to_numpy()
            table["true_lens"] = targets["true lenses (mock truth)"]
        write_table(table, ed.audit_scores)

        op = OperatingPoint.fixed(cfg.threshold)
        perf, corr, dis, sel, yields, uniq = _measure(cfg, table, targets, members, combos, groups, logit, prob, audit, op)
        tables = {"performance": perf, "correlations": corr, "disagreement": dis, "selective": sel, "yield": yields,
                  "unique_finds": uniq, "domain_counts": counts}
        ed.tables.mkdir(exist_ok=True)
        for k, v in tables.items():
            v.to_csv(ed.table(k), index=False)
            write_table(v, ed.table(k, "parquet"))
        from lensaudit.ensemble.figures import write_figures

        figs = write_figures(tables, groups, cfg, ed)
        sel_summary = None
        if cfg.selection is not None:
            from lensaudit.ensemble.selection import compare_selection

            metas = {g: ed.meta_model(g) for g in groups} if cfg.combine.meta else {}
            sel_summary = compare_selection(cfg, Path(baseline), {n: Path(m["checkpoint"]) for n, m in members.items()},
                                            groups, domains.set_index("id"), defs, metas, out)
            figs += sel_summary["figures"]
        summary = {"out": str(out), "rules": rules, "audit_split": cfg.audit_split, "fit_split": cfg.fit_split,
                   "threshold": cfg.threshold, "operating_point": op.to_dict(), "n_audit": int(len(y)),
                   "n_audit_lenses": int(y.sum()),
                   "members": {n: {k: (str(v) if isinstance(v, Path) else v) for k, v in m.items()} for n, m in members.items()},
                   "baseline": str(baseline), "combinations": combos, "targets": {k: int(v.sum()) for k, v in targets.items()},
                   "tables": {k: str(ed.table(k).relative_to(ed.root)) for k in tables}, "figures": figs,
                   "selection": sel_summary,
                   "run_info": run_info(cfg.model_dump(mode="json"), cfg_sha, seeds={"ensemble": cfg.seed})}
        write_doc(ed.summary, ENSEMBLE, summary)
        atomic_write_json(ed.run_info, summary["run_info"])
        return summary
