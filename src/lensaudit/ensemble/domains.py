"""Domains over manifest columns: which objects each domain model trains on and is responsible for.

Pure functions on DataFrames. A definition cuts the manifest one way (seeing, depth, exposures,
morphology); every object lies in exactly the domain its column puts it in, or in none of that
definition when its value is missing or outside every bin or group. A median cut is taken over the
training split only, so the audited rows do not move it.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd

from lensaudit.ensemble.config import DomainDef
from lensaudit.errors import InputError


def _fmt(v: float) -> str:
    return "inf" if np.isinf(v) else f"{v:g}"


def resolve_cut(defn: DomainDef, manifest: pd.DataFrame, train_split: str = "train") -> float | None:
    """The numeric cut of a ``split`` definition (the training split's median for ``'median'``); else None."""
    if defn.split is None:
        return None
    if defn.split != "median":
        return float(defn.split)
    x = pd.to_numeric(manifest.loc[manifest["split"] == train_split, defn.column], errors="coerce").to_numpy(float)
    x = x[np.isfinite(x)]
    if not x.size:
        raise InputError(f"domain {defn.name!r}: no finite {defn.column} in split {train_split!r} to take a median of")
    return float(np.median(x))


def domain_labels(defn: DomainDef) -> list[str]:
    """The domains of a definition, in order."""
    if defn.split is not None:
        return list(defn.labels)
    if defn.edges is not None:
        return [f"{_fmt(a)}-{_fmt(b)}" for a, b in itertools.pairwise(defn.edges)]
    assert defn.groups is not None
    return list(defn.groups)


def assign_domain(manifest: pd.DataFrame, defn: DomainDef, cut: float | None = None) -> pd.Series:
    """Each row's domain under ``defn`` (a string; missing where the row is in none). ``cut``: the resolved
    value of a ``split`` definition (:func:`resolve_cut`)."""
    if defn.column not in manifest:
        raise InputError(f"domain {defn.name!r}: the manifest has no column {defn.column!r}")
    col = manifest[defn.column]
    out = pd.Series(pd.NA, index=manifest.index, dtype="string", name=defn.name)
    if defn.groups is not None:
        val = col.astype("string").str.strip()
        for g, vals in defn.groups.items():
            out[val.isin([str(v).strip() for v in vals]).fillna(False).to_numpy(bool)] = g
        return out
    x = pd.to_numeric(col, errors="coerce").to_numpy(float)
    if np.isnan(x).all() and col.notna().any():
        raise InputError(f"domain {defn.name!r}: column {defn.column!r} is not numeric; use groups for it")
    ok = np.isfinite(x)
    if defn.split is not None:
        if cut is None:
            raise InputError(f"domain {defn.name!r}: resolve the cut first (resolve_cut)")
        out[ok & (x < cut)] = defn.labels[0]
        out[ok & (x >= cut)] = defn.labels[1]
        return out
    assert defn.edges is not None
    e = np.asarray(defn.edges, float)
    k = np.searchsorted(e, x, side="right") - 1  # bin k holds e[k] <= x < e[k+1]
    inside = ok & (k >= 0) & (k < e.size - 1)
    labels = np.asarray(domain_labels(defn), dtype=object)
    out[inside] = labels[k[inside]]
    return out


def assign_all(manifest: pd.DataFrame, defs: tuple[DomainDef, ...], train_split: str = "train"):
    """(DataFrame of id + one domain column per definition, {definition: resolved rule}) for the manifest."""
    missing = [(d.name, d.column) for d in defs if d.column not in manifest]
    if missing:
        raise InputError("ensemble domains: the manifest has no column " + "; ".join(
            f"{c!r} (domain {n!r})" for n, c in missing) + f"; it has {sorted(map(str, manifest.columns))[:30]}")
    frame = pd.DataFrame({"id": manifest["id"].astype(str).to_numpy()}, index=manifest.index)
    rules = {}
    for d in defs:
        cut = resolve_cut(d, manifest, train_split)
        frame[d.name] = assign_domain(manifest, d, cut)
        rule: dict = {"column": d.column, "domains": domain_labels(d)}
        if cut is not None:
            rule.update(cut=cut, cut_from="median of split " + train_split if d.split == "median" else "config")
        if d.edges is not None:
            rule["edges"] = [float(v) for v in d.edges]
        if d.groups is not None:
            rule["groups"] = {g: list(v) for g, v in d.groups.items()}
        rules[d.name] = rule
    return frame, rules


def own_member(domain: pd.Series, defn: DomainDef) -> np.ndarray:
    """Each object's member column within ``defn``'s members (in :func:`domain_labels` order); -1 where the
    object is in none of its domains (what :func:`lensaudit.ensemble.combine.domain_gate` takes)."""
    index = {lab: i for i, lab in enumerate(domain_labels(defn))}
    return domain.astype(object).map(index).fillna(-1).to_numpy(np.int64)


def member_name(definition: str, domain: str) -> str:
    """A member's name (also its folder name): ``<definition>-<domain>`` with unsafe characters replaced."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{definition}-{domain}")


def domain_counts(manifest: pd.DataFrame, domains: pd.DataFrame, defs: tuple[DomainDef, ...]) -> pd.DataFrame:
    """Rows per definition, domain (or 'none'), split and label: what each member trains and is audited on."""
    rows = []
    for d in defs:
        dom = domains[d.name].fillna("none")
        g = pd.DataFrame({"domain": dom, "split": manifest["split"].to_numpy(), "label": manifest["label"].to_numpy()})
        for (dm, sp, lb), n in g.groupby(["domain", "split", "label"], observed=True).size().items():
            rows.append({"definition": d.name, "domain": dm, "split": sp, "label": int(lb), "n": int(n)})
    return pd.DataFrame(rows, columns=["definition", "domain", "split", "label", "n"])
