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
def test_a_one_universe_matrix_runs_and_its_gate_and_selection_read_no_truth(tmp_path, capsys, xdf):
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
    cfg = _cfg(tmp_path, realism_config=str(tmp_path / "realism.yaml"), n_per_cell=4, epochs=1, closure_n_boot=100,
               xdf_library=str(xdf[0]))                # the session's library, copied (the build: test_sources)
    (tmp_path / "v.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["validate", "--config", str(tmp_path / "v.yaml"), "--results", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "agreement" in out and "report:" in out
    vd = ValidationDir(tmp_path / "v")
    assert json.loads(vd.xdf.report.read_text())["copied_from"] == str(xdf[0])
    doc = json.loads((tmp_path / "m.json").read_text())
    assert {(c["family"], c["seed"]) for c in doc["cells"]} == {("sersic", 0), ("planted", 0)}
    for c in doc["cells"]:
        assert c["verdict"] in ("GO", "NO-GO") and c["delta_lo95"] <= c["delta"] <= c["delta_hi95"]
        assert c["delta"] == pytest.approx(c["c_inj"] - c["c_true"])
    assert doc["summary"]["runtime_s"]["total"] > 0 and doc["universes"][0]["truth_diagnostics"]["n_true_lenses"] > 0
    # the runtimes name the machine and commit that measured them (the README's performance table reads them)
    ri = doc["run_info"]
    assert ri["cpu"] and ri["git_commit"] and ri["cores"] >= 1 and ri["seeds"] == {"mock": cfg.mock_seed, "injection": [0]}
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


# ---------------------------------------------------------------- every number of the summary, by hand
def test_outcome_boundaries_are_the_pre_registered_ones():
    # |Delta| equal to the tolerance holds (<=); an interval ending exactly at a tolerance does not straddle it
    assert _row(0.03, 0.0, 0.03, "GO")["closure_holds"] is True
    assert _row(-0.03, -0.03, 0.0, "GO")["closure_holds"] is True
    assert _row(0.0301, 0.0, 0.06, "GO")["closure_holds"] is False
    assert _row(0.0, 0.03, 0.03, "GO")["closure_undecided"] is False
    assert _row(0.0, -0.03, -0.03, "GO")["closure_undecided"] is False
    assert _row(-0.02, -0.05, 0.0, "GO")["closure_undecided"] is True         # straddles -0.03 only
    assert _row(0.04, 0.03, 0.05, "GO")["closure_undecided"] is False         # starts at +0.03: not across it
    assert _row(0.0, 0.0, 0.03, "GO")["closure_undecided"] is False           # ends at +0.03
    assert _row(-0.02, -0.03, 0.0, "GO")["closure_undecided"] is False        # starts at -0.03
    r = _row(-0.02, -0.05, 0.0, "GO", universe="uu", seed=3)
    assert (r["universe"], r["seed"], r["delta"]) == ("uu", 3, -0.02)          # the row's own fields kept


def test_every_summary_number_matches_a_hand_computation():
    rows = [
        _row(0.01, -0.02, 0.04, "GO", auc=0.60, shift=0.52, fam="a", universe="u1", seed=0),   # agrees, undecided
        _row(0.05, 0.02, 0.08, "GO", auc=0.70, shift=0.60, fam="a", universe="u1", seed=1),    # disagrees
        _row(-0.06, -0.09, -0.03, "NO-GO", auc=0.80, shift=0.40, fam="a", universe="u1", seed=2),  # agrees
        _row(0.00, -0.01, 0.01, "NO-GO", auc=0.65, shift=0.50, fam="b", universe="u2", seed=0),  # disagrees
        _row(0.02, 0.01, 0.05, "none", auc=0.75, shift=0.55, fam="b", universe="u2", seed=1),    # not judged
        _row(0.30, 0.25, 0.35, "NO-GO", planted=True, auc=0.95, shift=0.90, fam="p", universe="u1", seed=0),
        _row(0.20, 0.10, 0.30, "GO", planted=True, auc=0.55, shift=0.85, fam="p", universe="u2", seed=0),
    ]
    cells = pd.DataFrame(rows)
    s = summarize(cells, 0.03, real_galaxy_cell=("u1", "a"))
    assert s["tolerance"] == 0.03 and s["n_cells"] == 7 and s["n_judged"] == 6
    assert s["agreement"] == pytest.approx(3 / 6)                 # rows 1, 3, planted u1
    assert s["agreement_without_planted"] == pytest.approx(2 / 4)
    assert s["undecided_fraction"] == pytest.approx(3 / 7)        # rows 1, 2 (straddles 0.03), 5
    assert s["planted_no_go"] == pytest.approx(0.5)
    assert s["gate_go_fraction"] == pytest.approx(2 / 4)
    assert s["closure_holds_fraction"] == pytest.approx(2 / 4)    # rows 1 and 4 of the four judged real cells
    assert s["median_delta_mde80"] == pytest.approx(np.median(cells["delta_mde80"]))
    real = cells.iloc[:4]
    rc = s["rank_correlation"]
    assert rc["rho"] == pytest.approx(spearmanr(real["probe_auc"], real["delta"].abs()).statistic)
    assert rc["p"] == pytest.approx(spearmanr(real["probe_auc"], real["delta"].abs()).pvalue)
    assert (rc["n"], rc["statistic"], rc["against"], rc["cells"]) == (4, "probe_auc", "|delta|", "without planted")
    judged = cells[cells["agrees"].notna()]
    assert s["rank_correlation_all_cells"]["rho"] == pytest.approx(
        spearmanr(judged["probe_auc"], judged["delta"].abs()).statistic) and s["rank_correlation_all_cells"]["n"] == 6
    ss = s["score_shift_vs_delta"]
    assert ss["rho"] == pytest.approx(spearmanr(real["score_shift"], real["delta"]).statistic) and ss["n"] == 4
    per = {(p["universe"], p["family"]): p for p in s["per_universe_family"]}
    assert list(per) == [("u1", "a"), ("u2", "b"), ("u1", "p"), ("u2", "p")]     # in the cells' order
    a = per[("u1", "a")]
    assert a["n_seeds"] == 3 and a["planted"] is False and a["verdicts"] == ["GO", "GO", "NO-GO"]
    assert a["majority_verdict"] == "GO" and a["seed_agreement"] == pytest.approx(2 / 3)
    assert a["delta_mean"] == pytest.approx(0.0) and a["delta_min"] == -0.06 and a["delta_max"] == 0.05
    assert a["delta_se_mean"] == pytest.approx(np.mean([0.06, 0.06, 0.06]) / 3.92)
    assert a["mde80_mean"] == pytest.approx(0.7 * 0.06) and a["probe_auc_mean"] == pytest.approx(0.7)
    assert a["closure_holds_fraction"] == pytest.approx(1 / 3) and a["agree_fraction"] == pytest.approx(2 / 3)
    b = per[("u2", "b")]
    assert b["agree_fraction"] == 0.0 and b["n_seeds"] == 2          # the unjudged seed is left out
    assert per[("u1", "p")]["planted"] is True
    t = s["real_galaxy_target"]
    assert (t["universe"], t["family"]) == ("u1", "a") and t["deltas"] == [0.01, 0.05, -0.06]
    assert t["delta_mean"] == pytest.approx(0.0) and t["closes"] is True
    assert t["mde80_mean"] == pytest.approx(0.042) and t["power_to_see_tolerance"] is False
    # with the planted cells in the correlation
    s2 = summarize(cells, 0.03, exclude_planted=False, gate_statistic="score_shift")
    assert s2["rank_correlation"]["n"] == 6 and s2["rank_correlation"]["cells"] == "all"
    assert s2["rank_correlation"]["rho"] == pytest.approx(
        spearmanr(judged["score_shift"], judged["delta"].abs()).statistic)
    assert "real_galaxy_target" not in s2
    # a target that misses the tolerance, and one with the power to see it
    far = summarize(pd.DataFrame([_row(0.05, 0.04, 0.06, "NO-GO", fam="a", universe="u1")]), 0.03,
                    real_galaxy_cell=("u1", "a"))["real_galaxy_target"]
    assert far["closes"] is False and far["power_to_see_tolerance"] is True


def test_rank_correlation_is_undefined_for_fewer_than_three_cells_or_constant_values():
    two = pd.DataFrame([_row(0.01, -0.02, 0.04, "GO", auc=0.6), _row(0.05, 0.02, 0.08, "GO", auc=0.7, seed=1)])
    rc = summarize(two, 0.03)["rank_correlation"]
    assert rc["rho"] is None and rc["p"] is None and rc["n"] == 2
    const = pd.DataFrame([_row(0.01 * k, -0.02, 0.04, "GO", auc=0.6, seed=k) for k in range(4)])
    assert summarize(const, 0.03)["rank_correlation"]["rho"] is None
    flat = pd.DataFrame([_row(0.02, -0.02, 0.04, "GO", auc=0.6 + 0.01 * k, seed=k) for k in range(4)])
    assert summarize(flat, 0.03)["rank_correlation"]["rho"] is None
    three = pd.DataFrame([_row(0.01 * k, -0.02, 0.04, "GO", auc=0.6 + 0.01 * k, seed=k) for k in range(3)])
    r3 = summarize(three, 0.03)["rank_correlation"]
    assert r3["rho"] == pytest.approx(1.0) and r3["n"] == 3
    from lensaudit.validation.matrix import _spearman

    mixed = _spearman(pd.Series([0.6, None, 0.7, 0.8], dtype=object), pd.Series([0.1, 0.2, 0.3, 0.5], dtype=object))
    assert mixed["n"] == 3 and mixed["rho"] == pytest.approx(1.0)
    nan = pd.DataFrame([_row(0.01 * k, -0.02, 0.04, "GO", auc=[0.6, np.nan, 0.7, 0.8][k], seed=k) for k in range(4)])
    assert summarize(nan, 0.03)["rank_correlation"]["n"] == 3


def _closure_and_gate():
    from lensaudit.artifacts.kinds import CLOSURE_SUMMARY, REALISM

    C, R = CLOSURE_SUMMARY.c, REALISM.c
    closure = pd.DataFrame([
        {C.family: fam, C.threshold: th, C.planted: fam == "planted", C.c_true: 0.2, C.c_inj: ci,
         C.diff: ci - 0.2, C.se: 0.01, C.lo95: ci - 0.2 - 0.0196, C.hi95: ci - 0.2 + 0.0196, C.p_value: 0.4,
         C.mde80: 0.028, C.n_true_covered: 400}
        for fam, ci in (("sersic", 0.21), ("planted", 0.5)) for th in ("p>=0.5", "fpr=0.01")])
    at = closure[C.threshold] == "fpr=0.01"
    closure.loc[at, C.c_inj], closure.loc[at, C.diff] = 0.9, 0.7
    gate = pd.DataFrame([{R.family: "sersic", R.probe_auc: 0.62, R.probe_auc_lo95: 0.55, R.probe_auc_hi95: 0.69,
                          R.permutation_p: 0.2, R.null_q95: 0.56, R.auc_mde80: 0.6, R.floor_injections: 0.5,
                          R.floor_real_halves: 0.51, R.verdict_stability: 0.9, R.score_shift: 0.55, R.n_real: 120,
                          R.verdict: "GO"}])
    return closure, gate


def test_cell_rows_carry_the_gate_and_the_closure_at_the_operating_point():
    from lensaudit.validation.matrix import cell_rows

    closure, gate = _closure_and_gate()
    rows = {r["family"]: r for r in cell_rows("u", 2, gate, closure, "p>=0.5", 0.03)}
    assert set(rows) == {"sersic", "planted"}
    s = rows["sersic"]
    assert (s["universe"], s["seed"], s["planted"], s["n_true"]) == ("u", 2, False, 400)
    assert s["c_true"] == 0.2 and s["c_inj"] == 0.21 and s["delta"] == pytest.approx(0.01)
    assert s["delta_se"] == 0.01 and s["delta_lo95"] == pytest.approx(-0.0096) and s["delta_hi95"] == pytest.approx(0.0296)
    assert s["delta_p"] == 0.4 and s["delta_mde80"] == 0.028
    assert (s["probe_auc"], s["probe_auc_lo95"], s["probe_auc_hi95"], s["gate_p"], s["null_q95"]) == \
        (0.62, 0.55, 0.69, 0.2, 0.56)
    assert (s["auc_mde80"], s["floor_injections"], s["floor_real_halves"], s["verdict_stability"]) == (0.6, 0.5, 0.51, 0.9)
    assert (s["score_shift"], s["n_real"], s["verdict"]) == (0.55, 120, "GO")
    assert s["closure_holds"] is True and s["agrees"] is True
    p = rows["planted"]
    assert p["planted"] is True and p["verdict"] == "none" and p["agrees"] is None and "probe_auc" not in p
    # the other operating point's rows are not mixed in
    other = {r["family"]: r for r in cell_rows("u", 2, gate, closure, "fpr=0.01", 0.03)}
    assert other["sersic"]["c_inj"] == 0.9 and other["sersic"]["closure_holds"] is False
    assert other["sersic"]["agrees"] is False
    with pytest.raises(ValueError, match="no operating point 'p>=0.9'.*fpr=0.01"):
        cell_rows("u", 2, gate, closure, "p>=0.9", 0.03)
    none = cell_rows("u", 2, gate.iloc[:0], closure, "p>=0.5", 0.03)
    assert [r["verdict"] for r in none] == ["none", "none"]
    assert [r["verdict"] for r in cell_rows("u", 2, pd.DataFrame(), closure, "p>=0.5", 0.03)] == ["none", "none"]


def test_the_matrix_table_prints_each_cell_and_the_headline():
    from lensaudit.validation.matrix import cell_rows, format_matrix

    closure, gate = _closure_and_gate()
    cells = pd.DataFrame(cell_rows("u", 2, gate, closure, "p>=0.5", 0.03))
    text = format_matrix(cells, summarize(cells, 0.03))
    head, sersic, planted, last = text.splitlines()
    assert head.split()[:3] == ["universe", "family", "seed"] and "agrees" in head
    assert sersic.split() == ["u", "sersic", "2", "0.620", "0.200", "GO", "+0.010", "[-0.010,", "+0.030]",
                              "0.028", "yes", "yes"]
    assert planted.split() == ["u", "planted", "*", "2", "-", "-", "none", "+0.300", "[+0.280,", "+0.320]",
                               "0.028", "no", "-"]
    assert last.startswith("agreement 1.0, without planted 1.0; Spearman(probe_auc, |Delta|) = None (p None, 1 cells")
    assert last.endswith("planted NO-GO None; tolerance 0.03")


def test_summary_of_empty_unjudged_and_one_sided_matrices_says_none_not_nan():
    unjudged = pd.DataFrame([_row(0.01, -0.02, 0.04, "none", seed=k) for k in range(2)])
    s = summarize(unjudged, 0.03, real_galaxy_cell=("nowhere", "f"))
    for k in ("agreement", "agreement_without_planted", "gate_go_fraction", "closure_holds_fraction", "planted_no_go"):
        assert s[k] is None, k
    assert s["undecided_fraction"] == 1.0 and s["per_universe_family"][0]["agree_fraction"] is None
    t = s["real_galaxy_target"]
    assert t["delta_mean"] is None and t["mde80_mean"] is None and t["deltas"] == []
    assert t["closes"] is False and t["power_to_see_tolerance"] is False
    planted_only = pd.DataFrame([_row(0.3, 0.2, 0.4, "NO-GO", planted=True)])
    s = summarize(planted_only, 0.03)
    assert s["agreement"] == 1.0 and s["agreement_without_planted"] is None and s["gate_go_fraction"] is None
    empty = pd.DataFrame(columns=unjudged.columns).astype({"agrees": object, "planted": bool})
    s = summarize(empty, 0.03)
    assert s["n_cells"] == 0 and s["undecided_fraction"] is None and s["median_delta_mde80"] is None
    bare = pd.DataFrame([_row(0.01, -0.02, 0.04, "GO", seed=k) for k in range(3)]).drop(columns=["probe_auc",
                                                                                                 "score_shift"])
    s = summarize(bare, 0.03, gate_statistic="delta_se")
    assert s["per_universe_family"][0]["probe_auc_mean"] is None and s["score_shift_vs_delta"] is None


def test_summary_fractions_are_not_symmetric_and_the_target_boundary_is_inclusive():
    rows = [_row(0.01, -0.02, 0.04, "GO", seed=0), _row(0.08, 0.05, 0.11, "NO-GO", seed=1),
            _row(0.09, 0.06, 0.12, "NO-GO", seed=2)]
    s = summarize(pd.DataFrame(rows), 0.03)
    assert s["gate_go_fraction"] == pytest.approx(1 / 3) and s["closure_holds_fraction"] == pytest.approx(1 / 3)
    edge = {**_row(0.03, 0.0, 0.06, "GO", universe="x", fam="t"), "delta_mde80": 0.03}
    t = summarize(pd.DataFrame([edge]), 0.03, real_galaxy_cell=("x", "t"))["real_galaxy_target"]
    assert t["closes"] is True and t["power_to_see_tolerance"] is True       # |mean Delta| = MDE = tolerance


def test_the_matrix_table_header_and_its_missing_and_disagreeing_cells():
    from lensaudit.validation.matrix import format_matrix
    rows = [_row(0.01, -0.02, 0.04, "NO-GO", seed=0), {**_row(0.01, -0.02, 0.04, "none", seed=1), "agrees": np.nan}]
    cells = pd.DataFrame(rows)
    cells["gate_p"] = [0.001, np.nan]
    head, disagree, missing, _ = format_matrix(cells, summarize(cells, 0.03)).splitlines()
    assert head.split() == ["universe", "family", "seed", "probe", "AUC", "gate", "p", "verdict", "Delta", "[95%]",
                            "MDE80", "holds", "agrees"]
    assert disagree.split()[-2:] == ["yes", "NO"] and disagree.split()[4] == "0.001"
    assert missing.split()[-1] == "-" and missing.split()[4] == "-"


def test_family_configs_resolve_each_library_spec_for_one_universe():
    from lensaudit.validation.config import ValidationConfig

    cfg = ValidationConfig(universes=[{"name": "u"}], families=[
        {"name": "s", "kind": "sersic"}, {"name": "own", "kind": "stamps", "stamp_library": "mock"},
        {"name": "xa", "kind": "stamps", "stamp_library": "xdf:A"},
        {"name": "xb", "kind": "stamps", "stamp_library": "xdf:B"},
        {"name": "file", "kind": "stamps", "stamp_library": "/libs/other.fits:B"}, {"name": "pl", "kind": "planted"}])
    got = [(f.name, f.kind, f.stamp_library) for f in cfg.family_configs("/u/mock_stamps.fits", "/v/xdf.fits")]
    assert got == [("s", "sersic", None), ("own", "stamps", "/u/mock_stamps.fits"),
                   ("xa", "stamps", "/v/xdf.fits:A"), ("xb", "stamps", "/v/xdf.fits:B"),
                   ("file", "stamps", "/libs/other.fits:B"), ("pl", "planted", None)]


def test_report_p_values_never_read_as_zero():
    """A p-value of 5e-13 is written with its digits (the matrix page once printed it as 0.000)."""
    from lensaudit.report.html import fmt_p

    assert fmt_p(5.16e-13) == "5.2e-13" and fmt_p(0.0009) == "0.0009" and fmt_p(0.0456) == "0.046"
    assert fmt_p(1.0) == "1.000" and fmt_p(None) == "-" and fmt_p(float("nan")) == "-"
