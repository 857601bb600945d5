"""``lensaudit validate``: the matrix's pre-registered rules (pure functions), its bad-input checks before any
training, and a one-universe, two-family, one-seed matrix end to end, which also shows that the selection run and
the realism gate read no truth: with the mock's truth file gone they give identical outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import spearmanr

from lensaudit.errors import InputError
from lensaudit.validation import ValidationConfig, check_config, outcome, summarize
from lensaudit.validation.run import _check_real_lenses


def _cfg(tmp_path, **kw) -> ValidationConfig:
    base = {"out": str(tmp_path / "v"), "area_deg2": 9.0, "seeds": [0],
            "universes": [{"name": "procedural", "description": "the mock's own sources"}],
            "families": [{"name": "sersic", "kind": "sersic"}, {"name": "planted", "kind": "planted"}]}
    base.update(kw)
    return ValidationConfig(**base)


# ---------------------------------------------------------------- rules
def _row(delta, lo, hi, verdict, planted=False, auc=0.6, shift=0.5, fam="f", universe="u", seed=0):
    return outcome({"universe": universe, "family": fam, "seed": seed, "planted": planted, "delta": delta,
                    "delta_lo95": lo, "delta_hi95": hi, "delta_se": (hi - lo) / 3.92, "delta_mde80": 0.7 * (hi - lo),
                    "verdict": verdict, "probe_auc": auc, "score_shift": shift}, 0.03)


def test_outcome_follows_the_pre_registered_rules():
    assert _row(0.01, -0.02, 0.04, "GO")["agrees"] is True                  # GO and closure holds
    assert _row(0.01, -0.02, 0.04, "NO-GO")["agrees"] is False
    assert _row(-0.08, -0.12, -0.04, "NO-GO")["agrees"] is True             # NO-GO and it does not
    assert _row(-0.08, -0.12, -0.04, "GO")["agrees"] is False
    assert _row(0.02, 0.0, 0.05, "GO")["closure_undecided"] is True         # interval straddles +0.03
    assert _row(0.0, -0.01, 0.01, "GO")["closure_undecided"] is False
    assert _row(0.0, -0.01, 0.01, "none")["agrees"] is None                 # no verdict: not judged


def test_summary_agreement_and_rank_correlation_match_an_independent_computation():
    rng = np.random.default_rng(0)
    rows = []
    for k in range(12):
        d = rng.normal(0, 0.06)
        auc = 0.55 + 3 * abs(d) + rng.normal(0, 0.02)
        rows.append(_row(d, d - 0.03, d + 0.03, "GO" if auc < 0.7 else "NO-GO", auc=auc, fam=f"f{k % 4}", seed=k // 4))
    rows.append(_row(0.3, 0.25, 0.35, "NO-GO", planted=True, auc=0.95, fam="planted"))
    cells = pd.DataFrame(rows)
    s = summarize(cells, 0.03)
    real = cells[~cells["planted"]]
    assert s["agreement"] == pytest.approx(cells["agrees"].mean())
    assert s["agreement_without_planted"] == pytest.approx(real["agrees"].mean())
    want = spearmanr(real["probe_auc"], real["delta"].abs()).statistic
    assert s["rank_correlation"]["rho"] == pytest.approx(want) and s["rank_correlation"]["n"] == 12
    assert s["rank_correlation_all_cells"]["n"] == 13 and s["planted_no_go"] == 1.0
    per = {(p["universe"], p["family"]): p for p in s["per_universe_family"]}
    f0 = real[real["family"] == "f0"]
    assert per[("u", "f0")]["delta_mean"] == pytest.approx(f0["delta"].mean()) and per[("u", "f0")]["n_seeds"] == 3


# ---------------------------------------------------------------- bad input, before any training
def test_bad_validation_configs_are_refused_with_their_reason(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        _cfg(tmp_path, families=[{"name": "x", "kind": "sersik"}])
    with pytest.raises(ValueError, match="halves A and B"):
        _cfg(tmp_path, families=[{"name": "x", "kind": "stamps", "stamp_library": "xdf:C"}])
    with pytest.raises(ValueError, match="needs stamp_library"):
        _cfg(tmp_path, families=[{"name": "x", "kind": "stamps"}])
    with pytest.raises(ValueError, match="names must be unique"):
        _cfg(tmp_path, universes=[{"name": "a"}, {"name": "a"}])
    with pytest.raises(ValueError, match="real_galaxy_cell"):
        _cfg(tmp_path, rules={"real_galaxy_cell": ["nowhere", "sersic"]})
    lib = str(tmp_path / "xdf.fits")
    # a family drawing from the half its universe's truth comes from
    cfg = _cfg(tmp_path, universes=[{"name": "x", "mock": {"lenses": {"sources": "xdf:A"}}}],
               families=[{"name": "s", "kind": "stamps", "stamp_library": "xdf:A"}])
    with pytest.raises(InputError, match="half A"):
        check_config(cfg, lib)
    with pytest.raises(InputError, match="invalid mock settings"):
        check_config(_cfg(tmp_path, universes=[{"name": "x", "mock": {"lenses": {"sources": "xdf:Q"}}}]), lib)
    with pytest.raises(InputError, match="does not exist"):
        check_config(_cfg(tmp_path, universes=[{"name": "x", "survey": str(tmp_path / "nowhere")}]), lib)
    # a given survey whose truth lacks a column closure needs
    truth = tmp_path / "s" / "truth"
    truth.mkdir(parents=True)
    pd.DataFrame({"id": ["a"], "kind": ["lens"], "ra": [1.0], "dec": [1.0]}).to_parquet(truth / "truth.parquet")
    with pytest.raises(InputError, match="lacks column"):
        check_config(_cfg(tmp_path, universes=[{"name": "x", "survey": str(tmp_path / "s")}]), lib)
    with pytest.raises(InputError, match="neither a file nor a bundled config"):
        check_config(_cfg(tmp_path, realism_config="nowhere.yaml"), lib)


def test_too_few_real_lenses_for_the_probe_is_an_error(tmp_path):
    from lensaudit.realism import RealismConfig

    m = pd.DataFrame({"id": [f"g{i}" for i in range(20)], "split": ["val"] * 20, "label": [1] * 3 + [0] * 17,
                      "tier": ["A"] * 3 + [""] * 17})
    m.to_parquet(tmp_path / "m.parquet")
    rc = RealismConfig(selection_run="-", predictions="-", manifest="-", store="-", out="-")
    with pytest.raises(InputError, match="only 3 real lenses"):
        _check_real_lenses(tmp_path / "m.parquet", rc, "u")


# ---------------------------------------------------------------- one universe end to end
@pytest.mark.slow
def test_a_one_universe_matrix_runs_and_its_gate_and_selection_read_no_truth(tmp_path, capsys):
    from lensaudit.artifacts import ValidationDir, read_artifact_table
    from lensaudit.artifacts.kinds import REALISM
    from lensaudit.cli import main
    from lensaudit.config import load_config
    from lensaudit.inject.records import read_injections
    from lensaudit.realism import RealismConfig, run_realism
    from lensaudit.selection import SelectionConfig
    from lensaudit.selection.run import run_selection

    (tmp_path / "realism.yaml").write_text(yaml.safe_dump(
        {"selection_run": "-", "predictions": "-", "manifest": "-", "store": "-", "out": "-", "n_subsamples": 3,
         "probe": {"folds": 3, "n_boot": 100, "n_permutations": 20}}))
    cfg = _cfg(tmp_path, realism_config=str(tmp_path / "realism.yaml"), n_per_cell=4, epochs=1, closure_n_boot=100)
    (tmp_path / "v.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["validate", "--config", str(tmp_path / "v.yaml"), "--results", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "agreement" in out and "report:" in out
    vd = ValidationDir(tmp_path / "v")
    doc = json.loads((tmp_path / "m.json").read_text())
    assert {(c["family"], c["seed"]) for c in doc["cells"]} == {("sersic", 0), ("planted", 0)}
    for c in doc["cells"]:
        assert c["verdict"] in ("GO", "NO-GO") and c["delta_lo95"] <= c["delta"] <= c["delta_hi95"]
        assert c["delta"] == pytest.approx(c["c_inj"] - c["c_true"])
    assert doc["summary"]["runtime_s"]["total"] > 0 and doc["universes"][0]["truth_diagnostics"]["n_true_lenses"] > 0
    assert vd.figure("closure_heatmap").stat().st_size > 5000 and vd.figure("gate_vs_closure").stat().st_size > 5000
    assert "validation" in vd.report.index.read_text()
    # the selection run and the gate with the mock's truth file gone: identical outputs
    r, cell = vd.universe("procedural"), vd.cell("procedural", 0)
    truth = r.mock.truth
    moved = tmp_path / "truth_elsewhere.parquet"
    shutil.move(truth, moved)
    try:
        sel = load_config(cell.selection.config, SelectionConfig, {"out": str(tmp_path / "again" / "run")})
        s2 = run_selection(sel)
        real = load_config(tmp_path / "realism.yaml", RealismConfig,
                           {"selection_run": str(tmp_path / "again" / "run"), "predictions": str(r.predictions),
                            "manifest": str(r.manifest), "store": str(r.store), "out": str(tmp_path / "again" / "real")})
        run_realism(real)
    finally:
        shutil.move(moved, truth)
    first = json.loads(cell.selection.summary.read_text())
    assert s2["config_tag"] == first["config_tag"]
    for fam in ("sersic", "planted"):
        a = read_injections(cell.selection, fam).drop(columns=["features"], errors="ignore")
        b = read_injections(tmp_path / "again" / "run", fam).drop(columns=["features"], errors="ignore")
        pd.testing.assert_frame_equal(a.sort_values("index").reset_index(drop=True),
                                      b.sort_values("index").reset_index(drop=True))
    g1 = read_artifact_table(cell.realism.table, REALISM)
    g2 = read_artifact_table(tmp_path / "again" / "real" / "realism.parquet", REALISM)
    pd.testing.assert_frame_equal(g1, g2)
    # a second run finds every stage's inputs unchanged: no stage record is rewritten
    records = sorted(vd.root.rglob("stage.json"))
    before = {p: p.stat().st_mtime_ns for p in records}
    assert len(records) >= 6                        # xdf, mock, catalog, fetch, train, score, the cell
    assert main(["validate", "--config", str(tmp_path / "v.yaml")]) == 0
    assert {p: p.stat().st_mtime_ns for p in records} == before
