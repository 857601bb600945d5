"""The contract between stages (lensaudit.artifacts): file names spelled once, one operating point, one
photometric zeropoint, artifact readers that refuse other versions and missing columns."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lensaudit
from lensaudit.artifacts import (
    ArtifactError,
    OperatingPoint,
    Run,
    SplitRule,
    read_artifact_table,
    read_doc,
    write_artifact_table,
    write_doc,
)
from lensaudit.artifacts import kinds as K

PKG = Path(lensaudit.__file__).resolve().parent
LAYOUT = PKG / "artifacts" / "layout.py"
_EXT = r"\.(parquet|json|jsonl|pt|csv|yaml|txt|fits|npz|html|png)$"
_FILE = re.compile(r"^[A-Za-z0-9_]+" + _EXT)
_TEMPLATE = re.compile(r"^[A-Za-z0-9_]+_\{\}[A-Za-z0-9_{}]*" + _EXT)


def _strings(path: Path) -> list[tuple[int, str, bool]]:
    """(line, text, is an f-string) of every string constant in a module; an f-string as its template, each
    replacement field written ``{}``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out, inner = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                if isinstance(v, ast.Constant) and isinstance(v.value, str):
                    parts.append(v.value)
                    inner.add(id(v))
                else:
                    parts.append("{}")
            out.append((node.lineno, "".join(parts), True))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in inner:
            out.append((node.lineno, node.value, False))
    return out


def artifact_names() -> tuple[set[str], set[str]]:
    """(whole file names, f-string templates of parametrised file names) that lensaudit.artifacts.layout declares."""
    whole, templates = set(), set()
    for _, text, is_f in _strings(LAYOUT):
        if _FILE.match(text):
            whole.add(text)
        elif is_f and _TEMPLATE.match(text):
            templates.add(text)
    return whole, templates


def contract_violations() -> list[str]:
    whole, templates = artifact_names()
    prefixes = {t.split("{}")[0] for t in templates}
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        if path.parent.name == "artifacts":
            continue
        for line, text, is_f in _strings(path):
            if text in whole:
                bad.append(f"{path.relative_to(PKG)}:{line} spells {text!r}")
            elif is_f and _TEMPLATE.match(text) and any(text.startswith(p) for p in prefixes):
                bad.append(f"{path.relative_to(PKG)}:{line} spells the artifact name {text!r}")
    return bad


def test_layout_declares_the_artifacts():
    whole, templates = artifact_names()
    assert {"survey.json", "truth.parquet", "best.pt", "metrics.json", "predictions.parquet", "summary.json",
            "thresholds.json", "marginals.parquet", "realism.parquet", "true_lenses.parquet",
            "closure_summary.parquet", "ensemble.json", "index.html", "stage.json", "run_info.json"} <= whole
    assert {"manifest_{}.parquet", "selection_{}.parquet", "heatmap_{}.png", "epoch_{}.pt"} <= templates


def test_no_module_outside_artifacts_spells_an_artifact_file_name():
    assert contract_violations() == []


def test_the_contract_check_catches_a_file_name(tmp_path):
    probe = PKG / "report" / "_contract_probe.py"
    probe.write_text('P = "summary.json"\ndef f(s):\n    return f"manifest_{s}.parquet"\n')
    try:
        v = contract_violations()
    finally:
        probe.unlink()
    assert any("_contract_probe.py:1 spells 'summary.json'" in x for x in v)
    assert any("_contract_probe.py:3 spells the artifact name 'manifest_{}.parquet'" in x for x in v)


def test_the_zeropoint_is_written_once():
    """AB zeropoint 22.5 lives in lensaudit.survey.constants; no module writes the number again."""
    hits = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "constants.py" and path.parent.name == "survey":
            continue
        tree = ast.parse(path.read_text())
        hits += [str(path.relative_to(PKG)) for n in ast.walk(tree)
                 if isinstance(n, ast.Constant) and isinstance(n.value, float) and n.value == 22.5]
    # a grid start at 22.5 mag and a sweep fake's median magnitude are magnitudes, not the zeropoint (once each)
    assert sorted(hits) == ["selection/grid.py", "survey/sweepio.py"], hits


# --------------------------------------------------------------------------- operating point
def test_one_rule_everywhere_a_probability_equal_to_the_threshold_is_detected():
    from lensaudit.ensemble.metrics import unanimous
    from lensaudit.evaluate.metrics import confusion_at
    from lensaudit.selection.function import completeness_table
    from lensaudit.selection.grid import Grid, GridConfig

    op = OperatingPoint.fixed(0.5)
    p = np.array([0.5, 0.4999999, 0.7])
    assert op.detected(p).tolist() == [True, False, True]
    assert confusion_at([1, 1, 1], p, 0.5)["tp"] == 2
    assert unanimous(np.array([[0.5, 0.6], [0.5, 0.4]]), 0.5).tolist() == [True, False]
    grid = Grid(GridConfig(theta_e={"start": 0.5, "stop": 1.5, "step": 1.0}, psf_fwhm={"edges": [0.5, 2.0]},
                           depth={"edges": [22.0, 26.0]}, arc_mag={"start": 20.0, "stop": 21.0, "step": 1.0}))
    t = completeness_table(pd.DataFrame({"cell": [0, 0, 0], "probability": p}), grid, [op], 1)
    assert int(t["k"].iat[0]) == 2 and t["threshold"].iat[0] == "p>=0.5"


def test_threshold_at_fpr_admits_at_most_the_target_fraction():
    rng = np.random.default_rng(3)
    neg = np.round(rng.random(1000), 3)       # ties
    for f in (0.001, 0.01, 0.1, 0.5):
        op = OperatingPoint.at_fpr(neg, f, "test negatives")
        assert op.detected(neg).sum() <= np.floor(f * len(neg))
        # the smallest such threshold: any lower admits more than the target
        assert (neg >= np.nextafter(op.threshold, -np.inf)).sum() > np.floor(f * len(neg)) or op.threshold <= neg.min()
        assert op.resolved and "1,000 test negatives" in op.origin
    small = OperatingPoint.at_fpr(neg[:50], 0.001)
    assert not small.resolved and small.detected(neg[:50]).sum() == 0 and "cannot resolve" in small.origin
    back = OperatingPoint.from_dict(json.loads(json.dumps(small.to_dict())))
    assert back == small
    with pytest.raises(ArtifactError, match="lacks"):
        OperatingPoint.from_dict({"name": "p>0.5", "value": 0.5, "strict": True})
    with pytest.raises(ArtifactError, match="outside"):
        OperatingPoint.fixed(1.5)


# --------------------------------------------------------------------------- versioned readers
def test_readers_refuse_other_versions_missing_columns_and_unstamped_files(tmp_path):
    df = pd.DataFrame({"family": ["a"], "quantity": ["theta_e"], "bin": [0], "lo": [0.5], "hi": [1.0], "median": [0.7],
                       "threshold": ["p>=0.5"], "n": [10], "k": [3], "completeness": [0.3], "lo68": [0.2],
                       "hi68": [0.4], "lo95": [0.1], "hi95": [0.6], "status": ["ok"]})
    p = write_artifact_table(df, tmp_path / "m.parquet", K.MARGINALS)
    pd.testing.assert_frame_equal(read_artifact_table(p, K.MARGINALS), df)
    with pytest.raises(ArtifactError, match=r"x\.parquet: selection_marginals v2 lacks column\(s\) \[.completeness.\]"):
        write_artifact_table(df.drop(columns="completeness"), tmp_path / "x.parquet", K.MARGINALS)
    df.drop(columns="completeness").to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(ArtifactError, match=r"plain\.parquet: no lensaudit artifact stamp"):
        read_artifact_table(tmp_path / "plain.parquet", K.MARGINALS)
    from lensaudit.artifacts.schema import TableSchema

    newer = TableSchema(K.MARGINALS.name, K.MARGINALS.version + 1, K.MARGINALS.columns)
    write_artifact_table(df, tmp_path / "new.parquet", newer)
    with pytest.raises(ArtifactError, match=r"new\.parquet: selection_marginals version 3 but this lensaudit reads "
                                            r"version 2"):
        read_artifact_table(tmp_path / "new.parquet", K.MARGINALS)
    with pytest.raises(ArtifactError, match="is a realism artifact, not selection_marginals"):
        write_artifact_table(pd.DataFrame({c.name: [] for c in K.REALISM.columns}), tmp_path / "r.parquet", K.REALISM)
        read_artifact_table(tmp_path / "r.parquet", K.MARGINALS)
    bad = df.assign(n=["ten"])
    with pytest.raises(ArtifactError, match="column 'n' has dtype object, expected integer"):
        write_artifact_table(bad, tmp_path / "b.parquet", K.MARGINALS)
    # documents
    write_doc(tmp_path / "s.json", K.OPERATING_POINTS, {"points": [OperatingPoint.fixed(0.5).to_dict()]})
    assert read_doc(tmp_path / "s.json", K.OPERATING_POINTS)["points"][0]["name"] == "p>=0.5"
    (tmp_path / "old.json").write_text(json.dumps([{"name": "p>0.5", "value": 0.5, "strict": True}]))
    with pytest.raises(ArtifactError, match=r"old\.json: operating_points must be a JSON object"):
        read_doc(tmp_path / "old.json", K.OPERATING_POINTS)
    (tmp_path / "k.json").write_text(json.dumps({"artifact": "operating_points", "version": 1}))
    with pytest.raises(ArtifactError, match=r"k\.json: operating_points v1 lacks key\(s\) \['points'\]"):
        read_doc(tmp_path / "k.json", K.OPERATING_POINTS)
    assert read_doc(tmp_path / "none.json", K.OPERATING_POINTS, missing_ok=True) is None


def test_run_layout_places_every_stage():
    r = Run("R")
    assert r.manifest == Path("R/catalog/manifest_70_15_15.parquet")
    assert r.selection.selection_function("sersic") == Path("R/selection/run/selection_sersic.parquet")
    assert r.closure.summary.parent == r.true_lenses.root.parent / "closure"
    assert r.ensemble.member_train("a").best == Path("R/ensemble/members/a/train/best.pt")


# --------------------------------------------------------------------------- identity
def test_split_rule_places_any_position_as_the_catalog_does():
    from lensaudit.artifacts.identity import assign_split, healpix_nested, object_id

    meta = {"nside": 128, "nest": True, "split_seed": 42, "split_order": ["train", "val", "test"],
            "fractions": {"train": 0.7, "val": 0.15, "test": 0.15}}
    rule = SplitRule.from_metadata(meta)
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(150, 152, 500), rng.uniform(1, 3, 500)
    want = assign_split(healpix_nested(ra, dec, 128), 42, [("train", 0.7), ("val", 0.15), ("test", 0.15)])
    np.testing.assert_array_equal(rule.split_of(ra, dec), want)
    assert set(want) == {"train", "val", "test"}
    with pytest.raises(ArtifactError, match="no split rule"):
        SplitRule.from_metadata({"nside": 128})
    assert object_id(["0001m040", "0001m040"], [4091, 7]).tolist() == ["0001m040_4091", "0001m040_7"]


# --------------------------------------------------------------------------- columns
#: Column names used with their own meaning by many stages (ids, positions, splits, scores, counts, interval ends,
#: lens and observing parameters): spelling one is not reading another stage's table.
GENERIC = {"id", "ra", "dec", "split", "label", "tier", "family", "seed", "mode", "threshold", "quantity", "bin", "lo", "hi",
           "median", "n", "k", "completeness", "lo68", "hi68", "lo95", "hi95", "status", "probability", "logit",
           "features", "cell", "planted", "rule", "theta_e", "arc_mag_r", "psfsize_r", "depth_r", "beta_frac",
           "diff", "z", "verdict", "n_real", "n_injected", "i_theta_e", "i_psf_fwhm", "i_depth", "i_arc_mag",
           "theta_e_lo", "theta_e_hi", "psf_fwhm_lo", "psf_fwhm_hi", "depth_lo", "depth_hi", "arc_mag_lo", "arc_mag_hi",
           "arc_g_r", "host_mag_r", "host_psfsize_r", "host_depth_r",
           # measured arcs: named once, by the estimator that writes them (lensaudit.survey.arcphot.ARC_COLUMNS)
           "meas_arc_mag_r", "meas_arc_g_r", "meas_arc_snr_r", "meas_arc_radius", "meas_arc_area"}


def column_violations() -> list[str]:
    """Modules spelling a column of a table another package writes (other than the generic names): they must take
    it from the table's schema (``SCHEMA.c.name``), so the contract names every column that crosses a stage."""
    owned: dict[str, set[str]] = {}
    for s in K.ALL:
        if getattr(s, "owner", "") and hasattr(s, "columns"):
            for c in s.names:
                if c not in GENERIC:
                    owned.setdefault(c, set()).add(s.owner)
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.parts[0] == "artifacts":
            continue
        pkg = rel.parts[0].removesuffix(".py")
        for line, text, is_f in _strings(path):
            if not is_f and text in owned and pkg not in owned[text]:
                bad.append(f"{rel}:{line} spells {text!r}, a column of a {'/'.join(sorted(owned[text]))} table")
    return bad


def test_no_module_spells_another_stages_columns():
    assert column_violations() == []


def test_the_column_check_catches_a_consumer():
    probe = PKG / "report" / "_column_probe.py"
    probe.write_text('def f(t):\n    return t["probe_auc"], t["c_true"], t["id"]\n')
    try:
        v = column_violations()
    finally:
        probe.unlink()
    assert any("_column_probe.py:2 spells 'probe_auc', a column of a realism/validation table" in x for x in v)
    assert any("'c_true', a column of a selection/validation table" in x for x in v)
    assert not any("'id'" in x for x in v)
    with pytest.raises(AttributeError, match="realism has no column 'probe_aux'"):
        getattr(K.REALISM.c, "probe_aux")  # noqa: B009
